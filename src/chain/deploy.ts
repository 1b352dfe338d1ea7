/** Deploying Mycel's contracts to a chain, and funding dev accounts on a local one. */
import { type Address, createTestClient, getAddress, type Hex, http, parseEther } from "viem";
import { type ChainConnection, requireWallet } from "./client.ts";
import type { Deployments } from "./deployments.ts";
import {
  epochConsensusAbi,
  epochConsensusBytecode,
  modelRegistryAbi,
  modelRegistryBytecode,
  mycelTokenAbi,
  mycelTokenBytecode,
  paymentChannelsAbi,
  paymentChannelsBytecode,
  providerRegistryAbi,
  providerRegistryBytecode,
} from "./generated/contracts.ts";
import { deployContract, sendContractTransaction, type TransactionReporter } from "./transactions.ts";

/** The economic and timing parameters of a deployment (token amounts in the token's smallest unit). */
export type DeployParameters = {
  minimumProviderStake: bigint;
  providerUnbondingSeconds: number;
  maxProviders: number;
  minChallengeSeconds: number;
  maxChallengeSeconds: number;
  minimumValidatorStake: bigint;
  validatorUnbondingSeconds: number;
  epochSeconds: number;
  revealSeconds: number;
  votingSeconds: number;
  rewardPerEpoch: bigint;
  validatorShareBps: number;
};

const day = 86_400;

/** Defaults for a public chain: a week of unbonding, daily epochs. */
export const defaultDeployParameters: DeployParameters = {
  minimumProviderStake: parseEther("100"),
  providerUnbondingSeconds: 7 * day,
  maxProviders: 256,
  minChallengeSeconds: 3_600,
  maxChallengeSeconds: 30 * day,
  minimumValidatorStake: parseEther("1000"),
  validatorUnbondingSeconds: 7 * day,
  epochSeconds: day,
  revealSeconds: 3_600,
  votingSeconds: 3 * day,
  rewardPerEpoch: parseEther("1000"),
  validatorShareBps: 2_000,
};

/** Defaults for the local devnet: the same rules on minutes instead of days. */
export const devnetDeployParameters: DeployParameters = {
  ...defaultDeployParameters,
  providerUnbondingSeconds: 600,
  minChallengeSeconds: 60,
  validatorUnbondingSeconds: 1_200,
  epochSeconds: 600,
  revealSeconds: 120,
  votingSeconds: 300,
};

/** Parameters of {@link deployMycel}. */
export type DeployMycelParameters = {
  /** An existing ERC-20 to use; without it a MycelToken is deployed (devnets). */
  token?: Address;
  parameters?: Partial<DeployParameters>;
  onTransaction?: TransactionReporter;
};

/** Deploys the registries, payment channels and consensus (and a token unless given) and links them. */
export async function deployMycel(
  connection: ChainConnection,
  options: DeployMycelParameters = {},
): Promise<Deployments> {
  const wallet = requireWallet(connection);
  const settings = { ...defaultDeployParameters, ...options.parameters };
  const onTransaction = options.onTransaction;
  const firstBlock = await connection.publicClient.getBlockNumber();
  const token =
    options.token ??
    (
      await deployContract(connection, {
        abi: mycelTokenAbi,
        bytecode: mycelTokenBytecode,
        action: "deploy MycelToken",
        onTransaction,
      })
    ).address;
  const modelRegistry = await deployContract(connection, {
    abi: modelRegistryAbi,
    bytecode: modelRegistryBytecode,
    action: "deploy ModelRegistry",
    onTransaction,
  });
  const providerRegistry = await deployContract(connection, {
    abi: providerRegistryAbi,
    bytecode: providerRegistryBytecode,
    args: [
      token,
      modelRegistry.address,
      settings.minimumProviderStake,
      BigInt(settings.providerUnbondingSeconds),
      BigInt(settings.maxProviders),
    ],
    action: "deploy ProviderRegistry",
    onTransaction,
  });
  const paymentChannels = await deployContract(connection, {
    abi: paymentChannelsAbi,
    bytecode: paymentChannelsBytecode,
    args: [BigInt(settings.minChallengeSeconds), BigInt(settings.maxChallengeSeconds)],
    action: "deploy PaymentChannels",
    onTransaction,
  });
  const epochConsensus = await deployContract(connection, {
    abi: epochConsensusAbi,
    bytecode: epochConsensusBytecode,
    args: [
      token,
      providerRegistry.address,
      settings.minimumValidatorStake,
      BigInt(settings.validatorUnbondingSeconds),
      BigInt(settings.epochSeconds),
      BigInt(settings.revealSeconds),
      BigInt(settings.votingSeconds),
      settings.rewardPerEpoch,
      settings.validatorShareBps,
    ],
    action: "deploy EpochConsensus",
    onTransaction,
  });
  await sendContractTransaction(connection, {
    address: providerRegistry.address,
    abi: providerRegistryAbi,
    functionName: "setConsensus",
    args: [epochConsensus.address],
    action: "let EpochConsensus slash through ProviderRegistry",
    onTransaction,
  });
  return {
    chainId: connection.chain.id,
    rpcUrl: connection.rpcUrl,
    deployer: wallet.account.address,
    blockNumber: firstBlock.toString(),
    deployedAt: new Date().toISOString(),
    contracts: {
      token: getAddress(token),
      modelRegistry: modelRegistry.address,
      providerRegistry: providerRegistry.address,
      paymentChannels: paymentChannels.address,
      epochConsensus: epochConsensus.address,
    },
    parameters: {
      ...settings,
      minimumProviderStake: settings.minimumProviderStake.toString(),
      minimumValidatorStake: settings.minimumValidatorStake.toString(),
      rewardPerEpoch: settings.rewardPerEpoch.toString(),
    },
  };
}

/** The private key of anvil's first default account (the well-known test mnemonic): devnets only. */
export const anvilDeployerKey: Hex = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/** Parameters of {@link fundDevAccounts}. */
export type FundDevAccountsParameters = {
  deployments: Deployments;
  accounts: Address[];
  /** Native balance to set (anvil only), default 1000 ETH. */
  ether?: bigint;
  /** MycelToken to mint to each, default 1,000,000. */
  tokens?: bigint;
  onTransaction?: TransactionReporter;
};

/** On a local anvil: gives each account ether (anvil_setBalance) and mints it devnet tokens (deployer = token owner). */
export async function fundDevAccounts(
  connection: ChainConnection,
  parameters: FundDevAccountsParameters,
): Promise<void> {
  const ether = parameters.ether ?? parseEther("1000");
  const tokens = parameters.tokens ?? parseEther("1000000");
  const testClient = createTestClient({
    mode: "anvil",
    chain: connection.chain,
    transport: http(connection.rpcUrl),
  });
  for (const account of parameters.accounts) {
    await testClient.setBalance({ address: account, value: ether });
    await sendContractTransaction(connection, {
      address: parameters.deployments.contracts.token,
      abi: mycelTokenAbi,
      functionName: "mint",
      args: [account, tokens],
      action: `mint ${tokens / 10n ** 18n} MYC to ${account}`,
      onTransaction: parameters.onTransaction,
    });
  }
}
