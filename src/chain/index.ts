/**
 * The chain part: Mycel's contracts (typed ABIs and bytecode compiled from contracts/ by solc-js),
 * the local anvil, deployment, and one action per contract operation, all over viem.
 *
 * @example
 * const anvil = await startAnvil();
 * const connection = await connectChain({ rpcUrl: anvil.rpcUrl, privateKey: anvilDeployerKey });
 * const deployments = await deployMycel(connection, { parameters: devnetDeployParameters });
 */
export { type AnvilProcess, resolveAnvilBinary, type StartAnvilParameters, startAnvil } from "./anvil.ts";
export { type ChainBinding, readChainBinding } from "./binding.ts";
export {
  type ChannelRecord,
  deploymentVoucherDomain,
  getChannel,
  listChannels,
  openChannel,
  requestChannelClose,
  settleVoucher,
  topUpChannel,
  withdrawChannel,
} from "./channels.ts";
export {
  type ChainConnection,
  type ConnectChainParameters,
  connectChain,
  requireWallet,
  withSigner,
} from "./client.ts";
export {
  commitScores,
  computeConsensus,
  createEpochClockReader,
  type EpochClockReader,
  epochConsensusInput,
  finalizeEpoch,
  fundRewards,
  getEpochState,
  getProviderStanding,
  getScoreCommitment,
  hasVotedOnSlash,
  maxScore,
  proposeSlash,
  readActiveProviders,
  readEpochClock,
  readSlashProposals,
  readValidatorStake,
  registerValidator,
  revealScores,
  type SlashProposalRecord,
  scoreCommitment,
  voteSlash,
} from "./consensus.ts";
export {
  anvilDeployerKey,
  type DeployMycelParameters,
  type DeployParameters,
  defaultDeployParameters,
  deployMycel,
  devnetDeployParameters,
  type FundDevAccountsParameters,
  fundDevAccounts,
} from "./deploy.ts";
export {
  bootstrapAddressProblem,
  type Deployments,
  defaultDeploymentsPath,
  deploymentReceiptDomain,
  deploymentsSchema,
  maxDeploymentBootstrapAddresses,
  readDeployments,
  validateBootstrapAddresses,
  writeDeployments,
} from "./deployments.ts";
export { ChainError, ContractRevertError, describeRevertReason, toChainError } from "./errors.ts";
export * from "./generated/contracts.ts";
export {
  formatLineage,
  getModelEntry,
  getModelLineage,
  isSpdxExpression,
  type LineageNode,
  type ModelEntry,
  type ModelParent,
  type ModelRelation,
  modelRelations,
  parseModelParent,
  type RegisterModelParameters,
  registerModel,
} from "./models.ts";
export {
  addProviderStake,
  getProviderRecord,
  listStakedProviders,
  type ProviderOffer,
  type ProviderRecord,
  registerProvider,
  requestProviderUnbond,
  type StakedProvider,
  withdrawProviderStake,
} from "./providers.ts";
export {
  ensureAllowance,
  formatTokenAmount,
  getTokenBalance,
  getTokenInfo,
  parseTokenAmount,
  type TokenInfo,
} from "./token.ts";
export {
  type DeployContractParameters,
  deployContract,
  type SendContractTransactionParameters,
  type SendContractTransactionReturnType,
  sendContractTransaction,
  type TransactionReport,
  type TransactionReporter,
} from "./transactions.ts";
