/** The provider role: serves inference over `/mycel/infer/1.0.0`, signs receipts, keeps evidence, announces itself. */
import type { Address, Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { roleDefaults } from "../config/index.ts";
import type { Engine, LoadedModelInfo } from "../engine/index.ts";
import { describeError } from "../errors/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import { ethereumAddressOfPeerId, type MycelNode } from "../p2p/index.ts";
import type { ProviderPayments } from "../payments/index.ts";
import { modelHashToBytes32, type ReceiptDomain, receiptDomain, signReceipt } from "../protocol/index.ts";
import {
  defaultInferenceLimits,
  type InferenceLimits,
  serveEvidence,
  serveInference,
} from "../protocols/index.ts";
import { type EvidenceStore, openEvidenceStore } from "../store/index.ts";
import { startAnnouncer } from "./announcer.ts";
import { answerRequest, type ProviderComponents } from "./answer.ts";

/** Prices per 1M tokens, in the payment token's smallest unit. */
export type ProviderPrice = { input: bigint; output: bigint };

/** How long a provider keeps the evidence of its answers for validators, by default: 7 days. */
export const defaultEvidenceRetentionMs = roleDefaults.evidenceRetentionHours * 3600_000;

/** Parameters of {@link startProvider}. */
export type StartProviderParameters = {
  engine: Engine;
  /** Models loaded in the engine that this provider sells. */
  models: LoadedModelInfo[];
  node: MycelNode;
  /** The provider's key: its address is paid and signs receipts and announcements. */
  privateKey: Hex;
  price: ProviderPrice;
  /** Chain id and contract of the deployment in use (defaults: 31337 and the zero address). */
  receiptDomain?: ReceiptDomain;
  version: string;
  limits?: Partial<InferenceLimits>;
  announceIntervalMs?: number;
  logger?: Logger;
  components?: Partial<ProviderComponents>;
  /** Payment channels: when given (and the price is not zero), every request must name a funded channel. */
  payments?: ProviderPayments;
  /** Where the evidence of each answer is kept for validators (default: in memory). */
  evidence?: EvidenceStore;
  /** How long evidence is kept (default {@link defaultEvidenceRetentionMs}). */
  evidenceRetentionMs?: number;
};

/** A running provider. */
export type Provider = {
  address: Hex;
  peerId: string;
  /** Streams being served now. */
  activeStreams(): number;
  /** Publishes an announcement now (also done periodically). */
  announce(): Promise<void>;
  stop(): Promise<void>;
};

/** How many clients with a good record (a request answered with a receipt) a provider remembers. */
const rememberedClients = 10_000;

/**
 * Which peers the provider trusts with more than the strangers' share of its capacity: clients that pay (a channel
 * admitted, vouchers held) or that were answered before. A peer id's address is remembered, not recomputed.
 */
function createPeerStanding(payments: ProviderPayments | undefined) {
  const served = new Set<string>();
  const addresses = new Map<string, Address | undefined>();
  const addressOf = (peerId: string) => {
    if (addresses.has(peerId)) return addresses.get(peerId);
    if (addresses.size >= rememberedClients) addresses.clear();
    const address = ethereumAddressOfPeerId(peerId);
    addresses.set(peerId, address);
    return address;
  };
  return {
    onServed(client: Address) {
      if (served.size >= rememberedClients) served.clear();
      served.add(client.toLowerCase());
    },
    isTrustedPeer(peerId: string) {
      const address = addressOf(peerId);
      if (address === undefined) return false;
      return served.has(address.toLowerCase()) || (payments?.isPayingClient(address) ?? false);
    },
  };
}

/** Deletes evidence older than the retention now and every hour (or every retention period, when shorter). */
function startEvidencePruning(parameters: { evidence: EvidenceStore; retentionMs: number; logger: Logger }) {
  const { evidence, retentionMs, logger } = parameters;
  const prune = () => {
    try {
      const removed = evidence.prune(Date.now() - retentionMs);
      if (removed > 0) logger.info("old evidence deleted", { removed });
    } catch (error) {
      logger.warn("evidence pruning failed", { error: describeError(error) });
    }
  };
  prune();
  const timer = setInterval(prune, Math.min(3600_000, retentionMs));
  timer.unref();
  return () => clearInterval(timer);
}

/** Starts serving inference and evidence on the node and announcing it; returns once the first announcement is out. */
export async function startProvider(parameters: StartProviderParameters): Promise<Provider> {
  const { engine, node } = parameters;
  const logger = parameters.logger ?? silentLogger;
  const limits = { ...defaultInferenceLimits, ...parameters.limits };
  const account = privateKeyToAccount(parameters.privateKey);
  const evidence = parameters.evidence ?? openEvidenceStore({ path: ":memory:" });
  const retentionMs = parameters.evidenceRetentionMs ?? defaultEvidenceRetentionMs;
  const components: ProviderComponents = {
    signReceipt: parameters.components?.signReceipt ?? signReceipt,
    generate: parameters.components?.generate ?? ((input) => engine.generate(input)),
  };
  const standing = createPeerStanding(parameters.payments);
  const context = {
    onServed: standing.onServed,
    models: new Map(parameters.models.map((model) => [modelHashToBytes32(model.hash), model])),
    engine,
    components,
    privateKey: parameters.privateKey,
    address: account.address,
    domain: parameters.receiptDomain ?? receiptDomain(),
    price: parameters.price,
    limits,
    payments: parameters.payments,
    evidence,
    logger,
  };
  const inference = await serveInference(
    { node, logger },
    {
      limits,
      answer: (exchange) => answerRequest(exchange, context),
      isTrustedPeer: standing.isTrustedPeer,
    },
  );
  await serveEvidence(
    { node, logger },
    {
      lookup: (requestId) => {
        const kept = evidence.get(requestId);
        return kept && { request: kept.request, evidence: kept.evidence, receipt: kept.receipt };
      },
      retentionMs,
      limits: { maxFrameBytes: limits.maxFrameBytes },
    },
  );
  const stopPruning = startEvidencePruning({ evidence, retentionMs, logger });
  const announcer = await startAnnouncer({
    node,
    engine,
    models: parameters.models,
    privateKey: parameters.privateKey,
    price: parameters.price,
    payments: parameters.payments,
    version: parameters.version,
    intervalMs: parameters.announceIntervalMs,
    logger,
  });
  logger.info("provider ready", {
    address: account.address,
    peer: node.peerId,
    models: parameters.models.map((model) => model.name).join(","),
    listen: node.multiaddrs().join(","),
  });
  return {
    address: account.address,
    peerId: node.peerId,
    activeStreams: inference.activeStreams,
    announce: announcer.announce,
    async stop() {
      announcer.stop();
      stopPruning();
    },
  };
}
