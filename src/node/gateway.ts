/** Starts a gateway in this process: its libp2p node, stores, payments, reputation reading, the API and the explorer. */
import { join } from "node:path";
import type { Hex } from "viem";
import { isLoopbackHost, startApiServer } from "../api/index.ts";
import { createKeyAccess, type KeyAccess } from "../apikeys/index.ts";
import {
  type ChainConnection,
  type Deployments,
  deploymentReceiptDomain,
  getProviderRecord,
  getProviderStanding,
  getTokenInfo,
  listStakedProviders,
  maxScore,
  parseTokenAmount,
  readChainBinding,
} from "../chain/index.ts";
import { httpLimitsOf, type MycelConfig } from "../config/index.ts";
import { MycelError } from "../errors/index.ts";
import { createExplorer } from "../explorer/index.ts";
import {
  type Gateway,
  type RegistrationSource,
  type ReputationSource,
  type StakedProviderSource,
  startGateway,
} from "../gateway/index.ts";
import type { Logger } from "../log/index.ts";
import { createMycelNode, libp2pKeyFromSecp256k1, type MycelNode } from "../p2p/index.ts";
import { createGatewayPayments, type GatewayPayments } from "../payments/index.ts";
import {
  type ApiKeyStore,
  apiKeyStorePath,
  gatewayPaymentStorePath,
  openApiKeyStore,
  openPaymentStore,
  openReceiptStore,
  type PaymentStore,
} from "../store/index.ts";

/** How often a gateway reads its providers' on-chain reputation. */
const reputationRefreshMs = 5_000;
/** How often a gateway reads its providers' on-chain registrations (stake, peer id, offers). */
const registrationRefreshMs = 10_000;

/** Parameters of {@link startGatewayNode}. */
export type StartGatewayNodeParameters = {
  config: MycelConfig;
  privateKey: Hex;
  logger: Logger;
  listen?: string[];
  bootstrap?: string[];
  /** Map its port on the router with UPnP (default off). */
  upnp?: boolean;
  /** Addresses to announce instead of the listen addresses (a forwarded port, a DNS name): they count as reachable. */
  announce?: string[];
  stallMs?: number;
  /** The wait for a provider with room (see the gateway part's StartGatewayParameters.queue). */
  queue?: { maxWaiting?: number; timeoutMs?: number };
  /** The chain to pay on, with the deposit per provider and the budget in whole tokens. */
  chain?: { connection: ChainConnection; deployments: Deployments; deposit: string; budget: string };
  /** Pay providers on `chain` (default true; a validator's view of the providers, which sends nothing, does not). */
  pay?: boolean;
  audit?: { rate: number; validators: string[] };
  /** Routing leaves out providers whose on-chain reputation is below this (with a chain). */
  minReputation: number;
  /** Route also to providers not staked on chain, or whose on-chain offer differs from their announcement. */
  allowUnstaked?: boolean;
  /** The most paid per 1M tokens, input or output (default roleDefaults.maxPricePerMillion). */
  maxPricePerMillion?: bigint;
  /** Where the gateway's receipts and channels live (default: MYCEL_HOME/gateway). */
  storeDirectory?: string;
  /** Serve the HTTP API and the explorer (default true; a validator's challenge gateway does not). */
  serveApi?: boolean;
  /** Serve beyond loopback without API keys: anyone who reaches the port spends the gateway's funds. */
  insecureNoAuth?: boolean;
  /**
   * A running node to use (its owner stops it) instead of a new one with the gateway's key. Its key must be the
   * gateway's: providers serve only requests whose client is the sending peer.
   */
  node?: MycelNode;
};

/** A gateway running in this process. */
export type GatewayNode = {
  /** The API's base URL ("" when it serves no API). */
  url: string;
  peerId: string;
  gateway: Gateway;
  node: MycelNode;
  close(): Promise<void>;
};

async function paymentsOn(
  parameters: StartGatewayNodeParameters,
  chain: NonNullable<StartGatewayNodeParameters["chain"]>,
): Promise<{ payments: GatewayPayments; store: PaymentStore }> {
  const token = await getTokenInfo(chain.connection, chain.deployments.contracts.token);
  // Channels are bound to this chain: those of a chain that was reset (a devnet restarted) are never reused.
  const binding = await readChainBinding(chain.connection, { deployments: chain.deployments });
  const store = openPaymentStore({
    path: parameters.storeDirectory
      ? join(parameters.storeDirectory, "payments.sqlite")
      : gatewayPaymentStorePath(parameters.config.home),
    chain: binding.key,
  });
  const payments = createGatewayPayments({
    connection: chain.connection,
    deployments: chain.deployments,
    store,
    privateKey: parameters.privateKey,
    depositPerProvider: parseTokenAmount(chain.deposit, token.decimals),
    budget: parseTokenAmount(chain.budget, token.decimals),
    logger: parameters.logger.child({ part: "payments" }),
  });
  parameters.logger.info("paying providers", {
    chainId: chain.deployments.chainId,
    genesis: binding.genesisHash,
    deposit: `${chain.deposit} ${token.symbol}`,
    budget: `${chain.budget} ${token.symbol}`,
  });
  return { payments, store };
}

function reputationOn(
  chain: { connection: ChainConnection; deployments: Deployments },
  minimum: number,
): ReputationSource {
  return {
    minimum,
    refreshMs: reputationRefreshMs,
    read: async (provider) => {
      const standing = await getProviderStanding(chain.connection, {
        deployments: chain.deployments,
        provider,
      });
      return standing.scored ? standing.reputation / maxScore : undefined;
    },
  };
}

function registrationsOn(chain: {
  connection: ChainConnection;
  deployments: Deployments;
}): RegistrationSource {
  return {
    refreshMs: registrationRefreshMs,
    read: async (provider) => {
      const record = await getProviderRecord(chain.connection, { deployments: chain.deployments, provider });
      return record && { active: record.active, peerId: record.peerId, offers: record.offers };
    },
  };
}

/**
 * Who may use the API. Beyond loopback every request needs an API key, and the gateway refuses to start while it has
 * none (unless `insecureNoAuth`). On loopback a key is needed only while an active key exists.
 */
function openAccess(
  parameters: StartGatewayNodeParameters,
): { store: ApiKeyStore; access: KeyAccess } | undefined {
  const { config, logger } = parameters;
  const host = config.serve.host;
  if (parameters.serveApi === false) return undefined;
  if (!isLoopbackHost(host) && parameters.insecureNoAuth) {
    logger.warn(
      "the API listens beyond this machine with no API keys (--insecure-no-auth): anyone who can reach it spends your funds",
      { host },
    );
    return undefined;
  }
  const store = openApiKeyStore({
    path: apiKeyStorePath({ home: config.home, storeDirectory: parameters.storeDirectory }),
  });
  const required = !isLoopbackHost(host);
  if (required && !store.list().some((key) => key.revokedAt === undefined)) {
    store.close();
    throw new MycelError(`a gateway listening on ${host} needs API keys, and it has none`, {
      code: "api_keys_required",
      hint: "create one with `mycel gateway keys create --name <name>` (give it to the key's user), or listen on 127.0.0.1; --insecure-no-auth lets anyone who reaches the port spend your funds",
    });
  }
  if (required) logger.info("every request needs an API key (Authorization: Bearer <key>)", { host });
  return { store, access: createKeyAccess({ store, required, logger: logger.child({ part: "keys" }) }) };
}

function stakedProvidersOn(chain: {
  connection: ChainConnection;
  deployments: Deployments;
}): StakedProviderSource {
  return {
    list: async () =>
      (await listStakedProviders(chain.connection, { deployments: chain.deployments })).map((provider) => ({
        address: provider.address,
        peerId: provider.peerId,
        registration: { active: true, peerId: provider.peerId, offers: provider.offers },
      })),
  };
}

/** Starts a gateway (node, receipts, payments, API and explorer) in this process. */
export async function startGatewayNode(parameters: StartGatewayNodeParameters): Promise<GatewayNode> {
  const { config, logger, chain } = parameters;
  const keys = openAccess(parameters);
  const ownNode = parameters.node === undefined;
  const node =
    parameters.node ??
    (await createMycelNode({
      privateKey: libp2pKeyFromSecp256k1(parameters.privateKey),
      listen: parameters.listen,
      bootstrap: parameters.bootstrap,
      upnp: parameters.upnp,
      announce: parameters.announce,
      logger: logger.child({ part: "p2p" }),
    }));
  const storeDirectory = parameters.storeDirectory ?? join(config.home, "gateway");
  const receipts = openReceiptStore({ path: join(storeDirectory, "receipts.sqlite") });
  const paying = chain && parameters.pay !== false ? await paymentsOn(parameters, chain) : undefined;
  const gateway = startGateway({
    node,
    privateKey: parameters.privateKey,
    receipts,
    logger,
    receiptDomain: chain ? deploymentReceiptDomain(chain.deployments) : undefined,
    payments: paying?.payments,
    timeouts: parameters.stallMs ? { stallMs: parameters.stallMs } : undefined,
    queue: parameters.queue,
    audit: parameters.audit,
    // Read only where something uses it: routing with a minimum, or the API and explorer that show it.
    reputation:
      chain && (parameters.minReputation > 0 || parameters.serveApi !== false)
        ? reputationOn(chain, parameters.minReputation)
        : undefined,
    registrations: chain ? registrationsOn(chain) : undefined,
    staked: chain ? stakedProvidersOn(chain) : undefined,
    allowUnstaked: parameters.allowUnstaked,
    maxPricePerMillion: parameters.maxPricePerMillion,
  });
  if (chain && parameters.allowUnstaked)
    logger.warn(
      "routing to providers without stake on chain too (--allow-unstaked): nothing is at risk for them",
    );
  const serveApi = parameters.serveApi !== false;
  // The explorer is mounted on the gateway's API: the one place where the HTTP wiring meets it.
  const explorer = serveApi
    ? createExplorer({
        gateway,
        node,
        chain,
        keyUsage: keys?.access.usage,
        logger: logger.child({ part: "explorer" }),
      })
    : undefined;
  const server = explorer
    ? await startApiServer({
        backend: { ...gateway.backend, route: explorer.route },
        host: config.serve.host,
        port: config.serve.port,
        maxBodyBytes: config.serve.maxBodyBytes,
        limits: httpLimitsOf(config.serve),
        access: keys?.access,
        logger: logger.child({ part: "api" }),
      })
    : undefined;
  return {
    url: server?.url ?? "",
    peerId: node.peerId,
    gateway,
    node,
    async close() {
      explorer?.stop();
      await server?.close();
      await gateway.stop();
      if (ownNode) await node.stop();
      receipts.close();
      paying?.store.close();
      keys?.store.close();
    },
  };
}
