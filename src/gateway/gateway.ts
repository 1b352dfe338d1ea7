/** The gateway role: the OpenAI-compatible API backed by the network, with routing, failover and receipts. */
import { randomBytes, randomInt } from "node:crypto";
import type { ServerResponse } from "node:http";
import { type Hex, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  type ApiModelInfo,
  type BackendGenerateParameters,
  type BackendGenerateResult,
  type InferenceBackend,
  sendJson,
} from "../api/index.ts";
import {
  describeError,
  InvalidInputError,
  ModelNotFoundError,
  MycelError,
  type MycelErrorParameters,
  PaymentRequiredError,
  ServiceUnavailableError,
} from "../errors/index.ts";
import type { GatewayPaymentsSummary, ProviderView } from "../explorer/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import { createFrameChannel, type FrameChannel, type MycelNode } from "../p2p/index.ts";
import type { GatewayPayments, PayingChannel, SegmentBill } from "../payments/index.ts";
import {
  auditProtocolId,
  auditVerdictFrameSchema,
  buildInferenceRequest,
  type EndFrame,
  type Evidence,
  errorFrameSchema,
  evidenceCommitment,
  hashTokenIds,
  type InferenceRequest,
  inferenceProtocolId,
  inferenceRequestSchema,
  modelHashToBytes32,
  ProtocolError,
  parseFrame,
  providerFrameSchema,
  type ReceiptDomain,
  receiptDomain,
  recoverAuditVerdictSigner,
  type SignedReceipt,
  signAuditSample,
  streamLimits,
  verdictProtocolId,
  wireVersion,
} from "../protocol/index.ts";
import type { ReceiptStore, StoredAuditVerdict } from "../store/index.ts";
import { fetchEvidence } from "./evidence.ts";
import { createProviderTable, type KnownProvider, type ProviderTable } from "./providerTable.ts";
import { rankProviders, reputationOf } from "./routing.ts";
import { ReceiptRejectedError, verifyReceipt } from "./verifyReceipt.ts";

/** How patient the gateway is with providers. */
export type GatewayTimeouts = {
  /** Longest wait for the first token of a segment (covers queueing and prompt evaluation). */
  firstTokenMs: number;
  /** Longest silence between two tokens before the provider counts as stalled and the request fails over. */
  stallMs: number;
  /** How long a failing provider is not routed to. */
  banMs: number;
};

/** Default gateway timeouts. */
export const defaultGatewayTimeouts: GatewayTimeouts = {
  firstTokenMs: 30_000,
  stallMs: 5_000,
  banMs: 30_000,
};

/** Parameters of {@link startGateway}. */
export type StartGatewayParameters = {
  node: MycelNode;
  /** The gateway's key: the `client` of its receipts (and, later, its payments). */
  privateKey: Hex;
  receipts: ReceiptStore;
  receiptDomain?: ReceiptDomain;
  timeouts?: Partial<GatewayTimeouts>;
  /** Providers tried for one request before giving up (default 4). */
  maxAttempts?: number;
  /** Payment channels: when given, providers that announce a price on this chain are paid with vouchers. */
  payments?: GatewayPayments;
  /** Audit sampling: each answer goes to one of these validators with probability `rate` (decided after the answer). */
  audit?: { rate: number; validators: string[] };
  /** On-chain reputation (0..1, undefined when not scored yet) and the least a provider needs to be routed to. */
  reputation?: { read: (address: Hex) => Promise<number | undefined>; minimum: number; refreshMs?: number };
  logger?: Logger;
};

/** Something the gateway did or learned, for live views (the explorer's event stream). */
export type GatewayActivity =
  | { type: "tokens"; provider: string; count: number }
  | { type: "completed"; requestId: Hex }
  | { type: "receipt"; requestId: Hex; segment: number }
  | { type: "audit"; requestId: Hex; segment: number; verdict: StoredAuditVerdict };

/** Evidence as the API returns it: with the request in its wire form, so that it is a whole audit input but the receipt. */
type AnsweredEvidence = Evidence & { request: InferenceRequest };

/** The audit rate gateways use by default (docs/VERIFICATION.md derives it). */
export const defaultAuditRate = 0.05;
/** The on-chain reputation below which a gateway stops routing to a provider, by default. */
export const defaultMinimumReputation = 0.5;

/** A running gateway: serve its `backend` with the API server. */
export type Gateway = {
  address: Hex;
  backend: InferenceBackend;
  providers: ProviderTable;
  /** Reads every known provider's on-chain reputation now (also done periodically). */
  refreshReputation(): Promise<void>;
  /** Every known provider as the gateway sees it now. */
  describeProviders(): ProviderView[];
  /** This gateway's payment channels and budget; null when it does not pay. */
  paymentsSummary(): GatewayPaymentsSummary | null;
  /** Calls `listener` with each {@link GatewayActivity}; returns the unsubscribe function. */
  subscribe(listener: (activity: GatewayActivity) => void): () => void;
  /** Resolves once `count` providers (of `modelHash` if given) are known; rejects after `timeoutMs`. */
  waitForProviders(parameters: { count: number; modelHash?: string; timeoutMs: number }): Promise<void>;
  stop(): Promise<void>;
};

/** A provider segment failed (died, stalled, refused): the request fails over. */
class SegmentFailedError extends MycelError {
  override name = "SegmentFailedError";
  /** How long the provider asked to be left alone (a busy provider), if it said. */
  readonly retryAfterMs: number | undefined;
  constructor(shortMessage: string, parameters: MycelErrorParameters & { retryAfterMs?: number } = {}) {
    super(shortMessage, parameters);
    this.retryAfterMs = parameters.retryAfterMs;
  }
}

/**
 * A provider segment that ended with a receipt. Its stream stays open until `finish` pays for the receipt (if
 * it verified; pass undefined if not) and closes it.
 */
type Segment = { end: EndFrame; tokens: number[]; finish: (price: bigint | undefined) => Promise<void> };

/** Error codes with which a provider refuses the client's input (not the provider's fault). */
const inputErrorCodes = ["invalid_request", "invalid_value", "context_length_exceeded", "prompt_too_long"];

/** Reads frames after a receipt until the provider acknowledges the final voucher or closes (bounded). */
async function readAcknowledgements(channel: FrameChannel, paying: PayingChannel) {
  try {
    for (;;) {
      const value = await channel.read({ timeoutMs: 5_000 });
      if (value === undefined) return;
      const frame = parseFrame(providerFrameSchema, value);
      if (frame.type === "paid") paying.acknowledge(BigInt(frame.cumulative_amount));
    }
  } catch {
    // A provider that goes away after its receipt loses nothing: the next voucher covers this one.
  }
}

/** Starts the gateway's discovery and returns its API backend. */
export function startGateway(parameters: StartGatewayParameters): Gateway {
  const { node, receipts } = parameters;
  const logger = parameters.logger ?? silentLogger;
  const timeouts = { ...defaultGatewayTimeouts, ...parameters.timeouts };
  const maxAttempts = parameters.maxAttempts ?? 4;
  const domain = parameters.receiptDomain ?? receiptDomain();
  const listeners = new Set<(activity: GatewayActivity) => void>();
  const emit = (activity: GatewayActivity) => {
    for (const listener of listeners) {
      try {
        listener(activity);
      } catch (error) {
        logger.warn("activity listener failed", { error: describeError(error) });
      }
    }
  };
  const client = privateKeyToAccount(parameters.privateKey).address;
  const table = createProviderTable({
    node,
    logger,
    untrustedAddresses: new Set(receipts.untrustedProviders().map((entry) => entry.address)),
  });

  function liveModels(): ApiModelInfo[] {
    const now = Date.now();
    const byHash = new Map<string, { name: string; contextSize: number; providers: KnownProvider[] }>();
    for (const provider of table.all()) {
      if (provider.announcement.expires_at <= now || provider.untrusted) continue;
      for (const model of provider.announcement.models) {
        const entry = byHash.get(model.hash) ?? {
          name: model.name,
          contextSize: model.context_size,
          providers: [],
        };
        entry.providers.push(provider);
        byHash.set(model.hash, entry);
      }
    }
    return [...byHash.entries()].map(([hash, entry]) => {
      const lowest = (field: "input" | "output") =>
        smallest(entry.providers.map((provider) => BigInt(provider.announcement.price[field])));
      return {
        name: entry.name,
        hash: hash.slice(2),
        contextLength: entry.contextSize,
        extra: {
          providers: entry.providers.length,
          lowest_price_per_million: {
            input: lowest("input").toString(),
            output: lowest("output").toString(),
          },
        },
      };
    });
  }

  function findModel(nameOrHash: string): ApiModelInfo {
    const models = liveModels();
    const query = nameOrHash.replace(/^(sha256:|0x)/i, "").toLowerCase();
    const byHash = models.filter(
      (model) =>
        model.hash === query ||
        (query.length >= 6 && /^[0-9a-f]+$/.test(query) && model.hash.startsWith(query)),
    );
    if (byHash.length === 1 && byHash[0]) return byHash[0];
    const byName = models
      .filter((model) => model.name === nameOrHash)
      .sort((a, b) => Number(b.extra?.providers ?? 0) - Number(a.extra?.providers ?? 0));
    if (byName[0]) return byName[0];
    throw new ModelNotFoundError(nameOrHash, {
      hint: `no provider on the network serves it: start one with \`mycel provider --model ${nameOrHash}\`${models.length ? `; served now: ${models.map((m) => m.name).join(", ")}` : ""}`,
    });
  }

  async function runSegment(input: {
    provider: KnownProvider;
    requestId: Hex;
    request: InferenceRequest;
    paying: PayingChannel | undefined;
    signal: AbortSignal;
    onTokens: (tokens: number[], text: string) => void;
  }): Promise<Segment> {
    const { provider, paying } = input;
    let stream: Awaited<ReturnType<MycelNode["openStream"]>>;
    try {
      stream = await node.openStream(provider.peerId, inferenceProtocolId, {
        signal: AbortSignal.any([input.signal, AbortSignal.timeout(timeouts.firstTokenMs)]),
      });
    } catch (cause) {
      throw new SegmentFailedError(`cannot reach provider ${provider.peerId}`, {
        cause,
        details: describeError(cause),
      });
    }
    const channel = createFrameChannel(stream, { maxFrameBytes: streamLimits.maxFrameBytes });
    const cancel = () => {
      channel
        .write({ v: wireVersion, type: "cancel" })
        .then(() => channel.close())
        .catch(() => channel.abort(new Error("cancelled")));
    };
    input.signal.addEventListener("abort", cancel, { once: true });
    const bill: SegmentBill | undefined = paying?.startSegment({
      outputPricePerMillion: BigInt(provider.announcement.price.output),
    });
    const sendVoucher = (frame: unknown) => channel.write(frame);
    const tokens: number[] = [];
    const started = performance.now();
    let firstTokenAt = 0;
    let ended = false;
    try {
      await channel.write({
        v: wireVersion,
        type: "request",
        id: input.requestId,
        client,
        request: input.request,
        ...(paying ? { payment: { channel_id: paying.channelId } } : {}),
      });
      // Anything still owed (a voucher lost with an earlier stream) goes out with the new request.
      if (paying?.due()) void paying.pay(sendVoucher);
      for (;;) {
        let value: unknown;
        try {
          value = await channel.read({
            timeoutMs: tokens.length === 0 ? timeouts.firstTokenMs : timeouts.stallMs,
            signal: input.signal,
          });
        } catch (cause) {
          throw new SegmentFailedError(`provider ${provider.peerId} stopped answering`, {
            cause,
            details: describeError(cause),
          });
        }
        if (value === undefined)
          throw new SegmentFailedError(`provider ${provider.peerId} closed the stream without a receipt`);
        const frame = parseFrame(providerFrameSchema, value);
        if (frame.type === "chunk") {
          if (tokens.length === 0) {
            firstTokenAt = performance.now();
            const latency = firstTokenAt - started;
            provider.latencyMs =
              provider.latencyMs === undefined ? latency : provider.latencyMs * 0.7 + latency * 0.3;
          }
          tokens.push(...frame.tokens);
          emit({ type: "tokens", provider: provider.address, count: frame.tokens.length });
          input.onTokens(frame.tokens, frame.text);
          if (paying && bill) {
            bill.addOutput(frame.tokens.length);
            if (paying.due()) void paying.pay(sendVoucher);
          }
          continue;
        }
        if (frame.type === "paid") {
          paying?.acknowledge(BigInt(frame.cumulative_amount));
          continue;
        }
        if (frame.type === "error") {
          if (inputErrorCodes.includes(frame.code))
            throw new InvalidInputError(frame.message, { code: frame.code, param: "messages" });
          if (frame.code === "payment_required")
            throw new PaymentRequiredError(`provider ${provider.address} stopped: ${frame.message}`, {
              hint: "check the gateway's payment channel and budget (`mycel channel list`, GET /mycel/v1/usage)",
            });
          throw new SegmentFailedError(`provider ${provider.peerId} refused: ${frame.message}`, {
            code: frame.code,
            retryAfterMs: frame.retry_after_ms,
          });
        }
        ended = true;
        const streamedSeconds = (performance.now() - firstTokenAt) / 1000;
        if (tokens.length >= 8 && streamedSeconds > 0) {
          // Tokens after the first over the time they took: the provider's decoding speed as this gateway sees it.
          const rate = (tokens.length - 1) / streamedSeconds;
          provider.throughputTps =
            provider.throughputTps === undefined ? rate : provider.throughputTps * 0.7 + rate * 0.3;
        }
        return {
          end: frame,
          tokens,
          finish: async (price) => {
            input.signal.removeEventListener("abort", cancel);
            if (!paying || !bill || price === undefined) {
              bill?.abandon();
              await channel.close().catch(() => undefined);
              return;
            }
            bill.complete(price);
            const acknowledgements = readAcknowledgements(channel, paying);
            await paying.pay(sendVoucher); // never rejects
            // The provider ends the stream once this side is closed; its last `paid` may still be on the way.
            await channel.close().catch(() => undefined);
            await acknowledgements;
          },
        };
      }
    } finally {
      if (!ended) {
        bill?.abandon();
        input.signal.removeEventListener("abort", cancel);
        if (!input.signal.aborted) await channel.close().catch(() => undefined);
      }
    }
  }

  /** Providers this gateway can pay (or that serve unpaid). */
  function payable(provider: KnownProvider): boolean {
    const payment = provider.announcement.payment;
    if (!payment || isFree(provider)) return true;
    return parameters.payments?.canPay(payment) ?? false;
  }

  /** The channel that pays `provider`, opened or topped up if needed; undefined for a provider that serves unpaid. */
  async function channelFor(provider: KnownProvider): Promise<PayingChannel | undefined> {
    const payment = provider.announcement.payment;
    if (!payment || !parameters.payments || isFree(provider)) return undefined;
    try {
      return await parameters.payments.channelFor({
        provider: provider.address as Hex,
        creditWindow: BigInt(payment.credit_window),
      });
    } catch (error) {
      if (error instanceof PaymentRequiredError) throw error;
      throw new SegmentFailedError(`cannot fund a payment channel to provider ${provider.address}`, {
        cause: error,
        details: describeError(error),
      });
    }
  }

  const finishing = new Set<Promise<void>>();
  const reputation = parameters.reputation;
  const validators = (parameters.audit?.validators ?? []).map((multiaddr) => {
    const peerId = multiaddr.split("/p2p/").pop() ?? "";
    node.addPeerAddresses(peerId, [multiaddr]).catch(() => undefined);
    return peerId;
  });
  const auditRate = parameters.audit?.rate ?? 0;

  /**
   * Sends an answer to a random validator with probability auditRate (always when `force`, the client's request);
   * never delays or fails the answer. Returns the validator's peer id when it is sent.
   */
  function maybeSample(input: {
    requestId: Hex;
    segment: number;
    provider: KnownProvider;
    request: InferenceRequest;
    receipt: SignedReceipt;
    force: boolean;
  }): string | undefined {
    if (validators.length === 0 || (!input.force && Math.random() >= auditRate)) return undefined;
    const validator = validators[randomInt(0, validators.length)] as string;
    receipts.markSampled({ requestId: input.requestId, segment: input.segment, validatorPeer: validator });
    const sending = (async () => {
      const sample = await signAuditSample({
        privateKey: parameters.privateKey,
        sample: {
          request_id: input.requestId,
          provider_peer_id: input.provider.peerId,
          request: input.request,
          receipt: input.receipt,
        },
      });
      const stream = await node.openStream(validator, auditProtocolId, {
        signal: AbortSignal.timeout(10_000),
      });
      const channel = createFrameChannel(stream, { maxFrameBytes: streamLimits.maxFrameBytes });
      try {
        await channel.write(sample);
        const answer = await channel.read({ timeoutMs: 10_000 });
        const refused = errorFrameSchema.safeParse(answer);
        if (refused.success) throw new Error(`${refused.data.code}: ${refused.data.message}`);
        logger.info("answer sent for audit", { validator, provider: input.provider.address });
      } finally {
        await channel.close().catch(() => undefined);
      }
    })().catch((error) =>
      logger.warn("audit sample not delivered", { validator, error: describeError(error) }),
    );
    finishing.add(sending);
    void sending.finally(() => finishing.delete(sending));
    return validator;
  }

  // Validators hand their verdicts on this gateway's samples back: kept with the receipts they judge.
  if (validators.length > 0)
    void node
      .handleProtocol(
        verdictProtocolId,
        async (stream, peerId) => {
          const channel = createFrameChannel(stream, { maxFrameBytes: streamLimits.maxFrameBytes });
          try {
            const value = await channel.read({ timeoutMs: 10_000 });
            if (value === undefined) return;
            const frame = parseFrame(auditVerdictFrameSchema, value);
            const signer = await recoverAuditVerdictSigner(frame).catch(() => undefined);
            if (!signer || signer.toLowerCase() !== frame.validator.toLowerCase())
              throw new ProtocolError("the verdict is not signed by the validator it names");
            const requestId = frame.request_id.toLowerCase() as Hex;
            const segment = receipts
              .getReceipts(requestId)
              .find((entry) => entry.provider.toLowerCase() === frame.provider.toLowerCase())?.segment;
            // Only the validator this segment was sent to may judge it.
            if (segment === undefined || receipts.sampledTo({ requestId, segment }) !== peerId)
              throw new ProtocolError("no answer of this request was sent to this validator");
            const verdict = {
              requestId,
              segment,
              provider: frame.provider as Hex,
              validator: frame.validator as Hex,
              verdict: frame.verdict,
              reasons: frame.reasons,
              metrics: frame.metrics,
              auditedAt: frame.audited_at,
              signature: frame.signature as Hex,
            };
            if (receipts.saveAuditVerdict(verdict)) {
              logger.info("audit verdict received", {
                requestId: requestId.slice(0, 18),
                provider: frame.provider,
                verdict: frame.verdict,
              });
              emit({ type: "audit", requestId, segment, verdict: { ...verdict, receivedAt: Date.now() } });
            }
          } catch (error) {
            logger.debug("audit verdict refused", { peer: peerId, error: describeError(error) });
          } finally {
            await channel.close().catch(() => undefined);
          }
        },
        { maxInboundStreams: 8 },
      )
      .catch((error) => logger.warn("cannot take audit verdicts", { error: describeError(error) }));

  /** Fetches each segment's evidence from its provider and checks it against the receipt. */
  async function collectEvidence(
    requestId: Hex,
    segments: readonly { provider: KnownProvider; receipt: SignedReceipt; request: InferenceRequest }[],
  ): Promise<AnsweredEvidence | AnsweredEvidence[] | { error: string }> {
    const collected: AnsweredEvidence[] = [];
    for (const segment of segments) {
      try {
        const frame = await fetchEvidence({ node, providerPeerId: segment.provider.peerId, requestId });
        const message = segment.receipt.message;
        if (
          evidenceCommitment(frame.evidence) !== message.commitment ||
          hashTokenIds(frame.evidence.outputTokens) !== message.outputHash ||
          hashTokenIds(frame.evidence.promptTokens) !== message.promptHash
        )
          throw new Error("the provider's evidence does not match its receipt");
        collected.push({ ...frame.evidence, request: segment.request });
      } catch (error) {
        logger.warn("evidence unavailable", {
          provider: segment.provider.address,
          error: describeError(error),
        });
        return { error: `provider ${segment.provider.address}: ${describeError(error)}` };
      }
    }
    return collected.length === 1 ? (collected[0] as AnsweredEvidence) : collected;
  }

  // On-chain reputation, refreshed in the background for every known provider.
  const refreshReputation = async () => {
    if (!reputation) return;
    for (const entry of table.all()) {
      try {
        const value = await reputation.read(entry.address as Hex);
        if (value !== undefined) entry.reputation = value;
      } catch (error) {
        logger.debug("reputation not read", { provider: entry.address, error: describeError(error) });
      }
    }
  };
  const reputationTimer = reputation
    ? setInterval(() => void refreshReputation(), reputation.refreshMs ?? 30_000)
    : undefined;
  reputationTimer?.unref();

  async function generate(parameters: BackendGenerateParameters): Promise<BackendGenerateResult> {
    const modelHash = modelHashToBytes32(parameters.model.hash);
    const requestId = toHex(randomBytes(32));
    const { sampling, prompt } = parameters;
    const seed = sampling.seed ?? randomInt(0, 0x7fffffff);
    const base: InferenceRequest = buildInferenceRequest({
      modelHash,
      prompt: prompt.kind === "chat" ? { kind: "chat", messages: prompt.messages } : prompt,
      maxTokens: sampling.maxTokens,
      temperature: sampling.temperature,
      topP: sampling.topP,
      topK: sampling.topK,
      seed,
      stop: sampling.stop,
    });
    // Bad input is the client's, not a provider's: refuse it here, before any provider is tried or blamed.
    const checked = inferenceRequestSchema.safeParse(base);
    if (!checked.success) {
      const issue = checked.error.issues[0];
      throw new InvalidInputError(
        `invalid request: ${issue?.path.join(".") || "request"} ${issue?.message ?? "is invalid"}`,
        { code: "invalid_value", param: issue?.path.join(".") || null },
      );
    }
    const frameBytes = Buffer.byteLength(JSON.stringify(base)) + 512;
    if (frameBytes > streamLimits.maxFrameBytes)
      throw new InvalidInputError(
        `the request is ${frameBytes} bytes; providers take at most ${streamLimits.maxFrameBytes}`,
        {
          code: "request_too_large",
          param: "messages",
          hint: "shorten the messages",
        },
      );
    const outputTokens: number[] = [];
    let text = "";
    const signed: { receipt: SignedReceipt; provider: KnownProvider }[] = [];
    const segments: { provider: KnownProvider; request: InferenceRequest; receipt: SignedReceipt }[] = [];
    let evidence: AnsweredEvidence | AnsweredEvidence[] | { error: string } | undefined;
    /** The validators (peer ids) this answer was sent to for audit. */
    let audit: { validators: string[] } | undefined;
    const tried = new Set<string>();
    let lastFailure: unknown;
    let started = false;
    const startedAt = performance.now();
    /** The answer so far, with the receipts of the segments that produced it. */
    const answer = (input: {
      finishReason: "stop" | "length";
      promptTokens: number;
      failovers: number;
    }): BackendGenerateResult => ({
      text,
      finishReason: input.finishReason,
      usage: {
        promptTokens: input.promptTokens,
        completionTokens: outputTokens.length,
        totalTokens: input.promptTokens + outputTokens.length,
      },
      mycel: {
        request_id: requestId,
        model_hash: modelHash.slice(2),
        seed,
        providers: signed.map((entry) => entry.provider.address),
        failovers: input.failovers,
        receipts: signed.map((entry) => entry.receipt),
        ...(evidence === undefined ? {} : { evidence }),
        ...(audit === undefined ? {} : { audit }),
      },
      timings: { queuedMs: 0, totalMs: performance.now() - startedAt },
    });
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      if (parameters.signal.aborted) break;
      const serving = table
        .serving(modelHash)
        .filter((entry) => parameters.onlyProvider === undefined || entry.peerId === parameters.onlyProvider);
      const candidates = rankProviders({
        candidates: serving.filter(payable),
        exclude: tried,
        minimumReputation: reputation?.minimum,
      });
      const provider = candidates[0];
      if (!provider) {
        if (attempt === 0 && serving.length > 0 && !serving.some(payable))
          throw new PaymentRequiredError(
            `every provider of model "${parameters.model.name}" is paid on a chain this gateway does not pay on`,
            {
              details: serving
                .map((entry) => `${entry.address}: chain ${entry.announcement.payment?.chain_id}`)
                .join("; "),
              hint: "start the gateway with --rpc-url and --deployments of that chain",
            },
          );
        break;
      }
      tried.add(provider.peerId);
      const remaining =
        sampling.maxTokens === undefined ? undefined : sampling.maxTokens - outputTokens.length;
      if (remaining !== undefined && remaining <= 0) {
        // A provider died after its last token but before its receipt: the answer is complete, unsigned.
        return answer({ finishReason: "length", promptTokens: 0, failovers: attempt });
      }
      const request: InferenceRequest = {
        ...base,
        ...(outputTokens.length > 0 ? { prefix_tokens: [...outputTokens] } : {}),
        ...(remaining === undefined ? {} : { max_tokens: remaining }),
      };
      const before = { tokens: outputTokens.length, text: text.length };
      provider.inFlight++;
      try {
        const paying = await channelFor(provider);
        const segment = await runSegment({
          provider,
          requestId,
          request,
          paying,
          signal: parameters.signal,
          onTokens: (tokens, piece) => {
            if (!started) {
              started = true;
              parameters.onStart?.();
            }
            outputTokens.push(...tokens);
            text += piece;
            if (piece) parameters.onText?.(piece);
          },
        });
        let receipt: SignedReceipt;
        try {
          receipt = await verifyReceipt({
            end: segment.end,
            requestId,
            client,
            provider: provider.address,
            request,
            outputTokens: segment.tokens,
            pricePerMillion: {
              input: BigInt(provider.announcement.price.input),
              output: BigInt(provider.announcement.price.output),
            },
            domain,
          });
        } catch (error) {
          void segment.finish(undefined);
          throw error;
        }
        // The receipt is paid for after the answer goes back: the client does not wait for the voucher's round trip.
        const finished = segment
          .finish(BigInt(receipt.message.price))
          .catch((error) => logger.warn("paying for a receipt failed", { error: describeError(error) }));
        finishing.add(finished);
        void finished.finally(() => finishing.delete(finished));
        provider.successes++;
        signed.push({ receipt, provider });
        for (const [index, entry] of signed.entries()) {
          const saved = receipts.saveReceipt({
            requestId,
            segment: index,
            provider: entry.provider.address as Hex,
            modelHash,
            receipt: entry.receipt,
          });
          if (saved.created) emit({ type: "receipt", requestId, segment: index });
        }
        const prefixLength = request.prefix_tokens?.length ?? 0;
        const promptTokens = segment.end.prompt_token_ids.length - prefixLength;
        segments.push({ provider, request, receipt });
        // Sampled for audit after the answer: the provider cannot know beforehand which answers are checked.
        const auditedBy = segments
          .map((entry, index) =>
            maybeSample({ requestId, segment: index, ...entry, force: parameters.requestAudit === true }),
          )
          .filter((peer): peer is string => peer !== undefined);
        if (auditedBy.length > 0) audit = { validators: [...new Set(auditedBy)] };
        emit({ type: "completed", requestId });
        if (parameters.includeEvidence) evidence = await collectEvidence(requestId, segments);
        logger.info("request completed", {
          requestId: requestId.slice(0, 18),
          providers: signed.length,
          attempts: attempt + 1,
          completionTokens: outputTokens.length,
        });
        return answer({ finishReason: segment.end.finish_reason, promptTokens, failovers: attempt });
      } catch (error) {
        if (parameters.signal.aborted) break;
        if (error instanceof InvalidInputError || error instanceof PaymentRequiredError) throw error;
        lastFailure = error;
        provider.failures++;
        if (error instanceof ReceiptRejectedError || error instanceof ProtocolError) {
          provider.untrusted = true;
          receipts.markUntrusted({
            address: provider.address as Hex,
            peerId: provider.peerId,
            reason: error.shortMessage,
          });
          logger.warn("provider cheated or broke the protocol: no longer routed to", {
            peer: provider.peerId,
            address: provider.address,
            error: error.shortMessage,
          });
          // Its tokens are not trusted either: continue from before its segment, or fail if they were shown.
          if (parameters.onText && text.length > before.text) throw error;
          outputTokens.length = before.tokens;
          text = text.slice(0, before.text);
        } else {
          // A busy provider says when to come back; a dead or stalled one sits out the whole ban.
          const retryAfterMs = error instanceof SegmentFailedError ? error.retryAfterMs : undefined;
          provider.bannedUntil = Date.now() + Math.min(retryAfterMs ?? timeouts.banMs, timeouts.banMs);
          logger.warn("provider failed: failing over", {
            peer: provider.peerId,
            tokensSoFar: outputTokens.length,
            error: describeError(error).split("\n")[0],
          });
        }
        // Back off a little before the next provider, more with each failure.
        // The first failover goes straight to the next provider; later ones back off, more each time.
        if (attempt > 0)
          await new Promise((resolve) => setTimeout(resolve, Math.min(50 * 2 ** (attempt - 1), 400)));
      } finally {
        provider.inFlight--;
      }
    }
    if (parameters.signal.aborted) {
      return {
        text,
        finishReason: "cancelled",
        usage: { promptTokens: 0, completionTokens: outputTokens.length, totalTokens: outputTokens.length },
        mycel: { request_id: requestId },
      };
    }
    const served = table.serving(modelHash);
    const reputable = served.filter((entry) => reputationOf(entry) >= (reputation?.minimum ?? 0));
    throw new ServiceUnavailableError(
      served.length === 0
        ? `no provider serves model "${parameters.model.name}" now`
        : reputable.length === 0
          ? `every provider of model "${parameters.model.name}" has an on-chain reputation below ${reputation?.minimum} (validators caught them cheating)`
          : `every provider of model "${parameters.model.name}" failed (${tried.size} tried)`,
      {
        details: lastFailure ? describeError(lastFailure) : undefined,
        hint: `retry shortly, or start another provider with \`mycel provider --model ${parameters.model.name}\``,
        retryAfterSeconds: 2,
      },
    );
  }

  /** Spending by model and provider (from the stored receipts) and the payment channels behind it. */
  function usage() {
    const rows = receipts.spending();
    const names = new Map(liveModels().map((model) => [`0x${model.hash}`, model.name]));
    type UsageGroup = {
      requests: number;
      segments: number;
      prompt: number;
      completion: number;
      cost: bigint;
    };
    const add = (groups: Map<string, UsageGroup>, key: string, row: (typeof rows)[number]) => {
      const group = groups.get(key) ?? { requests: 0, segments: 0, prompt: 0, completion: 0, cost: 0n };
      group.requests += row.requests;
      group.segments += row.segments;
      group.prompt += row.promptTokens;
      group.completion += row.completionTokens;
      group.cost += row.price;
      groups.set(key, group);
    };
    const byModel = new Map<string, UsageGroup>();
    const byProvider = new Map<string, UsageGroup>();
    for (const row of rows) {
      add(byModel, row.modelHash, row);
      add(byProvider, row.provider, row);
    }
    const shape = (group: Omit<UsageGroup, "requests">) => ({
      segments: group.segments,
      prompt_tokens: group.prompt,
      completion_tokens: group.completion,
      cost: group.cost.toString(),
    });
    return {
      object: "mycel.usage",
      client,
      total: {
        ...shape({
          segments: rows.reduce((sum, row) => sum + row.segments, 0),
          prompt: rows.reduce((sum, row) => sum + row.promptTokens, 0),
          completion: rows.reduce((sum, row) => sum + row.completionTokens, 0),
          cost: rows.reduce((sum, row) => sum + row.price, 0n),
        }),
      },
      by_model: [...byModel.entries()].map(([hash, group]) => ({
        model_hash: hash,
        name: names.get(hash) ?? null,
        requests: group.requests,
        ...shape(group),
      })),
      by_provider: [...byProvider.entries()].map(([address, group]) => ({
        provider: address,
        requests: group.requests,
        ...shape(group),
      })),
      payments: paymentsSummary(),
    };
  }

  /** This gateway's channels and budget; null without payments. */
  function paymentsSummary(): GatewayPaymentsSummary | null {
    const payments = parameters.payments;
    const channels = payments?.channels() ?? [];
    return payments
      ? {
          budget: payments.budget.limit.toString(),
          deposit_per_provider: payments.budget.depositPerProvider.toString(),
          deposited: payments.budget.committed().toString(),
          paid: channels.reduce((sum, channel) => sum + channel.signedAmount, 0n).toString(),
          channels: channels.map((channel) => ({
            channel_id: channel.channelId,
            provider: channel.provider,
            state: channel.state,
            deposit: channel.deposit.toString(),
            paid: channel.signedAmount.toString(),
            acknowledged: channel.acknowledgedAmount.toString(),
          })),
        }
      : null;
  }

  function describeProviders(): ProviderView[] {
    const now = Date.now();
    return table.all().map((provider) => {
      const { announcement } = provider;
      const banned = provider.bannedUntil > now;
      const expired = announcement.expires_at <= now;
      const load = announcement.capacity.busy / announcement.capacity.parallelism;
      return {
        peer_id: provider.peerId,
        address: provider.address,
        models: announcement.models,
        price_per_million: announcement.price,
        latency_ms: provider.latencyMs ?? null,
        throughput_tps: provider.throughputTps ?? null,
        in_flight: provider.inFlight,
        successes: provider.successes,
        failures: provider.failures,
        load,
        parallelism: announcement.capacity.parallelism,
        waiting: announcement.capacity.waiting,
        banned,
        untrusted: provider.untrusted,
        status: provider.untrusted
          ? "untrusted"
          : expired
            ? "expired"
            : banned
              ? "banned"
              : load >= 1 || provider.inFlight >= announcement.capacity.parallelism
                ? "busy"
                : "online",
        reputation: provider.reputation ?? null,
        announced_at: announcement.issued_at,
        expires_at: announcement.expires_at,
      };
    });
  }

  async function route(input: { method: string; path: string; response: ServerResponse }) {
    if (input.path === "/mycel/v1/usage" && input.method === "GET") {
      sendJson(input.response, 200, usage());
      return true;
    }
    return false;
  }

  const backend: InferenceBackend = {
    listModels: liveModels,
    findModel,
    generate,
    route,
    health: () => ({
      status: "ok",
      role: "gateway",
      peer_id: node.peerId,
      address: client,
      providers: table.all().filter((provider) => provider.announcement.expires_at > Date.now()).length,
      models: liveModels().map((model) => ({ name: model.name, hash: model.hash, ...model.extra })),
    }),
  };

  return {
    address: client,
    backend,
    providers: table,
    async waitForProviders(input) {
      const deadline = Date.now() + input.timeoutMs;
      const count = () =>
        input.modelHash
          ? table.serving(modelHashToBytes32(input.modelHash)).length
          : table.all().filter((p) => p.announcement.expires_at > Date.now()).length;
      while (count() < input.count) {
        if (Date.now() > deadline)
          throw new ServiceUnavailableError(
            `only ${count()} of ${input.count} providers appeared in ${input.timeoutMs} ms`,
            {
              hint: "check that the providers run and that --bootstrap points at one of them",
            },
          );
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    refreshReputation,
    describeProviders,
    paymentsSummary,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async stop() {
      listeners.clear();
      if (reputationTimer) clearInterval(reputationTimer);
      table.stop();
      await Promise.allSettled([...finishing]);
      await parameters.payments?.stop();
    },
  };
}

/** A provider that charges nothing is never paid (it asks for no channel). */
function isFree(provider: KnownProvider): boolean {
  return provider.announcement.price.input === "0" && provider.announcement.price.output === "0";
}

/** The smallest of some bigints (Math.min takes numbers only). */
function smallest(values: readonly bigint[]): bigint {
  let result = values[0] ?? 0n;
  for (const value of values) if (value < result) result = value;
  return result;
}
