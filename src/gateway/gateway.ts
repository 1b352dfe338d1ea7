/**
 * The gateway role: the user's entry to the network. This file only wires its parts: the provider table fed by
 * announcements, the catalog, failover over segments with payments, audit sampling, verdicts, reputation, and the
 * API backend.
 */
import type { Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import type { BackendGenerateParameters, InferenceBackend } from "../api/index.ts";
import { describeError, ModelNotFoundError, ServiceUnavailableError } from "../errors/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import type { MycelNode } from "../p2p/index.ts";
import type { GatewayPayments } from "../payments/index.ts";
import { modelHashToBytes32, type ReceiptDomain, receiptDomain } from "../protocol/index.ts";
import { serveVerdicts } from "../protocols/index.ts";
import type { ReceiptStore } from "../store/index.ts";
import { createActivityFeed, type GatewayActivity } from "./activity.ts";
import { createGatewayBackend } from "./backend.ts";
import { createCapacityQueue } from "./capacity.ts";
import { type Catalog, createCatalog } from "./catalog.ts";
import { type StakedProviderSource, startDiscovery } from "./discovery.ts";
import { defaultRoutingPolicy, isRoutable, type RoutingPolicy } from "./eligibility.ts";
import { answerEmbeddings } from "./embeddings.ts";
import { answerWithFailover, type GatewayAnswer } from "./failover.ts";
import { createProviderTable, type ProviderTable } from "./providerTable.ts";
import { type RegistrationSource, watchRegistrations } from "./registrations.ts";
import { type ReputationSource, watchReputation } from "./reputation.ts";
import { createAuditSampler } from "./sampling.ts";
import { defaultGatewayTimeouts, type GatewayTimeouts } from "./segment.ts";
import { createStandby } from "./standby.ts";
import { createVerdictKeeper } from "./verdicts.ts";

/** Providers tried for one request before giving up, by default. */
export const defaultMaxAttempts = 4;
/** How long waitForProviders looks again between checks. */
const providerCheckIntervalMs = 50;
/** How long a request waits for the first on-chain reads of providers just discovered (usually a few ms). */
const firstRegistrationReadWaitMs = 3_000;
/** Longest a standby provider's dial may take (a failover to it then dials again). */
const standbyConnectTimeoutMs = 10_000;

/** Parameters of {@link startGateway}. */
export type StartGatewayParameters = {
  node: MycelNode;
  /** The gateway's key: the `client` of its receipts and the payer of its channels. */
  privateKey: Hex;
  receipts: ReceiptStore;
  receiptDomain?: ReceiptDomain;
  timeouts?: Partial<GatewayTimeouts>;
  /** Providers tried for one request before giving up (default {@link defaultMaxAttempts}). */
  maxAttempts?: number;
  /** Payment channels: when given, providers that announce a price on this chain are paid with vouchers. */
  payments?: GatewayPayments;
  /** Audit sampling: each answer goes to one of these validators with probability `rate` (decided after the answer). */
  audit?: { rate: number; validators: string[] };
  /** On-chain reputation and the least a provider needs to be routed to. */
  reputation?: ReputationSource;
  /**
   * The wait for a provider with room while all are at capacity: how many requests may wait and for how long from
   * their arrival (defaults roleDefaults.gatewayQueueLength and gatewayQueueTimeoutMs).
   */
  queue?: { maxWaiting?: number; timeoutMs?: number };
  /**
   * On-chain registrations (stake, peer id, offers): when given, only providers staked with an offer matching their
   * announcement are routed to, unless `allowUnstaked`.
   */
  registrations?: RegistrationSource;
  /**
   * The providers staked on chain: when given, each is looked up on the DHT by its peer id and asked for its
   * announcement, so that the gateway finds the network with no bootstrap address of a provider.
   */
  staked?: StakedProviderSource;
  /** Route also to providers that are not staked on chain, or whose offer differs from their announcement. */
  allowUnstaked?: boolean;
  /** The most paid per 1M tokens, input or output (default roleDefaults.maxPricePerMillion). */
  maxPricePerMillion?: bigint;
  logger?: Logger;
  /** A number in [0, 1) for audit sampling (default Math.random). */
  random?: () => number;
};

/** A running gateway: serve its `backend` with the API server. */
export type Gateway = {
  address: Hex;
  peerId: string;
  backend: InferenceBackend;
  providers: ProviderTable;
  catalog: Catalog;
  receipts: ReceiptStore;
  payments: GatewayPayments | undefined;
  audit: { rate: number; validators: string[] };
  /** The least on-chain reputation a provider needs to be routed to (0 without a chain). */
  minimumReputation: number;
  /** Stake and price ceiling required of providers. */
  policy: RoutingPolicy;
  /** Answers a request over the network (the backend's generate, with typed results). */
  answer(parameters: BackendGenerateParameters): Promise<GatewayAnswer>;
  /** Reads every known provider's on-chain reputation now (also done periodically). */
  refreshReputation(): Promise<void>;
  /** Reads every known provider's on-chain registration now (also done periodically). */
  refreshRegistrations(): Promise<void>;
  /** Calls `listener` with each {@link GatewayActivity}; returns the unsubscribe function. */
  subscribe(listener: (activity: GatewayActivity) => void): () => void;
  /** Resolves once `count` routable providers (of `modelHash` if given) are known; rejects after `timeoutMs` or on `signal`. */
  waitForProviders(parameters: {
    count: number;
    modelHash?: string;
    timeoutMs: number;
    signal?: AbortSignal;
  }): Promise<void>;
  stop(): Promise<void>;
};

/** Starts the gateway's discovery and returns it. */
export function startGateway(parameters: StartGatewayParameters): Gateway {
  const { node, receipts } = parameters;
  const logger = parameters.logger ?? silentLogger;
  const client = privateKeyToAccount(parameters.privateKey).address;
  const activity = createActivityFeed({ logger });
  const table = createProviderTable({
    node,
    logger,
    untrustedAddresses: new Set(receipts.untrustedProviders().map((entry) => entry.address)),
  });
  const policy: RoutingPolicy = {
    requireStake: parameters.registrations !== undefined && parameters.allowUnstaked !== true,
    maxPricePerMillion: parameters.maxPricePerMillion ?? defaultRoutingPolicy.maxPricePerMillion,
  };
  const registrations =
    parameters.registrations && watchRegistrations({ table, source: parameters.registrations, logger });
  const catalog = createCatalog({ table, policy });
  const discovery = startDiscovery({ node, table, staked: parameters.staked, logger });
  const audit = parameters.audit ?? { rate: 0, validators: [] };
  const sampler = createAuditSampler({
    node,
    privateKey: parameters.privateKey,
    receipts,
    validators: audit.validators,
    rate: audit.rate,
    logger,
    random: parameters.random,
  });
  // Validators hand their verdicts on this gateway's samples back: kept with the receipts they judge.
  if (sampler.validators.length > 0)
    void serveVerdicts(
      { node, logger },
      {
        accept: createVerdictKeeper({
          receipts,
          logger,
          onVerdict: (kept) => activity.emit({ type: "audit", ...kept }),
        }),
      },
    ).catch((error) => logger.warn("cannot take audit verdicts", { error: describeError(error) }));
  const reputation =
    parameters.reputation && watchReputation({ table, source: parameters.reputation, logger });
  const settling = new Set<Promise<void>>();
  const context = {
    components: { node, logger },
    table,
    client,
    domain: parameters.receiptDomain ?? receiptDomain(),
    timeouts: { ...defaultGatewayTimeouts, ...parameters.timeouts },
    maxAttempts: parameters.maxAttempts ?? defaultMaxAttempts,
    payments: parameters.payments,
    reputation: parameters.reputation,
    policy,
    receipts,
    sampler,
    activity,
    settling,
    queue: createCapacityQueue(parameters.queue),
    connectionKind: (peerId: string) => node.connectionKind(peerId),
    standby: createStandby({
      connect: (peerId) => node.connect(peerId, { signal: AbortSignal.timeout(standbyConnectTimeoutMs) }),
      logger,
    }),
    logger,
  };
  const routableProviders = (modelHash?: string) =>
    table
      .all()
      .filter((provider) =>
        (modelHash ? [modelHash] : provider.announcement.models.map((model) => model.hash)).some((hash) =>
          isRoutable(provider, { modelHash: hash, policy }),
        ),
      );
  const answer = async (request: BackendGenerateParameters) => {
    // A provider seen a moment ago is routed to once the chain has been read for it, not before: a request for a
    // model no provider may serve yet waits (briefly) for those reads.
    if (registrations && routableProviders(modelHashToBytes32(request.model.hash)).length === 0)
      await registrations.firstReads(firstRegistrationReadWaitMs);
    return answerWithFailover(request, context);
  };
  const liveProviders = () => table.all().filter((provider) => provider.announcement.expires_at > Date.now());
  const backend = createGatewayBackend({
    catalog,
    findModel: async (nameOrHash) => {
      try {
        return catalog.find(nameOrHash);
      } catch (error) {
        // A model named by its hash that no known provider serves: its providers' records on the DHT may name one.
        const hash = /^(?:sha256:|0x)?([0-9a-fA-F]{64})$/.exec(nameOrHash)?.[1];
        if (!(error instanceof ModelNotFoundError) || hash === undefined) throw error;
        await discovery.findModel(hash);
        return catalog.find(nameOrHash);
      }
    },
    answer,
    embed: async (request) => {
      if (registrations && routableProviders(modelHashToBytes32(request.model.hash)).length === 0)
        await registrations.firstReads(firstRegistrationReadWaitMs);
      return answerEmbeddings(request, context);
    },
    health: () => ({
      status: "ok",
      role: "gateway",
      peer_id: node.peerId,
      address: client,
      providers: liveProviders().length,
      models: catalog.models().map((model) => ({ name: model.name, hash: model.hash, ...model.extra })),
    }),
  });
  return {
    address: client,
    peerId: node.peerId,
    backend,
    providers: table,
    catalog,
    receipts,
    payments: parameters.payments,
    audit,
    minimumReputation: parameters.reputation?.minimum ?? 0,
    policy,
    answer,
    refreshReputation: async () => reputation?.refresh(),
    refreshRegistrations: async () => registrations?.refresh(),
    subscribe: activity.subscribe,
    async waitForProviders(input) {
      const count = () =>
        routableProviders(input.modelHash ? modelHashToBytes32(input.modelHash) : undefined).length;
      const deadline = Date.now() + input.timeoutMs;
      while (count() < input.count) {
        input.signal?.throwIfAborted();
        if (Date.now() > deadline)
          throw new ServiceUnavailableError(
            `only ${count()} of ${input.count} routable providers appeared in ${input.timeoutMs} ms`,
            {
              hint: "check that the providers run, that --bootstrap points at one of them, and that they are staked on chain with an offer matching their price (GET /mycel/v1/providers)",
            },
          );
        await new Promise((resolve) => setTimeout(resolve, providerCheckIntervalMs));
      }
    },
    async stop() {
      discovery.stop();
      activity.clear();
      reputation?.stop();
      registrations?.stop();
      table.stop();
      await Promise.allSettled([...settling]);
      await sampler.drain();
      await parameters.payments?.stop();
    },
  };
}
