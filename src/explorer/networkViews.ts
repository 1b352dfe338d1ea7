/**
 * The network views: providers with their on-chain stake, the model registry with who serves each model, payments
 * (this gateway's and the chain's), validators and epochs, and what the explorer is connected to. Chain reads are
 * cached; a chain that does not answer gives 503 naming it, while the other views keep working.
 */
import { type ChainConnection, type Deployments, getTokenInfo, type TokenInfo } from "../chain/index.ts";
import { describeError, ServiceUnavailableError } from "../errors/index.ts";
import type { Gateway } from "../gateway/index.ts";
import type { Logger } from "../log/index.ts";
import { cachedRead, readPayments, readProviderStakes, readRegistry, readValidators } from "./chainView.ts";
import { describeProviders, summarizeGatewayPayments } from "./gatewayViews.ts";
import type {
  ExplorerInfo,
  ExplorerProvider,
  PaymentsView,
  RegistryList,
  RegistryModel,
  ValidatorsView,
} from "./types.ts";

/** The chain the explorer reads. */
export type ExplorerChain = { connection: ChainConnection; deployments: Deployments };

/** How long each chain read is cached. */
const cacheMs = {
  token: 3_600_000,
  stakes: 5_000,
  registry: 5_000,
  payments: 2_000,
  validators: 2_000,
} as const;

/** The chain reads, cached; undefined without a chain. */
function chainReads(chain: ExplorerChain | undefined, gateway: Gateway) {
  /** A cached chain read whose failure says which chain did not answer (503, retried after the cache time). */
  const fromChain = <T>(what: string, ttlMs: number, read: (context: ExplorerChain) => Promise<T>) =>
    chain
      ? cachedRead(async () => {
          try {
            return await read(chain);
          } catch (error) {
            throw new ServiceUnavailableError(
              `cannot read ${what} from the chain at ${chain.connection.rpcUrl}`,
              {
                details: describeError(error),
                hint: "check that the chain's RPC (--rpc-url) answers; the other views work meanwhile",
                retryAfterSeconds: 5,
              },
            );
          }
        }, ttlMs)
      : undefined;
  return {
    token: fromChain("the payment token", cacheMs.token, (context) =>
      getTokenInfo(context.connection, context.deployments.contracts.token),
    ),
    stakes: fromChain("provider stakes", cacheMs.stakes, readProviderStakes),
    registry: fromChain("the model registry", cacheMs.registry, readRegistry),
    payments: fromChain("payment channels", cacheMs.payments, (context) =>
      readPayments({ ...context, gateway: gateway.address }),
    ),
    validators: fromChain("validators and epochs", cacheMs.validators, readValidators),
  };
}

/** Who serves each model now, by model hash, and each model's name. */
function servedModels(gateway: Gateway) {
  const served = new Map<string, RegistryModel["served_by"]>();
  const names = new Map<string, string>();
  for (const provider of describeProviders(gateway)) {
    if (provider.status === "expired") continue;
    for (const model of provider.models) {
      const list = served.get(model.hash) ?? [];
      list.push({
        address: provider.address,
        peer_id: provider.peer_id,
        price_per_million: provider.price_per_million,
      });
      served.set(model.hash, list);
      names.set(model.hash, model.name);
    }
  }
  return { served, names };
}

/** The network views of a gateway, on its chain if it has one. */
export function createNetworkViews(parameters: {
  gateway: Gateway;
  chain: ExplorerChain | undefined;
  history: { intervalMs: number; capacity: number };
  /** How the gateway is connected to a peer now (null: not connected, or no node to ask). */
  connectionOf?: (peerId: string) => ExplorerProvider["connection"];
  logger: Logger;
}) {
  const { gateway, chain, logger } = parameters;
  const connectionOf = parameters.connectionOf ?? (() => null);
  const reads = chainReads(chain, gateway);

  async function providers(): Promise<ExplorerProvider[]> {
    let stakeOf: Map<string, bigint> | undefined;
    try {
      stakeOf = await reads.stakes?.();
    } catch (error) {
      logger.debug("stakes not read", { error: describeError(error) });
    }
    return describeProviders(gateway).map((provider) => ({
      ...provider,
      stake: stakeOf?.get(provider.address.toLowerCase())?.toString() ?? null,
      connection: connectionOf(provider.peer_id),
    }));
  }

  async function registry(): Promise<RegistryList> {
    const entries = reads.registry ? await reads.registry() : [];
    const { served, names } = servedModels(gateway);
    const data: RegistryModel[] = entries.map((entry) => ({
      ...entry,
      registered: true,
      served_by: served.get(entry.model_hash.toLowerCase()) ?? [],
    }));
    const registeredHashes = new Set(entries.map((entry) => entry.model_hash.toLowerCase()));
    for (const [hash, servedBy] of served) {
      if (registeredHashes.has(hash)) continue;
      data.push({
        model_hash: hash,
        name: names.get(hash) ?? hash,
        registered: false,
        license: null,
        publisher: null,
        registered_at: null,
        deprecated: false,
        metadata_uri: null,
        parents: [],
        children: [],
        served_by: servedBy,
      });
    }
    return { object: "list", chain: chain !== undefined, data };
  }

  async function payments(): Promise<PaymentsView> {
    const onChain = reads.payments
      ? await reads.payments()
      : { channels: [], providers: [], settlements: [] };
    return {
      object: "mycel.payments",
      chain: chain !== undefined,
      token: reads.token ? await reads.token() : null,
      gateway: summarizeGatewayPayments(gateway.payments),
      ...onChain,
    };
  }

  async function validators(): Promise<ValidatorsView> {
    if (!reads.validators)
      return {
        object: "mycel.validators",
        chain: false,
        current_epoch: null,
        max_score: 10_000,
        validators: [],
        epochs: [],
        standings: [],
        slashes: [],
      };
    return { object: "mycel.validators", chain: true, ...(await reads.validators()) };
  }

  async function info(): Promise<ExplorerInfo> {
    let token: TokenInfo | undefined;
    if (reads.token) token = await reads.token();
    return {
      object: "mycel.explorer",
      gateway: { address: gateway.address, peer_id: gateway.peerId },
      chain:
        chain && token
          ? {
              chain_id: chain.deployments.chainId,
              token: { address: token.address, symbol: token.symbol, decimals: token.decimals },
              contracts: { ...chain.deployments.contracts },
            }
          : null,
      audit: gateway.audit,
      history: { interval_ms: parameters.history.intervalMs, capacity: parameters.history.capacity },
    };
  }

  return { providers, registry, payments, validators, info };
}
