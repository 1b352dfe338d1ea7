/** EpochConsensus actions: validator stake, commit-reveal of scores, finalization, rewards, slashing. */
import { type Address, encodeAbiParameters, type Hex, keccak256, parseEventLogs } from "viem";
import type { ChainConnection } from "./client.ts";
import type { Deployments } from "./deployments.ts";
import { epochConsensusAbi } from "./generated/contracts.ts";
import { ensureAllowance } from "./token.ts";
import { sendContractTransaction, type TransactionReporter } from "./transactions.ts";

type Common = { deployments: Deployments; onTransaction?: TransactionReporter };

/** The highest score (scores are 0..maxScore, i.e. basis points of 1.0). */
export const maxScore = 10_000;

/** The commitment a validator posts: keccak256(abi.encode(epoch, validator, scores, salt)), as the contract computes it. */
export function scoreCommitment(parameters: {
  epoch: bigint;
  validator: Address;
  scores: number[];
  salt: Hex;
}): Hex {
  return keccak256(
    encodeAbiParameters(
      [{ type: "uint256" }, { type: "address" }, { type: "uint16[]" }, { type: "bytes32" }],
      [parameters.epoch, parameters.validator, parameters.scores, parameters.salt],
    ),
  );
}

/** Registers the connected account as a validator with `stake`. */
export async function registerValidator(connection: ChainConnection, parameters: Common & { stake: bigint }) {
  const { contracts } = parameters.deployments;
  await ensureAllowance(connection, {
    token: contracts.token,
    spender: contracts.epochConsensus,
    amount: parameters.stake,
    onTransaction: parameters.onTransaction,
  });
  return sendContractTransaction(connection, {
    address: contracts.epochConsensus,
    abi: epochConsensusAbi,
    functionName: "registerValidator",
    args: [parameters.stake],
    action: `register as a validator with a stake of ${parameters.stake}`,
    onTransaction: parameters.onTransaction,
  });
}

/** The current epoch and its provider list (empty until the epoch's first commitment). */
export async function getEpochState(
  connection: ChainConnection,
  parameters: { deployments: Deployments; epoch?: bigint },
) {
  const address = parameters.deployments.contracts.epochConsensus;
  const epoch =
    parameters.epoch ??
    (await connection.publicClient.readContract({
      address,
      abi: epochConsensusAbi,
      functionName: "currentEpoch",
    }));
  const [state, end] = await Promise.all([
    connection.publicClient.readContract({
      address,
      abi: epochConsensusAbi,
      functionName: "getEpoch",
      args: [epoch],
    }),
    connection.publicClient.readContract({
      address,
      abi: epochConsensusAbi,
      functionName: "epochEnd",
      args: [epoch],
    }),
  ]);
  return { epoch, ...state, endsAt: new Date(Number(end) * 1000) };
}

/** Commits scores for the current epoch; keep the returned salt to reveal them. */
export async function commitScores(
  connection: ChainConnection,
  parameters: Common & { epoch: bigint; scores: number[]; salt: Hex },
) {
  const validator = connection.account?.address as Address;
  return sendContractTransaction(connection, {
    address: parameters.deployments.contracts.epochConsensus,
    abi: epochConsensusAbi,
    functionName: "commit",
    args: [parameters.epoch, scoreCommitment({ ...parameters, validator })],
    action: `commit scores for epoch ${parameters.epoch}`,
    onTransaction: parameters.onTransaction,
  });
}

/** Reveals committed scores (one per provider of the epoch, in its order). */
export async function revealScores(
  connection: ChainConnection,
  parameters: Common & { epoch: bigint; scores: number[]; salt: Hex },
) {
  return sendContractTransaction(connection, {
    address: parameters.deployments.contracts.epochConsensus,
    abi: epochConsensusAbi,
    functionName: "reveal",
    args: [parameters.epoch, parameters.scores, parameters.salt],
    action: `reveal scores for epoch ${parameters.epoch}`,
    onTransaction: parameters.onTransaction,
  });
}

/** Finalizes an epoch (anyone may, after its reveal phase). */
export async function finalizeEpoch(connection: ChainConnection, parameters: Common & { epoch: bigint }) {
  return sendContractTransaction(connection, {
    address: parameters.deployments.contracts.epochConsensus,
    abi: epochConsensusAbi,
    functionName: "finalize",
    args: [parameters.epoch],
    action: `finalize epoch ${parameters.epoch}`,
    onTransaction: parameters.onTransaction,
  });
}

/** Proposes slashing a provider, with evidence; returns the proposal id. */
export async function proposeSlash(
  connection: ChainConnection,
  parameters: Common & { provider: Address; amount: bigint; evidence: Hex },
) {
  const sent = await sendContractTransaction(connection, {
    address: parameters.deployments.contracts.epochConsensus,
    abi: epochConsensusAbi,
    functionName: "proposeSlash",
    args: [parameters.provider, parameters.amount, parameters.evidence],
    action: `propose slashing ${parameters.amount} of ${parameters.provider}`,
    onTransaction: parameters.onTransaction,
  });
  const [proposed] = parseEventLogs({
    abi: epochConsensusAbi,
    logs: sent.receipt.logs,
    eventName: "SlashProposed",
  });
  return { ...sent, proposalId: proposed?.args.proposalId ?? (sent.result as bigint) };
}

/** Votes for a slashing proposal. */
export async function voteSlash(connection: ChainConnection, parameters: Common & { proposalId: bigint }) {
  return sendContractTransaction(connection, {
    address: parameters.deployments.contracts.epochConsensus,
    abi: epochConsensusAbi,
    functionName: "voteSlash",
    args: [parameters.proposalId],
    action: `vote to slash (proposal ${parameters.proposalId})`,
    onTransaction: parameters.onTransaction,
  });
}

/** Adds to the epoch reward pool. */
export async function fundRewards(connection: ChainConnection, parameters: Common & { amount: bigint }) {
  const { contracts } = parameters.deployments;
  await ensureAllowance(connection, {
    token: contracts.token,
    spender: contracts.epochConsensus,
    amount: parameters.amount,
    onTransaction: parameters.onTransaction,
  });
  return sendContractTransaction(connection, {
    address: contracts.epochConsensus,
    abi: epochConsensusAbi,
    functionName: "fundRewards",
    args: [parameters.amount],
    action: `fund the reward pool with ${parameters.amount}`,
    onTransaction: parameters.onTransaction,
  });
}

/** A provider's on-chain reputation (last consensus score and moving average, out of {@link maxScore}). */
export async function getProviderStanding(
  connection: ChainConnection,
  parameters: { deployments: Deployments; provider: Address },
) {
  return connection.publicClient.readContract({
    address: parameters.deployments.contracts.epochConsensus,
    abi: epochConsensusAbi,
    functionName: "standingOf",
    args: [parameters.provider],
  });
}
