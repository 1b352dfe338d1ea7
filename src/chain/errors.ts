/** Chain errors: one class for RPC trouble, one for a contract that refused a transaction, with the reason in words. */
import { BaseError, ContractFunctionRevertedError } from "viem";
import { MycelError, type MycelErrorParameters } from "../errors/index.ts";

/** Something went wrong talking to the chain (RPC down, wrong chain, missing deployment). */
export class ChainError extends MycelError {
  override name = "ChainError";
  constructor(shortMessage: string, parameters: MycelErrorParameters = {}) {
    super(shortMessage, { code: "chain_error", ...parameters });
  }
}

/** A contract refused a call; `reason` is the decoded custom error (`errorName`, `args`). */
export class ContractRevertError extends MycelError {
  override name = "ContractRevertError";
  readonly errorName: string | undefined;
  readonly args: readonly unknown[];
  constructor(parameters: {
    action: string;
    errorName?: string;
    args?: readonly unknown[];
    cause?: unknown;
  }) {
    const reason = describeRevertReason(parameters.errorName, parameters.args ?? []);
    super(`${parameters.action} was refused: ${reason}`, {
      code: "contract_revert",
      details: parameters.errorName
        ? `${parameters.errorName}(${(parameters.args ?? []).map(String).join(", ")})`
        : undefined,
      cause: parameters.cause,
      hint: revertHints[parameters.errorName ?? ""],
    });
    this.errorName = parameters.errorName;
    this.args = parameters.args ?? [];
  }
}

const format = (value: unknown) => (typeof value === "bigint" ? value.toString() : String(value));
const time = (value: unknown) => {
  const seconds = Number(value);
  return Number.isFinite(seconds) ? new Date(seconds * 1000).toISOString() : format(value);
};

/** Custom errors of Mycel's contracts, in words. */
const revertReasons: Record<string, (args: readonly unknown[]) => string> = {
  Error: ([reason]) => format(reason),
  // token
  InsufficientBalance: ([account, available, needed]) =>
    `${format(account)} holds ${format(available)} tokens but ${format(needed)} are needed`,
  InsufficientAllowance: ([spender, allowed, needed]) =>
    `the token allowance of ${format(spender)} is ${format(allowed)}, ${format(needed)} are needed`,
  ZeroAddressRecipient: () => "tokens cannot be sent to the zero address",
  NotOwner: ([caller]) => `${format(caller)} is not the contract's owner`,
  TokenTransferFailed: ([token]) => `the token ${format(token)} refused the transfer`,
  NothingReceived: ([token]) => `no ${format(token)} tokens arrived`,
  ReentrantCall: () => "a reentrant call was blocked",
  MalformedSignature: () => "the signature is malformed (length, s or v)",
  // model registry
  ZeroModelHash: () => "the zero hash is not a model",
  ModelAlreadyRegistered: ([hash]) => `model ${format(hash)} is registered already`,
  ModelNotRegistered: ([hash]) => `model ${format(hash)} is not registered`,
  EmptyName: () => "a model needs a name",
  EmptyLicense: () => "a model needs an SPDX license identifier",
  FieldTooLong: ([field, length, maximum]) =>
    `${format(field)} is ${format(length)} bytes long, at most ${format(maximum)} are allowed`,
  TooManyParents: ([count, maximum]) =>
    `${format(count)} parents given, at most ${format(maximum)} are allowed`,
  DuplicateParent: ([hash]) => `parent ${format(hash)} is listed twice`,
  NotPublisher: ([hash, publisher]) =>
    `only the publisher ${format(publisher)} may change model ${format(hash)}`,
  AlreadyDeprecated: ([hash]) => `model ${format(hash)} is deprecated already`,
  // provider registry
  NotRegistered: ([provider]) => `${format(provider)} is not a registered provider`,
  AlreadyRegistered: ([provider]) => `${format(provider)} is registered already`,
  StakeBelowMinimum: ([stake, minimum]) =>
    `a stake of ${format(stake)} is below the minimum of ${format(minimum)}`,
  InvalidPeerId: () => "the peer id is empty or too long",
  InvalidOfferCount: ([count, maximum]) =>
    `${format(count)} offers given: between 1 and ${format(maximum)} are allowed`,
  DuplicateOffer: ([hash]) => `model ${format(hash)} is offered twice`,
  UnregisteredModel: ([hash]) => `model ${format(hash)} is not in the model registry`,
  ProviderSetFull: ([maximum]) => `the registry holds its maximum of ${format(maximum)} providers`,
  ZeroAmount: () => "the amount must be positive",
  InsufficientStake: ([stake, requested]) =>
    `only ${format(stake)} is staked, ${format(requested)} was requested`,
  NothingUnbonding: () => "nothing is unbonding",
  UnbondingNotFinished: ([releaseAt]) => `the unbonding period ends at ${time(releaseAt)}`,
  NotConsensus: ([caller]) => `${format(caller)} is not the consensus contract; only it may slash`,
  ConsensusAlreadySet: ([consensus]) => `the consensus contract is set already (${format(consensus)})`,
  // payment channels
  UnknownChannel: ([id]) => `there is no channel ${format(id)}`,
  NotClient: ([id, client]) => `only the client ${format(client)} of channel ${format(id)} may do this`,
  NotProvider: ([id, provider]) =>
    `only the provider ${format(provider)} of channel ${format(id)} may settle`,
  ChannelFinalized: ([id]) => `channel ${format(id)} is closed and withdrawn`,
  ChannelClosing: ([id, closesAt]) => `channel ${format(id)} is closing (at ${time(closesAt)})`,
  CloseNotRequested: ([id]) => `no close was requested for channel ${format(id)}`,
  CloseAlreadyRequested: ([id, closesAt]) => `channel ${format(id)} already closes at ${time(closesAt)}`,
  ChallengePeriodActive: ([id, closesAt]) =>
    `the challenge period of channel ${format(id)} ends at ${time(closesAt)}`,
  VoucherNotAboveSettled: ([id, cumulative, settled]) =>
    `a voucher for ${format(cumulative)} does not exceed the ${format(settled)} already settled on channel ${format(id)} (replayed or stale voucher)`,
  DepositExhausted: ([id, deposit]) => `all ${format(deposit)} deposited in channel ${format(id)} is settled`,
  InvalidVoucherSignature: ([id, signer]) =>
    `the voucher was signed by ${format(signer)}, not by the client of channel ${format(id)}`,
  InvalidChallengePeriod: ([period, minimum, maximum]) =>
    `a challenge period of ${format(period)} s is outside ${format(minimum)}..${format(maximum)} s`,
  InvalidProvider: ([provider]) => `${format(provider)} cannot be a channel's provider`,
  InvalidAmount: ([amount]) => `${format(amount)} is not a valid amount`,
  // consensus
  NotValidator: ([caller]) => `${format(caller)} is not a staked validator`,
  AlreadyValidator: ([validator]) => `${format(validator)} is a validator already`,
  ValidatorSetFull: ([maximum]) => `the validator set is full (${format(maximum)})`,
  NotCommitPhase: ([epoch, current]) =>
    `epoch ${format(epoch)} is not open for commitments (now epoch ${format(current)})`,
  NotRevealPhase: ([epoch, opensAt, closesAt]) =>
    `reveals for epoch ${format(epoch)} are accepted from ${time(opensAt)} until ${time(closesAt)}`,
  NotFinalizePhase: ([epoch, opensAt]) => `epoch ${format(epoch)} can be finalized from ${time(opensAt)}`,
  EpochNotOpened: ([epoch]) => `nobody committed in epoch ${format(epoch)}`,
  EpochAlreadyFinalized: ([epoch]) => `epoch ${format(epoch)} is finalized already`,
  TooManyProviders: ([count, maximum]) =>
    `${format(count)} active providers, at most ${format(maximum)} per epoch`,
  ZeroCommitment: () => "the commitment is zero",
  AlreadyRevealed: ([epoch, validator]) => `${format(validator)} revealed epoch ${format(epoch)} already`,
  NoCommitment: ([epoch, validator]) => `${format(validator)} did not commit in epoch ${format(epoch)}`,
  RevealMismatch: ([epoch, validator]) =>
    `the scores and salt ${format(validator)} revealed for epoch ${format(epoch)} do not match its commitment`,
  ScoreCountMismatch: ([given, expected]) =>
    `${format(given)} scores given, the epoch has ${format(expected)} providers`,
  ScoreOutOfRange: ([index, score]) =>
    `score ${format(score)} at position ${format(index)} is above the maximum`,
  UnknownProvider: ([provider]) => `${format(provider)} is not a registered provider`,
  InvalidEvidence: ([length]) => `evidence of ${format(length)} bytes: it must be 1..16384 bytes`,
  UnknownProposal: ([id]) => `there is no slashing proposal ${format(id)}`,
  ProposalExecuted: ([id]) => `slashing proposal ${format(id)} was executed already`,
  ProposalExpired: ([id, deadline]) => `voting on slashing proposal ${format(id)} ended at ${time(deadline)}`,
  AlreadyVoted: ([id, validator]) => `${format(validator)} voted on proposal ${format(id)} already`,
  SlashAlreadyProposed: ([provider, id]) =>
    `${format(provider)} already has slashing proposal ${format(id)} open: vote on it instead`,
  WrongConsensus: ([index, score]) =>
    `${format(score)} is not the stake-weighted median of the scores revealed for provider ${format(index)}`,
  ConsensusLengthMismatch: ([given, expected]) =>
    `${format(given)} consensus scores given, the epoch has ${format(expected)} providers`,
  StakeAddedAfterProposal: ([id, validator]) =>
    `${format(validator)} registered or added stake after slashing proposal ${format(id)} was made, so it cannot vote on it`,
  NothingToClaim: ([account]) => `${format(account)} has no rewards to claim`,
  InvalidConfiguration: ([reason]) => `invalid configuration: ${format(reason)}`,
};

const revertHints: Record<string, string> = {
  InsufficientBalance:
    "fund the account with the token first (on the devnet, `mycel devnet` funds the dev keys)",
  InsufficientAllowance: "the CLI approves before it stakes or deposits; approve the contract for the amount",
  ModelNotRegistered: "register the parent first: `mycel model register <hash>`",
  UnregisteredModel: "register the model first: `mycel model register <name|hash>`",
  NotRegistered: "register first: `mycel provider stake <amount>` registers a new provider",
  ChallengePeriodActive: "wait until the challenge period is over, then run `mycel channel close` again",
  UnbondingNotFinished: "wait until the unbonding period is over, then withdraw again",
};

/** The reason a contract gave, in words. */
export function describeRevertReason(errorName: string | undefined, args: readonly unknown[]): string {
  if (!errorName) return "the contract reverted without a reason";
  const describe = revertReasons[errorName];
  return describe ? describe(args) : `${errorName}(${args.map(format).join(", ")})`;
}

/** Turns an error from viem into a {@link ContractRevertError} when a contract refused, else a {@link ChainError}. */
export function toChainError(error: unknown, action: string): MycelError {
  if (error instanceof MycelError) return error;
  if (error instanceof BaseError) {
    const reverted = error.walk((entry) => entry instanceof ContractFunctionRevertedError);
    if (reverted instanceof ContractFunctionRevertedError) {
      const errorName = reverted.data?.errorName ?? (reverted.reason ? "Error" : undefined);
      const args = reverted.data?.args ?? (reverted.reason ? [reverted.reason] : []);
      return new ContractRevertError({ action, errorName, args, cause: error });
    }
    return new ChainError(`${action} failed: ${error.shortMessage}`, {
      cause: error,
      hint: "check that the chain's RPC is reachable (--rpc-url) and the deployment matches it (--deployments)",
    });
  }
  return new ChainError(`${action} failed: ${error instanceof Error ? error.message : String(error)}`, {
    cause: error,
  });
}
