/** ProviderRegistry actions: register with stake, add stake, unbond, withdraw, read a record. */
import type { Address, Hex } from "viem";
import type { ChainConnection } from "./client.ts";
import type { Deployments } from "./deployments.ts";
import { toChainError } from "./errors.ts";
import { providerRegistryAbi } from "./generated/contracts.ts";
import { type AmountFormat, sendWithAllowance, show } from "./token.ts";
import { sendContractTransaction, type TransactionReporter } from "./transactions.ts";

/** A model a provider offers, with prices per 1M tokens in the token's smallest unit. */
export type ProviderOffer = { modelHash: Hex; inputPricePerMillion: bigint; outputPricePerMillion: bigint };

/** A provider's on-chain record. */
export type ProviderRecord = {
  address: Address;
  peerId: string;
  stake: bigint;
  unbonding: bigint;
  unbondingReleaseAt: Date | undefined;
  registeredAt: Date;
  offers: ProviderOffer[];
  active: boolean;
};

type Common = { deployments: Deployments; onTransaction?: TransactionReporter } & AmountFormat;

/** Registers the connected account as a provider, approving and staking `stake`. */
export async function registerProvider(
  connection: ChainConnection,
  parameters: Common & { peerId: string; offers: ProviderOffer[]; stake: bigint },
) {
  const { contracts } = parameters.deployments;
  return sendWithAllowance(connection, {
    pull: { token: contracts.token, amount: parameters.stake },
    formatAmount: parameters.formatAmount,
    address: contracts.providerRegistry,
    abi: providerRegistryAbi,
    functionName: "register",
    args: [parameters.peerId, parameters.offers, parameters.stake],
    action: `register as a provider (peer ${parameters.peerId}) with a stake of ${show(parameters, parameters.stake)}`,
    onTransaction: parameters.onTransaction,
  });
}

/** Adds stake to the connected provider. */
export async function addProviderStake(connection: ChainConnection, parameters: Common & { amount: bigint }) {
  const { contracts } = parameters.deployments;
  return sendWithAllowance(connection, {
    pull: { token: contracts.token, amount: parameters.amount },
    formatAmount: parameters.formatAmount,
    address: contracts.providerRegistry,
    abi: providerRegistryAbi,
    functionName: "addStake",
    args: [parameters.amount],
    action: `add ${show(parameters, parameters.amount)} to the provider stake`,
    onTransaction: parameters.onTransaction,
  });
}

/** Starts unbonding `amount` of the connected provider's stake. */
export async function requestProviderUnbond(
  connection: ChainConnection,
  parameters: Common & { amount: bigint },
) {
  return sendContractTransaction(connection, {
    address: parameters.deployments.contracts.providerRegistry,
    abi: providerRegistryAbi,
    functionName: "requestUnbond",
    args: [parameters.amount],
    action: `unbond ${show(parameters, parameters.amount)} of the provider stake`,
    onTransaction: parameters.onTransaction,
  });
}

/** Withdraws the connected provider's unbonded stake. */
export async function withdrawProviderStake(connection: ChainConnection, parameters: Common) {
  return sendContractTransaction(connection, {
    address: parameters.deployments.contracts.providerRegistry,
    abi: providerRegistryAbi,
    functionName: "withdraw",
    args: [],
    action: "withdraw the unbonded provider stake",
    onTransaction: parameters.onTransaction,
  });
}

/** Reads a provider's record, or undefined when it is not registered. */
export async function getProviderRecord(
  connection: ChainConnection,
  parameters: { deployments: Deployments; provider: Address },
): Promise<ProviderRecord | undefined> {
  const address = parameters.deployments.contracts.providerRegistry;
  try {
    const registered = await connection.publicClient.readContract({
      address,
      abi: providerRegistryAbi,
      functionName: "isRegistered",
      args: [parameters.provider],
    });
    if (!registered) return undefined;
    const [record, active] = await Promise.all([
      connection.publicClient.readContract({
        address,
        abi: providerRegistryAbi,
        functionName: "getProvider",
        args: [parameters.provider],
      }),
      connection.publicClient.readContract({
        address,
        abi: providerRegistryAbi,
        functionName: "isActive",
        args: [parameters.provider],
      }),
    ]);
    return {
      address: parameters.provider,
      peerId: record.peerId,
      stake: record.stake,
      unbonding: record.unbonding,
      unbondingReleaseAt:
        record.unbondingReleaseAt === 0n ? undefined : new Date(Number(record.unbondingReleaseAt) * 1000),
      registeredAt: new Date(Number(record.registeredAt) * 1000),
      offers: record.offers.map((offer) => ({ ...offer })),
      active,
    };
  } catch (error) {
    throw toChainError(error, `reading provider ${parameters.provider}`);
  }
}

/** A provider with stake now, as discovery needs it: where to find it (peer id) and what it offers. */
export type StakedProvider = { address: Address; peerId: string; offers: ProviderOffer[] };

/** Providers read per getProviders call by {@link listStakedProviders} (each costs an eth_call a few SLOADs per offer). */
const stakedProvidersPerCall = 50;

/** Reads every provider with stake now (ProviderRegistry.activeProviders), with its peer id and offers. */
export async function listStakedProviders(
  connection: ChainConnection,
  parameters: { deployments: Deployments },
): Promise<StakedProvider[]> {
  const address = parameters.deployments.contracts.providerRegistry;
  try {
    const active = await connection.publicClient.readContract({
      address,
      abi: providerRegistryAbi,
      functionName: "activeProviders",
    });
    // A page of registrations per call, the pages at once: one round trip after activeProviders for up to 50 providers.
    const pages: (typeof active)[] = [];
    for (let start = 0; start < active.length; start += stakedProvidersPerCall)
      pages.push(active.slice(start, start + stakedProvidersPerCall));
    const records = await Promise.all(
      pages.map((page) =>
        connection.publicClient.readContract({
          address,
          abi: providerRegistryAbi,
          functionName: "getProviders",
          args: [page],
        }),
      ),
    );
    return pages.flatMap((page, pageIndex) =>
      page.flatMap((provider, index) => {
        const record = records[pageIndex]?.[index];
        return record
          ? [
              {
                address: provider,
                peerId: record.peerId,
                offers: record.offers.map((offer) => ({ ...offer })),
              },
            ]
          : [];
      }),
    );
  } catch (error) {
    throw toChainError(error, "listing the staked providers");
  }
}
