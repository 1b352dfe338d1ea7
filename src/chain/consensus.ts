/** EpochConsensus actions: validator stake, commit-reveal of scores, finalization, rewards, slashing. */
import { type Address, encodeAbiParameters, type Hex, keccak256, parseEventLogs } from "viem";
import type { ChainConnection } from "./client.ts";
import type { Deployments } from "./deployments.ts";
import { epochConsensusAbi, providerRegistryAbi } from "./generated/contracts.ts";
import { type AmountFormat, sendWithAllowance, show } from "./token.ts";
import { sendContractTransaction, type TransactionReporter } from "./transactions.ts";

type Common = { deployments: Deployments; onTransaction?: TransactionReporter } & AmountFormat;

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
  return sendWithAllowance(connection, {
    pull: { token: contracts.token, amount: parameters.stake },
    formatAmount: parameters.formatAmount,
    address: contracts.epochConsensus,
    abi: epochConsensusAbi,
    functionName: "registerValidator",
    args: [parameters.stake],
    action: `register as a validator with a stake of ${show(parameters, parameters.stake)}`,
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

/** Commits scores for the current epoch; keep `scores` and `salt` to reveal them. */
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

/**
 * Each provider's consensus score: the highest score s such that the validators who gave at least s hold
 * at least half of the total weight (the stake-weighted median). `scores[v][p]` is validator v's score
 * for provider p; `weights[v]` its weight. This is what EpochConsensus.finalize checks.
 */
export function computeConsensus(parameters: {
  scores: readonly (readonly number[])[];
  weights: readonly bigint[];
}): number[] {
  const { scores, weights } = parameters;
  const total = weights.reduce((sum, weight) => sum + weight, 0n);
  const providerCount = scores[0]?.length ?? 0;
  const consensus: number[] = [];
  for (let provider = 0; provider < providerCount; provider++) {
    const given = scores
      .map((row, validator) => ({ score: row[provider] ?? 0, weight: weights[validator] ?? 0n }))
      .sort((a, b) => b.score - a.score);
    let cumulative = 0n;
    let median = 0;
    for (let index = 0; index < given.length; index++) {
      const entry = given[index] as { score: number; weight: bigint };
      cumulative += entry.weight;
      // Only decide at the last validator with this score: all of them count toward "given >= s".
      if (given[index + 1]?.score === entry.score) continue;
      if (cumulative * 2n >= total) {
        median = entry.score;
        break;
      }
    }
    consensus.push(median);
  }
  return consensus;
}

/** Reads an epoch's revealed scores and weights and computes its consensus vector for `finalize`. */
export async function epochConsensusInput(
  connection: ChainConnection,
  parameters: { deployments: Deployments; epoch: bigint },
): Promise<number[]> {
  const address = parameters.deployments.contracts.epochConsensus;
  const read = connection.publicClient;
  const state = await read.readContract({
    address,
    abi: epochConsensusAbi,
    functionName: "getEpoch",
    args: [parameters.epoch],
  });
  const revealed = (
    await Promise.all(
      state.committers.map(async (validator) => {
        const commitment = await read.readContract({
          address,
          abi: epochConsensusAbi,
          functionName: "getCommitment",
          args: [parameters.epoch, validator],
        });
        if (!commitment.revealed) return undefined;
        const scores = await read.readContract({
          address,
          abi: epochConsensusAbi,
          functionName: "revealedScores",
          args: [parameters.epoch, validator],
        });
        return { weight: commitment.weight, scores: [...scores] };
      }),
    )
  ).filter((entry): entry is { weight: bigint; scores: number[] } => entry !== undefined);
  if (revealed.length === 0) return [];
  return computeConsensus({
    scores: revealed.map((entry) => entry.scores),
    weights: revealed.map((entry) => entry.weight),
  });
}

/** Finalizes an epoch (anyone may, after its reveal phase): computes the consensus off chain, the contract checks it. */
export async function finalizeEpoch(connection: ChainConnection, parameters: Common & { epoch: bigint }) {
  const consensus = await epochConsensusInput(connection, parameters);
  return sendContractTransaction(connection, {
    address: parameters.deployments.contracts.epochConsensus,
    abi: epochConsensusAbi,
    functionName: "finalize",
    args: [parameters.epoch, consensus],
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
    action: `propose slashing ${show(parameters, parameters.amount)} of ${parameters.provider}`,
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
  return sendWithAllowance(connection, {
    pull: { token: contracts.token, amount: parameters.amount },
    formatAmount: parameters.formatAmount,
    address: contracts.epochConsensus,
    abi: epochConsensusAbi,
    functionName: "fundRewards",
    args: [parameters.amount],
    action: `fund the reward pool with ${show(parameters, parameters.amount)}`,
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

/** The chain's clock and the current epoch's timing (block time, which a devnet or test may move). */
export async function readEpochClock(connection: ChainConnection, parameters: { deployments: Deployments }) {
  const address = parameters.deployments.contracts.epochConsensus;
  const read = connection.publicClient;
  const [block, epoch, revealPeriod] = await Promise.all([
    read.getBlock({ blockTag: "latest" }),
    read.readContract({ address, abi: epochConsensusAbi, functionName: "currentEpoch" }),
    read.readContract({ address, abi: epochConsensusAbi, functionName: "revealPeriod" }),
  ]);
  const endsAt = await read.readContract({
    address,
    abi: epochConsensusAbi,
    functionName: "epochEnd",
    args: [epoch],
  });
  return { now: block.timestamp, epoch, endsAt: BigInt(endsAt), revealPeriod: BigInt(revealPeriod) };
}

/** A reader of the chain's clock that reads what EpochConsensus fixes at deployment (reveal period, epoch ends) once. */
export type EpochClockReader = {
  /** As {@link readEpochClock}, in two reads (block and current epoch) once the epoch's end is known. */
  read(): Promise<{ now: bigint; epoch: bigint; endsAt: bigint; revealPeriod: bigint }>;
  /** When `epoch` ends (chain seconds): read once per epoch. */
  endOf(epoch: bigint): Promise<bigint>;
};

/** Epoch ends remembered at most by an {@link EpochClockReader} (the current and previous epochs are what a loop asks). */
const rememberedEpochEnds = 8;

/**
 * Creates an {@link EpochClockReader}: `revealPeriod`, `epochLength` and `genesis` are immutable in EpochConsensus, so
 * the reveal period and each epoch's end never change once read; only the block's time and the current epoch are
 * read on every call.
 */
export function createEpochClockReader(
  connection: ChainConnection,
  parameters: { deployments: Deployments },
): EpochClockReader {
  const address = parameters.deployments.contracts.epochConsensus;
  const read = connection.publicClient;
  let revealPeriod: Promise<bigint> | undefined;
  const ends = new Map<bigint, Promise<bigint>>();
  const endOf = (epoch: bigint) => {
    let end = ends.get(epoch);
    if (!end) {
      end = read
        .readContract({ address, abi: epochConsensusAbi, functionName: "epochEnd", args: [epoch] })
        .then(BigInt);
      // A failed read is not remembered.
      end.catch(() => ends.delete(epoch));
      ends.set(epoch, end);
      for (const [known] of ends) if (ends.size > rememberedEpochEnds) ends.delete(known);
    }
    return end;
  };
  return {
    endOf,
    async read() {
      revealPeriod ??= read
        .readContract({ address, abi: epochConsensusAbi, functionName: "revealPeriod" })
        .then(BigInt);
      revealPeriod.catch(() => {
        revealPeriod = undefined;
      });
      const [block, epoch] = await Promise.all([
        read.getBlock({ blockTag: "latest" }),
        read.readContract({ address, abi: epochConsensusAbi, functionName: "currentEpoch" }),
      ]);
      return { now: block.timestamp, epoch, endsAt: await endOf(epoch), revealPeriod: await revealPeriod };
    },
  };
}

/** The providers with stake now, in ProviderRegistry's order (the order a new epoch takes). */
export async function readActiveProviders(
  connection: ChainConnection,
  parameters: { deployments: Deployments },
): Promise<Address[]> {
  return [
    ...(await connection.publicClient.readContract({
      address: parameters.deployments.contracts.providerRegistry,
      abi: providerRegistryAbi,
      functionName: "activeProviders",
    })),
  ];
}

/** A slashing proposal with the evidence it was proposed with. */
export type SlashProposalRecord = {
  proposalId: bigint;
  provider: Address;
  proposer: Address;
  amount: bigint;
  deadline: bigint;
  executed: boolean;
  evidence: Hex;
};

/** Slashing proposals with id >= `fromId` (evidence from their SlashProposed events). */
export async function readSlashProposals(
  connection: ChainConnection,
  parameters: { deployments: Deployments; fromId: bigint },
): Promise<SlashProposalRecord[]> {
  const address = parameters.deployments.contracts.epochConsensus;
  const read = connection.publicClient;
  const count = await read.readContract({ address, abi: epochConsensusAbi, functionName: "proposalCount" });
  if (count <= parameters.fromId) return [];
  const events = await read.getContractEvents({
    address,
    abi: epochConsensusAbi,
    eventName: "SlashProposed",
    fromBlock: BigInt(parameters.deployments.blockNumber),
    toBlock: "latest",
  });
  const records: SlashProposalRecord[] = [];
  for (const event of events) {
    const id = event.args.proposalId;
    if (id === undefined || id < parameters.fromId) continue;
    const proposal = await read.readContract({
      address,
      abi: epochConsensusAbi,
      functionName: "getProposal",
      args: [id],
    });
    records.push({
      proposalId: id,
      provider: proposal.provider,
      proposer: proposal.proposer,
      amount: proposal.amount,
      deadline: BigInt(proposal.deadline),
      executed: proposal.executed,
      evidence: (event.args.evidence ?? "0x") as Hex,
    });
  }
  return records;
}

/** Whether a validator voted on a proposal. */
export async function hasVotedOnSlash(
  connection: ChainConnection,
  parameters: { deployments: Deployments; proposalId: bigint; validator: Address },
): Promise<boolean> {
  return connection.publicClient.readContract({
    address: parameters.deployments.contracts.epochConsensus,
    abi: epochConsensusAbi,
    functionName: "hasVoted",
    args: [parameters.proposalId, parameters.validator],
  });
}

/** The commitment a validator posted for an epoch (hash zero when it posted none). */
export async function getScoreCommitment(
  connection: ChainConnection,
  parameters: { deployments: Deployments; epoch: bigint; validator: Address },
): Promise<{ hash: Hex; revealed: boolean }> {
  const commitment = await connection.publicClient.readContract({
    address: parameters.deployments.contracts.epochConsensus,
    abi: epochConsensusAbi,
    functionName: "getCommitment",
    args: [parameters.epoch, parameters.validator],
  });
  return { hash: commitment.hash, revealed: commitment.revealed };
}

/** A validator's bonded stake (0 when not registered). */
export async function readValidatorStake(
  connection: ChainConnection,
  parameters: { deployments: Deployments; validator: Address },
): Promise<bigint> {
  const record = await connection.publicClient.readContract({
    address: parameters.deployments.contracts.epochConsensus,
    abi: epochConsensusAbi,
    functionName: "getValidator",
    args: [parameters.validator],
  });
  return record.stake;
}
