/** Starts a provider in this process: its models in the engine, its libp2p node, payments and evidence stores. */
import type { Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  type ChainConnection,
  type Deployments,
  deploymentReceiptDomain,
  getProviderRecord,
  readChainBinding,
} from "../chain/index.ts";
import { type MycelConfig, roleDefaults } from "../config/index.ts";
import { createEngine } from "../engine/index.ts";
import type { Logger } from "../log/index.ts";
import { openModelStore } from "../model/index.ts";
import { createMycelNode, libp2pKeyFromSecp256k1, type RelayServiceParameters } from "../p2p/index.ts";
import { createProviderPayments, type SettlementPolicy } from "../payments/index.ts";
import { type ProviderPrice, startProvider } from "../provider/index.ts";
import {
  openEvidenceStore,
  openPaymentStore,
  providerEvidenceStorePath,
  providerPaymentStorePath,
} from "../store/index.ts";

/** Parameters of {@link startProviderNode}. */
export type StartProviderNodeParameters = {
  config: MycelConfig;
  privateKey: Hex;
  /** Names or hashes of models in the store. */
  models: string[];
  price: ProviderPrice;
  version: string;
  logger: Logger;
  listen?: string[];
  bootstrap?: string[];
  /** Whether and how it relays for nodes that are not reachable (default: never). */
  relay?: RelayServiceParameters;
  /** Map its port on the router with UPnP (default off). */
  upnp?: boolean;
  /** Addresses to announce instead of the listen addresses (a forwarded port, a DNS name): they count as reachable. */
  announce?: string[];
  /** The chain it is paid on (channels, settlement) and registered on. */
  chain?: { connection: ChainConnection; deployments: Deployments };
  /** Output tokens served on credit before a client must pay (with a chain). */
  creditTokens: number;
  settlement?: Partial<SettlementPolicy>;
  /** Drop a new stream whose request frame has not come within this many ms. */
  firstFrameTimeoutMs?: number;
  /** How long the evidence of an answer is kept (default: roleDefaults.evidenceRetentionHours). */
  evidenceRetentionMs?: number;
  /** Longest the shutdown may take (it settles vouchers first). */
  shutdownLimitMs?: number;
};

/** A provider running in this process. */
export type ProviderNode = {
  peerId: string;
  address: Hex;
  multiaddrs: string[];
  close(): Promise<void>;
};

/** Logs what the chain says about this provider: registered, stake, whether it offers the models it serves. */
async function logRegistration(parameters: {
  chain: { connection: ChainConnection; deployments: Deployments };
  address: Hex;
  modelHashes: string[];
  logger: Logger;
}) {
  const { chain, logger } = parameters;
  const record = await getProviderRecord(chain.connection, {
    deployments: chain.deployments,
    provider: parameters.address,
  });
  if (!record) {
    logger.warn("not registered on chain: gateways and validators cannot see a stake", {
      chainId: chain.deployments.chainId,
      hint: "mycel provider stake <amount> --model <model>",
    });
    return;
  }
  const offered = new Set(record.offers.map((offer) => offer.modelHash.slice(2).toLowerCase()));
  const missing = parameters.modelHashes.filter((hash) => !offered.has(hash.toLowerCase()));
  logger.info("registered on chain", {
    chainId: chain.deployments.chainId,
    stake: record.stake.toString(),
    active: record.active,
  });
  if (missing.length > 0)
    logger.warn("serving models the chain record does not offer", { models: missing.join(",") });
}

/** Starts a provider (engine, node, payments, evidence) in this process. */
export async function startProviderNode(parameters: StartProviderNodeParameters): Promise<ProviderNode> {
  const { config, logger, chain, privateKey } = parameters;
  const address = privateKeyToAccount(privateKey).address;
  const store = openModelStore({ home: config.home });
  const records = [];
  for (const query of parameters.models) records.push(await store.resolve(query));
  if (chain)
    await logRegistration({ chain, address, modelHashes: records.map((record) => record.hash), logger });
  const engine = createEngine({ options: config.engine, logger });
  const models = [];
  for (const record of records)
    models.push(
      await engine.loadModel({ hash: record.hash, path: store.pathOf(record.hash), name: record.name }),
    );
  const node = await createMycelNode({
    privateKey: libp2pKeyFromSecp256k1(privateKey),
    listen: parameters.listen,
    bootstrap: parameters.bootstrap,
    relay: parameters.relay,
    upnp: parameters.upnp,
    announce: parameters.announce,
    logger: logger.child({ part: "p2p" }),
  });
  // Vouchers are bound to this chain: those of a chain that was reset are never settled on or counted for this one.
  const paymentStore = chain
    ? openPaymentStore({
        path: providerPaymentStorePath(config.home, address),
        chain: (await readChainBinding(chain.connection, { deployments: chain.deployments })).key,
      })
    : undefined;
  const payments =
    chain && paymentStore
      ? createProviderPayments({
          connection: chain.connection,
          deployments: chain.deployments,
          store: paymentStore,
          provider: address,
          outputPricePerMillion: parameters.price.output,
          creditWindowTokens: parameters.creditTokens,
          settlement: parameters.settlement,
          logger: logger.child({ part: "payments" }),
        })
      : undefined;
  payments?.start();
  const evidence = openEvidenceStore({ path: providerEvidenceStorePath(config.home, address) });
  const provider = await startProvider({
    engine,
    models,
    node,
    privateKey,
    price: parameters.price,
    receiptDomain: chain ? deploymentReceiptDomain(chain.deployments) : undefined,
    version: parameters.version,
    limits: parameters.firstFrameTimeoutMs
      ? { firstFrameTimeoutMs: parameters.firstFrameTimeoutMs }
      : undefined,
    payments,
    evidence,
    evidenceRetentionMs: parameters.evidenceRetentionMs,
    logger,
  });
  for (const multiaddr of node.multiaddrs())
    if (!/\/ip4\/127\.|\/ip6\/::1\//.test(multiaddr))
      logger.warn("listening beyond this machine", { address: multiaddr });
  const shutdownLimitMs = parameters.shutdownLimitMs ?? roleDefaults.shutdownSeconds * 1000;
  return {
    peerId: node.peerId,
    address: provider.address,
    multiaddrs: node.multiaddrs(),
    async close() {
      await provider.stop();
      await node.stop();
      // Settling may take what is left of the shutdown's time; what is not settled is settled at the next start.
      await payments?.stop({ timeoutMs: Math.max(1_000, shutdownLimitMs - 3_000) });
      paymentStore?.close();
      evidence.close();
      await engine.close();
    },
  };
}
