/**
 * What the explorer reads from the chain: stakes, the model registry, every payment channel and its settlements,
 * validators and their epochs. Read-only; each view is a bounded number of calls (limits below, shown in docs).
 */
import { type Address, getAddress } from "viem";
import {
  type ChainConnection,
  type Deployments,
  epochConsensusAbi,
  getChannel,
  getEpochState,
  getModelEntry,
  maxScore,
  modelRegistryAbi,
  paymentChannelsAbi,
  providerRegistryAbi,
  readEpochClock,
} from "../chain/index.ts";
import type { ChainChannel, EpochView, PaymentsView, RegistryModel, ValidatorsView } from "./types.ts";

/** How far back the views look, so that a long-lived chain costs a bounded number of calls. */
export const chainViewLimits = {
  /** Registry entries listed (the first registered). */
  registryModels: 500,
  /** Epochs shown, newest first. */
  epochs: 8,
  /** Slashing proposals shown, newest first. */
  slashProposals: 20,
  /** Settlements shown, newest first, found in the last `settlementBlocks` blocks. */
  settlements: 50,
  settlementBlocks: 10_000n,
} as const;

type ChainContext = { connection: ChainConnection; deployments: Deployments };

/** Registered providers and their stake. */
export async function readProviderStakes(context: ChainContext): Promise<Map<string, bigint>> {
  const { connection, deployments } = context;
  const address = deployments.contracts.providerRegistry;
  const read = connection.publicClient;
  const providers = await read.readContract({
    address,
    abi: providerRegistryAbi,
    functionName: "providerAddresses",
  });
  const records = await Promise.all(
    providers.map((provider) =>
      read.readContract({ address, abi: providerRegistryAbi, functionName: "getProvider", args: [provider] }),
    ),
  );
  return new Map(providers.map((provider, index) => [provider.toLowerCase(), records[index]?.stake ?? 0n]));
}

/** Registry entries (without who serves them: the caller knows that). */
export async function readRegistry(
  context: ChainContext,
): Promise<Omit<RegistryModel, "served_by" | "registered">[]> {
  const { connection, deployments } = context;
  const address = deployments.contracts.modelRegistry;
  const count = await connection.publicClient.readContract({
    address,
    abi: modelRegistryAbi,
    functionName: "modelCount",
  });
  const limit =
    count < BigInt(chainViewLimits.registryModels) ? count : BigInt(chainViewLimits.registryModels);
  const hashes = await connection.publicClient.readContract({
    address,
    abi: modelRegistryAbi,
    functionName: "modelHashes",
    args: [0n, limit],
  });
  const entries = await Promise.all(
    hashes.map((modelHash) => getModelEntry(connection, { deployments, modelHash })),
  );
  return entries
    .filter((entry) => entry !== undefined)
    .map((entry) => ({
      model_hash: entry.modelHash,
      name: entry.name,
      license: entry.license,
      publisher: entry.publisher,
      registered_at: entry.registeredAt.getTime(),
      deprecated: entry.deprecated,
      metadata_uri: entry.metadataUri || null,
      parents: entry.parents.map((parent) => ({ model_hash: parent.modelHash, relation: parent.relation })),
      children: entry.children,
    }));
}

/** Every channel to every registered provider, per-provider totals and the latest settlements. */
export async function readPayments(
  context: ChainContext & { gateway: Address },
): Promise<Pick<PaymentsView, "channels" | "providers" | "settlements">> {
  const { connection, deployments } = context;
  const read = connection.publicClient;
  const stakes = await readProviderStakes(context);
  const channelIds = await Promise.all(
    [...stakes.keys()].map((provider) =>
      read.readContract({
        address: deployments.contracts.paymentChannels,
        abi: paymentChannelsAbi,
        functionName: "channelsOfProvider",
        args: [provider as Address],
      }),
    ),
  );
  const records = await Promise.all(
    channelIds.flat().map((channelId) => getChannel(connection, { deployments, channelId })),
  );
  const channels: ChainChannel[] = records.map((record) => ({
    channel_id: record.channelId,
    client: record.client,
    provider: record.provider,
    deposit: record.deposit.toString(),
    settled: record.settled.toString(),
    state: record.state,
    close_requested_at: record.closesAt
      ? record.closesAt.getTime() - record.challengePeriodSeconds * 1000
      : null,
    mine: record.client.toLowerCase() === context.gateway.toLowerCase(),
  }));
  const providers = [...stakes.entries()].map(([provider, stake]) => {
    const own = records.filter((record) => record.provider.toLowerCase() === provider);
    return {
      address: getAddress(provider),
      earned: own.reduce((sum, record) => sum + record.settled, 0n).toString(),
      deposits: own.reduce((sum, record) => sum + record.deposit, 0n).toString(),
      channels: own.length,
      stake: stake.toString(),
    };
  });
  const latest = await read.getBlockNumber();
  const fromBlock =
    latest > chainViewLimits.settlementBlocks ? latest - chainViewLimits.settlementBlocks : 0n;
  const events = await read.getContractEvents({
    address: deployments.contracts.paymentChannels,
    abi: paymentChannelsAbi,
    eventName: "ChannelSettled",
    fromBlock,
    toBlock: latest,
  });
  const newest = events.slice(-chainViewLimits.settlements).reverse();
  const blockTimes = new Map<bigint, number>();
  await Promise.all(
    [...new Set(newest.map((event) => event.blockNumber))].map(async (blockNumber) => {
      const block = await read.getBlock({ blockNumber });
      blockTimes.set(blockNumber, Number(block.timestamp) * 1000);
    }),
  );
  const byId = new Map(records.map((record) => [record.channelId.toLowerCase(), record]));
  const settlements = newest.map((event) => {
    const channel = byId.get((event.args.channelId ?? "").toLowerCase());
    return {
      channel_id: event.args.channelId ?? "",
      provider: channel?.provider ?? "",
      client: channel?.client ?? "",
      paid: (event.args.paid ?? 0n).toString(),
      cumulative: (event.args.cumulativeAmount ?? 0n).toString(),
      block: Number(event.blockNumber),
      time: blockTimes.get(event.blockNumber) ?? null,
      transaction: event.transactionHash,
    };
  });
  return { channels, providers, settlements };
}

/** Validators, the newest epochs with every revealed score and the consensus, standings and slashing proposals. */
export async function readValidators(
  context: ChainContext,
): Promise<Omit<ValidatorsView, "object" | "chain">> {
  const { connection, deployments } = context;
  const read = connection.publicClient;
  const address = deployments.contracts.epochConsensus;
  const [validatorAddresses, clock, proposalCount, providerAddresses] = await Promise.all([
    read.readContract({ address, abi: epochConsensusAbi, functionName: "validatorAddresses" }),
    readEpochClock(connection, { deployments }),
    read.readContract({ address, abi: epochConsensusAbi, functionName: "proposalCount" }),
    read.readContract({
      address: deployments.contracts.providerRegistry,
      abi: providerRegistryAbi,
      functionName: "providerAddresses",
    }),
  ]);
  const validators = await Promise.all(
    validatorAddresses.map(async (validator) => {
      const record = await read.readContract({
        address,
        abi: epochConsensusAbi,
        functionName: "getValidator",
        args: [validator],
      });
      return { address: validator, stake: record.stake.toString(), unbonding: record.unbonding.toString() };
    }),
  );
  const currentEpoch = clock.epoch;
  const epochNumbers: bigint[] = [];
  for (let epoch = currentEpoch; epoch >= 0n && epochNumbers.length < chainViewLimits.epochs; epoch--)
    epochNumbers.push(epoch);
  const epochs: EpochView[] = await Promise.all(
    epochNumbers.map(async (epoch) => {
      const state = await getEpochState(connection, { deployments, epoch });
      const commitments = await Promise.all(
        state.committers.map((validator) =>
          read.readContract({
            address,
            abi: epochConsensusAbi,
            functionName: "getCommitment",
            args: [epoch, validator],
          }),
        ),
      );
      const revealers = state.committers.filter((_, index) => commitments[index]?.revealed);
      const scores = await Promise.all(
        revealers.map(async (validator) => ({
          validator: validator as string,
          scores: [
            ...(await read.readContract({
              address,
              abi: epochConsensusAbi,
              functionName: "revealedScores",
              args: [epoch, validator],
            })),
          ],
        })),
      );
      const consensus = state.finalized
        ? [
            ...(await read.readContract({
              address,
              abi: epochConsensusAbi,
              functionName: "consensusScores",
              args: [epoch],
            })),
          ]
        : null;
      const endsAt = BigInt(state.endsAt.getTime() / 1000);
      const revealsUntil = endsAt + clock.revealPeriod;
      return {
        epoch: Number(epoch),
        opened: state.opened,
        finalized: state.finalized,
        phase: state.finalized
          ? "finalized"
          : clock.now < endsAt
            ? "committing"
            : clock.now < revealsUntil
              ? "revealing"
              : "finalizing",
        ends_at: state.endsAt.getTime(),
        reveals_until: Number(revealsUntil) * 1000,
        providers: [...state.providers],
        committers: [...state.committers],
        revealed: state.revealed,
        scores,
        consensus,
      };
    }),
  );
  const standings = await Promise.all(
    providerAddresses.map(async (provider) => {
      const standing = await read.readContract({
        address,
        abi: epochConsensusAbi,
        functionName: "standingOf",
        args: [provider],
      });
      return {
        provider: provider as string,
        reputation: standing.reputation,
        last_score: standing.lastScore,
        scored: standing.scored,
        last_epoch: Number(standing.lastEpoch),
      };
    }),
  );
  const proposalIds: bigint[] = [];
  for (let id = proposalCount - 1n; id >= 0n && proposalIds.length < chainViewLimits.slashProposals; id--)
    proposalIds.push(id);
  const slashes = await Promise.all(
    proposalIds.map(async (id) => {
      const proposal = await read.readContract({
        address,
        abi: epochConsensusAbi,
        functionName: "getProposal",
        args: [id],
      });
      return {
        id: Number(id),
        provider: proposal.provider as string,
        proposer: proposal.proposer as string,
        amount: proposal.amount.toString(),
        executed: proposal.executed,
        deadline: Number(proposal.deadline) * 1000,
        yes_stake: proposal.yesStake.toString(),
        total_stake: proposal.totalStake.toString(),
      };
    }),
  );
  return {
    current_epoch: Number(currentEpoch),
    max_score: maxScore,
    validators,
    epochs,
    standings,
    slashes,
  };
}

/** A read that is cached for `ttlMs`, shared by concurrent callers, so many open pages cost one set of calls. */
export function cachedRead<T>(read: () => Promise<T>, ttlMs: number): () => Promise<T> {
  let cached: { at: number; value: Promise<T> } | undefined;
  return () => {
    const now = Date.now();
    if (cached && now - cached.at < ttlMs) return cached.value;
    const value = read();
    cached = { at: now, value };
    value.catch(() => {
      if (cached?.value === value) cached = undefined;
    });
    return value;
  };
}
