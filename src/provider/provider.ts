/** The provider role: serves inference over `/mycel/infer/1.0.0`, signs receipts, announces itself. */
import type { Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  createDeltaBatcher,
  type Engine,
  type GenerateParameters,
  type GenerateReturnType,
  type GenerationDelta,
  type LoadedModelInfo,
  streamBatchIntervalMs,
} from "../engine/index.ts";
import {
  describeError,
  InvalidInputError,
  MycelError,
  PaymentRequiredError,
  QueueFullError,
} from "../errors/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import { createFrameChannel, type FrameChannel, type MycelNode } from "../p2p/index.ts";
import { type ChannelCharge, type ProviderPayments, VoucherRejectedError } from "../payments/index.ts";
import {
  announcementTiming,
  announcementTopic,
  buildFingerprints,
  type ErrorFrame,
  type Evidence,
  evidenceCommitment,
  evidenceProtocolId,
  evidenceRequestFrameSchema,
  gatewayFrameSchema,
  hashRequest,
  hashTokenIds,
  type InferenceRequest,
  inferenceProtocolId,
  modelHashToBytes32,
  ProtocolError,
  parseFrame,
  priceOfTokens,
  type ReceiptDomain,
  type ReceiptMessage,
  type RequestFrame,
  receiptDomain,
  requestFrameSchema,
  type SignedReceipt,
  signAnnouncement,
  signReceipt,
  streamLimits,
  wireVersion,
} from "../protocol/index.ts";
import { type EvidenceStore, openEvidenceStore } from "../store/index.ts";

/** Prices per 1M tokens, in the payment token's smallest unit. */
export type ProviderPrice = { input: bigint; output: bigint };

/** Parts a provider is built from that a test may replace (e.g. a receipt signer that cheats). */
export type ProviderComponents = {
  signReceipt: (parameters: {
    privateKey: Hex;
    domain: ReceiptDomain;
    message: ReceiptMessage;
  }) => Promise<SignedReceipt>;
  /** Generates an answer (the engine's generate); test fixtures replace it to cheat. */
  generate: (parameters: GenerateParameters & { request: InferenceRequest }) => Promise<GenerateReturnType>;
};

/** How long a provider keeps the evidence of its answers for validators, by default: 7 days. */
export const defaultEvidenceRetentionMs = 7 * 24 * 3600_000;

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
  limits?: Partial<{ [Key in keyof typeof streamLimits]: number }>;
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

/** Addresses worth announcing: loopback ones only when there is nothing else (a devnet on one machine). */
function reachableAddresses(addresses: string[]): string[] {
  const isLoopback = (address: string) => /^\/ip4\/127\.|^\/ip6\/::1\//.test(address);
  const others = addresses.filter((address) => !isLoopback(address));
  return others.length > 0 ? others : addresses;
}

/** Most tokens in one chunk frame (the schema allows 64). */
const maxTokensPerChunk = 32;
/** How long a provider waits, after its receipt, for the voucher that pays for it. */
const finalVoucherWaitMs = 3_000;
/** How long output beyond the credit window waits for a voucher before the client is cut off. */
const paymentWaitMs = 2_000;

function errorFrame(code: string, message: string, retryAfterMs?: number): ErrorFrame {
  return {
    v: wireVersion,
    type: "error",
    code,
    message: message.slice(0, 2000),
    retry_after_ms: retryAfterMs,
  };
}

/** Starts serving inference on the node and announcing it; returns once the first announcement is out. */
export async function startProvider(parameters: StartProviderParameters): Promise<Provider> {
  const { engine, node } = parameters;
  const logger = parameters.logger ?? silentLogger;
  const limits = { ...streamLimits, ...parameters.limits };
  const account = privateKeyToAccount(parameters.privateKey);
  const domain = parameters.receiptDomain ?? receiptDomain();
  const sign = parameters.components?.signReceipt ?? signReceipt;
  const generateWith =
    parameters.components?.generate ?? ((input: GenerateParameters) => engine.generate(input));
  const evidenceStore = parameters.evidence ?? openEvidenceStore({ path: ":memory:" });
  const retentionMs = parameters.evidenceRetentionMs ?? defaultEvidenceRetentionMs;
  const modelsByHash = new Map<string, LoadedModelInfo>(
    parameters.models.map((model) => [modelHashToBytes32(model.hash), model]),
  );
  const streamsByPeer = new Map<string, number>();
  let active = 0;
  const { payments } = parameters;
  const paid = payments !== undefined && (parameters.price.input > 0n || parameters.price.output > 0n);

  function tokenize(model: LoadedModelInfo, request: InferenceRequest): number[] {
    if (request.kind === "chat")
      return engine.tokenizeChat({ modelHash: model.hash, messages: request.messages ?? [] });
    const prompt = request.prompt ?? "";
    if (typeof prompt === "string") return engine.tokenizeText({ modelHash: model.hash, text: prompt });
    const outside = prompt.find((token) => token >= model.vocabularySize);
    if (outside !== undefined)
      throw new InvalidInputError(`token ${outside} is outside the vocabulary`, { param: "prompt" });
    return prompt;
  }

  async function serveStream(channel: FrameChannel, peerId: string) {
    const first = await channel.read({ timeoutMs: limits.idleTimeoutMs });
    if (first === undefined) return;
    const frame = parseFrame(requestFrameSchema, first);
    const model = modelsByHash.get(frame.request.model_hash);
    if (!model) {
      await channel.write(
        errorFrame("model_not_found", `model ${frame.request.model_hash} is not served here`),
      );
      return;
    }
    const promptTokens = tokenize(model, frame.request);
    const prefixTokens = frame.request.prefix_tokens ?? [];
    const evaluated = [...promptTokens, ...prefixTokens];
    if (evaluated.length > limits.maxPromptTokens) {
      await channel.write(
        errorFrame(
          "prompt_too_long",
          `${evaluated.length} prompt tokens exceed this provider's limit of ${limits.maxPromptTokens}`,
        ),
      );
      return;
    }
    let charge: ChannelCharge | undefined;
    if (paid && payments) {
      if (!frame.payment)
        throw new PaymentRequiredError(
          `this provider is paid through payment channels (PaymentChannels ${payments.announcement.payment_channels} on chain ${payments.announcement.chain_id})`,
          { hint: `open a channel to ${account.address} and name it in the request's payment.channel_id` },
        );
      charge = await payments.admit({
        channelId: frame.payment.channel_id as Hex,
        client: frame.client as Hex,
      });
    }
    try {
      await generateAnswer({ channel, peerId, frame, model, promptTokens, prefixTokens, evaluated, charge });
    } finally {
      charge?.release();
    }
  }

  async function generateAnswer(input: {
    channel: FrameChannel;
    peerId: string;
    frame: RequestFrame;
    model: LoadedModelInfo;
    promptTokens: number[];
    prefixTokens: number[];
    evaluated: number[];
    charge: ChannelCharge | undefined;
  }) {
    const { channel, peerId, frame, model, promptTokens, prefixTokens, evaluated, charge } = input;
    const controller = new AbortController();
    const reading = new AbortController();
    let timedOut = false;
    /** Why generation stopped early on the provider's side (a payment problem), told to the gateway. */
    let stopReason: MycelError | undefined;
    /** Set once the end frame is out: later problems are told at once, not after generation. */
    let answered = false;
    const total = setTimeout(() => {
      timedOut = true;
      controller.abort(new Error("total time limit"));
    }, limits.totalTimeoutMs);
    let writes = Promise.resolve();
    let writeFailed = false;
    const send = (value: unknown) => {
      writes = writes
        .then(() => channel.write(value))
        .catch(() => {
          writeFailed = true;
          controller.abort(new Error("stream broken"));
        });
    };
    // The gateway may cancel at any time, or go away: either stops generation and frees the sequence. It also
    // pays with vouchers, during the answer and right after it.
    const watch = (async () => {
      try {
        while (!reading.signal.aborted) {
          const next = await channel.read({ signal: reading.signal });
          if (next === undefined) break;
          const control = parseFrame(gatewayFrameSchema, next);
          if (control.type === "cancel") break;
          if (control.type !== "voucher")
            throw new ProtocolError("a request frame in the middle of a stream", { code: "malformed_frame" });
          if (!payments) continue;
          try {
            const stored = await payments.acceptVoucher({
              channelId: control.channel_id as Hex,
              cumulativeAmount: BigInt(control.cumulative_amount),
              signature: control.signature as Hex,
            });
            send({
              v: wireVersion,
              type: "paid",
              channel_id: control.channel_id,
              cumulative_amount: stored.cumulativeAmount.toString(),
            });
          } catch (error) {
            stopReason = error instanceof MycelError ? error : new VoucherRejectedError(describeError(error));
            logger.warn("voucher rejected", { peer: peerId, error: stopReason.shortMessage });
            if (answered) send(errorFrame(stopReason.code, describeError(stopReason)));
            break;
          }
        }
      } catch {
        // A malformed control frame or a broken stream ends the request like a cancel.
      }
      controller.abort(new Error("cancelled by the gateway"));
    })();
    // Output beyond the credit window is held back (generation goes on) until a voucher pays for it; if none
    // comes within paymentWaitMs, the client is cut off.
    let held: GenerationDelta[] = [];
    let holdTimer: NodeJS.Timeout | undefined;
    let heldSettled: (() => void) | undefined;
    const cutOff = () => {
      if (!charge || stopReason) return;
      const debt = charge.debt();
      stopReason = new PaymentRequiredError(
        `unpaid output on channel ${charge.channelId} (${debt.unpaid} owed) would exceed this provider's credit window of ${debt.creditWindow}`,
        { hint: "pay with vouchers as tokens arrive, as docs/PROTOCOL.md describes" },
      );
      logger.warn("client cut off: unpaid beyond the credit window", {
        peer: peerId,
        channel: charge.channelId,
        unpaid: debt.unpaid.toString(),
      });
      charge.markUnpaid();
      controller.abort(new Error("unpaid"));
      heldSettled?.();
    };
    /** Sends held output, one chunk frame per maxTokensPerChunk tokens, as far as the credit window allows. */
    const releaseHeld = () => {
      while (held.length > 0 && !stopReason) {
        // Delta by delta: exactly as much as the window allows goes out.
        let count = 0;
        let take = 0;
        for (const delta of held) {
          if (take > 0 && count + delta.tokens.length > maxTokensPerChunk) break;
          if (charge && !charge.charge(delta.tokens.length)) break;
          count += delta.tokens.length;
          take++;
        }
        if (take > 0) {
          const frame = held.slice(0, take);
          held = held.slice(take);
          send({
            v: wireVersion,
            type: "chunk",
            tokens: frame.flatMap((delta) => delta.tokens),
            text: frame.map((delta) => delta.text).join(""),
          });
        }
        if (held.length > 0 && (take === 0 || count < maxTokensPerChunk)) {
          holdTimer ??= setTimeout(() => {
            holdTimer = undefined;
            releaseHeld();
            if (held.length > 0) cutOff();
          }, paymentWaitMs);
          return;
        }
      }
      clearTimeout(holdTimer);
      holdTimer = undefined;
      heldSettled?.();
    };
    // A voucher on any stream of the channel may pay for this one's held output.
    charge?.onPayment(releaseHeld);
    // Tokens go out at once when they come slower than streamBatchIntervalMs; faster ones are gathered into one
    // chunk per interval. Every frame costs encryption, syscalls and a window update on the main thread,
    // which also drives llama.cpp's token loop: per-token frames made the network path 15% slower.
    const chunks = createDeltaBatcher<GenerationDelta>({
      intervalMs: streamBatchIntervalMs,
      maxItems: maxTokensPerChunk,
      onBatch: (deltas) => {
        if (stopReason) return;
        held.push(...deltas);
        if (held.length === deltas.length) releaseHeld();
      },
    });
    try {
      const result = await generateWith({
        request: frame.request,
        modelHash: model.hash,
        promptTokens,
        prefixTokens,
        maxTokens: frame.request.max_tokens,
        temperature: frame.request.temperature,
        topP: frame.request.top_p,
        topK: frame.request.top_k,
        seed: frame.request.seed,
        stop: frame.request.stop,
        signal: controller.signal,
        onDelta: (delta) => chunks.push(delta),
      });
      chunks.flush();
      if (held.length > 0 && !stopReason)
        await new Promise<void>((resolve) => {
          heldSettled = resolve;
        });
      await writes;
      if (result.finishReason === "cancelled" || writeFailed || stopReason) {
        logger.info("request cancelled", { peer: peerId, completionTokens: result.tokens.length });
        if (stopReason && !writeFailed) {
          await channel.write(errorFrame(stopReason.code, describeError(stopReason)));
        } else if (timedOut && !writeFailed)
          await channel.write(
            errorFrame("time_limit", `a request may take at most ${limits.totalTimeoutMs} ms here`),
          );
        return;
      }
      // The evidence validators check: a fingerprint of the distributions each output token was sampled from,
      // bound with the finish reason into the receipt's commitment.
      const finishReason = result.finishReason;
      const fingerprints = buildFingerprints(result.topLogits);
      const message: ReceiptMessage = {
        requestId: frame.id as Hex,
        client: frame.client as Hex,
        provider: account.address,
        modelHash: frame.request.model_hash as Hex,
        requestHash: hashRequest(frame.request),
        promptHash: hashTokenIds(evaluated),
        outputHash: hashTokenIds(result.tokens),
        commitment: evidenceCommitment({ fingerprints, finishReason }),
        promptTokens: evaluated.length,
        completionTokens: result.tokens.length,
        price: priceOfTokens({
          promptTokens: evaluated.length,
          completionTokens: result.tokens.length,
          pricePerMillion: parameters.price,
        }),
        timestamp: BigInt(Math.floor(Date.now() / 1000)),
      };
      const receipt = await sign({ privateKey: parameters.privateKey, domain, message });
      const evidence: Evidence = {
        modelHash: frame.request.model_hash,
        promptTokens: evaluated,
        outputTokens: result.tokens,
        fingerprints,
        finishReason,
      };
      // Stored before the answer ends: a validator may ask for it as soon as the gateway has the receipt.
      try {
        evidenceStore.save({
          requestId: frame.id as Hex,
          provider: account.address,
          evidence,
          request: frame.request,
          receipt,
        });
      } catch (error) {
        logger.warn("evidence not stored", { error: describeError(error) });
      }
      charge?.complete(message.price);
      await channel.write({
        v: wireVersion,
        type: "end",
        finish_reason: finishReason,
        prompt_token_ids: evaluated,
        receipt,
      });
      answered = true;
      logger.info("request served", {
        peer: peerId,
        model: model.name,
        promptTokens: evaluated.length,
        completionTokens: result.tokens.length,
        continuation: prefixTokens.length > 0,
      });
      // The voucher for the receipt comes next; the gateway closes its side once it is acknowledged.
      if (charge) {
        let wait: NodeJS.Timeout | undefined;
        await Promise.race([
          watch,
          new Promise((resolve) => (wait = setTimeout(resolve, finalVoucherWaitMs))),
        ]);
        clearTimeout(wait);
        await writes;
      }
    } finally {
      chunks.cancel();
      clearTimeout(holdTimer);
      clearTimeout(total);
      controller.abort(new Error("request finished"));
      reading.abort(new Error("request finished"));
      await watch;
    }
  }

  await node.handleProtocol(
    inferenceProtocolId,
    async (stream, peerId) => {
      const channel = createFrameChannel(stream, { maxFrameBytes: limits.maxFrameBytes });
      const open = streamsByPeer.get(peerId) ?? 0;
      if (open >= limits.maxStreamsPerPeer) {
        await channel
          .write(errorFrame("too_many_streams", `at most ${limits.maxStreamsPerPeer} streams per peer`, 1000))
          .catch(() => undefined);
        await channel.close().catch(() => undefined);
        return;
      }
      if (active >= limits.maxInboundStreams) {
        await channel
          .write(
            errorFrame(
              "busy",
              `this provider serves at most ${limits.maxInboundStreams} streams at once`,
              1000,
            ),
          )
          .catch(() => undefined);
        await channel.close().catch(() => undefined);
        return;
      }
      streamsByPeer.set(peerId, open + 1);
      active++;
      try {
        await serveStream(channel, peerId);
        await channel.close().catch(() => undefined);
      } catch (error) {
        logger.warn("stream refused", { peer: peerId, error: describeError(error).split("\n")[0] });
        const code = error instanceof MycelError ? error.code : "internal_error";
        const retryAfter =
          error instanceof QueueFullError
            ? error.retryAfterSeconds * 1000
            : error instanceof VoucherRejectedError
              ? error.retryAfterMs
              : undefined;
        await channel.write(errorFrame(code, describeError(error), retryAfter)).catch(() => undefined);
        await channel.close().catch(() => undefined);
      } finally {
        active--;
        const left = (streamsByPeer.get(peerId) ?? 1) - 1;
        if (left > 0) streamsByPeer.set(peerId, left);
        else streamsByPeer.delete(peerId);
      }
    },
    { maxInboundStreams: limits.maxInboundStreams },
  );

  // Evidence goes to whoever names the request id: 32 random bytes known to the gateway and the validators it
  // samples to. One frame in, one frame out.
  await node.handleProtocol(
    evidenceProtocolId,
    async (stream, peerId) => {
      const channel = createFrameChannel(stream, { maxFrameBytes: limits.maxFrameBytes });
      try {
        const value = await channel.read({ timeoutMs: limits.idleTimeoutMs });
        if (value === undefined) return;
        const ask = parseFrame(evidenceRequestFrameSchema, value);
        const stored = evidenceStore.get(ask.request_id as Hex);
        if (!stored) {
          await channel.write(
            errorFrame(
              "evidence_not_found",
              `no evidence of request ${ask.request_id} here (kept ${Math.round(retentionMs / 3600_000)} h)`,
            ),
          );
        } else {
          await channel.write({
            v: wireVersion,
            type: "evidence",
            request: stored.request,
            evidence: stored.evidence,
            receipt: stored.receipt,
          });
        }
      } catch (error) {
        logger.debug("evidence request refused", { peer: peerId, error: describeError(error) });
        const code = error instanceof MycelError ? error.code : "internal_error";
        await channel.write(errorFrame(code, describeError(error))).catch(() => undefined);
      } finally {
        await channel.close().catch(() => undefined);
      }
    },
    { maxInboundStreams: 16 },
  );
  const pruneEvidence = () => {
    try {
      const removed = evidenceStore.prune(Date.now() - retentionMs);
      if (removed > 0) logger.info("old evidence deleted", { removed });
    } catch (error) {
      logger.warn("evidence pruning failed", { error: describeError(error) });
    }
  };
  pruneEvidence();
  const pruneTimer = setInterval(pruneEvidence, Math.min(3600_000, retentionMs));
  pruneTimer.unref();

  async function announce() {
    const now = Date.now();
    const stats = parameters.models.map((model) => engine.stats(model.hash));
    const announcement = await signAnnouncement({
      privateKey: parameters.privateKey,
      announcement: {
        peer_id: node.peerId,
        multiaddrs: reachableAddresses(node.multiaddrs()).slice(0, 16),
        models: parameters.models.map((model) => ({
          hash: modelHashToBytes32(model.hash),
          name: model.name,
          context_size: model.contextSize,
        })),
        price: { input: parameters.price.input.toString(), output: parameters.price.output.toString() },
        capacity: {
          parallelism: engine.options.parallelism,
          max_queue: engine.options.maxQueue,
          busy: stats.reduce((sum, stat) => sum + stat.busy, 0),
          waiting: stats.reduce((sum, stat) => sum + stat.waiting, 0),
        },
        ...(payments ? { payment: payments.announcement } : {}),
        version: parameters.version,
        issued_at: now,
        expires_at: now + announcementTiming.ttlMs,
      },
    });
    await node.publish(announcementTopic, new TextEncoder().encode(JSON.stringify(announcement)));
  }

  for (const model of parameters.models) {
    node.provideModel(model.hash).catch((error) =>
      logger.debug("DHT provide failed (retried with the next announcement)", {
        error: describeError(error),
      }),
    );
  }
  await announce().catch((error) => logger.warn("announcement failed", { error: describeError(error) }));
  // Providers subscribe to the topic too, so that gossipsub relays announcements through them: a gateway
  // hears providers it is not connected to. What they receive is ignored.
  const unsubscribe = node.subscribe(announcementTopic, () => undefined);
  // A peer that just joined the topic (a new gateway) hears from us soon, not at the next interval; at most
  // one such extra announcement per second, however many peers join.
  let announceSoon: NodeJS.Timeout | undefined;
  const onSubscriptionChange = (event: Event) => {
    const detail = (event as CustomEvent<{ subscriptions: { topic: string; subscribe: boolean }[] }>).detail;
    if (!detail.subscriptions.some((entry) => entry.topic === announcementTopic && entry.subscribe)) return;
    if (announceSoon) return;
    announceSoon = setTimeout(() => {
      announce()
        .catch((error) => logger.debug("announcement failed", { error: describeError(error) }))
        .finally(() => {
          setTimeout(() => {
            announceSoon = undefined;
          }, 1_000).unref();
        });
    }, 300);
  };
  node.libp2p.services.pubsub.addEventListener("subscription-change", onSubscriptionChange);
  let announcements = 0;
  const timer = setInterval(() => {
    announcements++;
    announce().catch((error) => logger.warn("announcement failed", { error: describeError(error) }));
    // DHT records expire far more slowly than announcements: refresh them every 12 announcements.
    if (announcements % 12 === 0)
      for (const model of parameters.models) node.provideModel(model.hash).catch(() => undefined);
  }, parameters.announceIntervalMs ?? announcementTiming.intervalMs);
  timer.unref();
  logger.info("provider ready", {
    address: account.address,
    peer: node.peerId,
    models: parameters.models.map((model) => model.name).join(","),
    listen: node.multiaddrs().join(","),
  });

  return {
    address: account.address,
    peerId: node.peerId,
    activeStreams: () => active,
    announce,
    async stop() {
      clearInterval(timer);
      clearInterval(pruneTimer);
      clearTimeout(announceSoon);
      node.libp2p.services.pubsub.removeEventListener("subscription-change", onSubscriptionChange);
      unsubscribe();
    },
  };
}
