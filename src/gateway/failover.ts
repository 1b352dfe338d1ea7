/**
 * Failover: one request answered by as many providers as it takes. Picks the best provider, runs a segment, checks
 * its receipt, records it, samples it for audit; when a provider fails or cheats, continues the answer on the next
 * one from the tokens so far. Whose fault a failure is decides what happens (failures.ts): only the provider's own
 * faults count against it; the client's input and this gateway's own failures are answered at once.
 */
import { randomBytes, randomInt } from "node:crypto";
import { type Hex, toHex } from "viem";
import type { BackendGenerateParameters } from "../api/index.ts";
import {
  describeError,
  InvalidInputError,
  PaymentRequiredError,
  ServiceUnavailableError,
} from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type { GatewayPayments, PayingChannel } from "../payments/index.ts";
import {
  buildInferenceRequest,
  type Evidence,
  evidenceCommitment,
  hashTokenIds,
  type InferenceRequest,
  inferenceRequestSchema,
  modelHashToBytes32,
  type OutputLogprobEntry,
  type ReceiptDomain,
  type SignedReceipt,
  streamLimits,
} from "../protocol/index.ts";
import { type FramedComponents, fetchEvidence } from "../protocols/index.ts";
import type { ReceiptStore } from "../store/index.ts";
import type { ActivityFeed } from "./activity.ts";
import { type CapacityPick, type CapacityQueue, hasRoom, restBusyProvider } from "./capacity.ts";
import {
  defaultRoutingPolicy,
  effectiveCeiling,
  isRoutable,
  type RoutingPolicy,
  refuseAboveCeiling,
  whyNoneRoutable,
} from "./eligibility.ts";
import { classifyFailure, SegmentFailedError } from "./failures.ts";
import type { KnownProvider, ProviderTable } from "./providerTable.ts";
import type { ReputationSource } from "./reputation.ts";
import { rankProviders, reputationOf } from "./routing.ts";
import type { AuditSampler } from "./sampling.ts";
import { type GatewayTimeouts, runSegment } from "./segment.ts";
import type { Standby } from "./standby.ts";
import { verifyReceipt } from "./verifyReceipt.ts";

/** Evidence as the API returns it: with the request in its wire form, so that it is a whole audit input but the receipt. */
export type AnsweredEvidence = Evidence & { request: InferenceRequest };

/** A request's answer as the network gave it. */
export type GatewayAnswer = {
  text: string;
  finishReason: "stop" | "length" | "cancelled";
  usage: { promptTokens: number; completionTokens: number; totalTokens: number };
  requestId: Hex;
  /** The model's hash, 64 hex digits without 0x. */
  modelHash: string;
  seed: number;
  /** The providers that served it, one per segment, in order (empty when cancelled). */
  providers: string[];
  /** Providers that failed before the answer was complete. */
  failovers: number;
  /** One verified receipt per segment, in order. */
  receipts: SignedReceipt[];
  evidence?: AnsweredEvidence | AnsweredEvidence[] | { error: string };
  /** The validators (peer ids) the answer went to for audit. */
  audit?: { validators: string[] };
  /** Output paid for by voucher in segments that ended without a receipt (see RequestState), when any. */
  unreceiptedCost?: bigint;
  /** The providers (addresses, in order) of output that came without a receipt, when any. */
  unreceiptedProviders?: string[];
  /** What went wrong on this gateway's side without spoiling the answer (a receipt it could not store). */
  warnings?: string[];
  /** The output tokens' log-probabilities, from the last segment's provider (it covers the whole answer). */
  logprobs?: OutputLogprobEntry[];
  totalMs: number;
};

/** What answering over the network needs: the gateway's parts. */
export type FailoverContext = {
  components: FramedComponents;
  table: ProviderTable;
  /** The gateway's address: the requests' client. */
  client: Hex;
  domain: ReceiptDomain;
  timeouts: GatewayTimeouts;
  maxAttempts: number;
  payments: GatewayPayments | undefined;
  reputation: ReputationSource | undefined;
  /** Stake and price ceiling required of providers (default: no stake checked, the default ceiling). */
  policy?: RoutingPolicy;
  receipts: ReceiptStore;
  sampler: AuditSampler;
  activity: ActivityFeed;
  /** Payments for receipts still being settled (the answer does not wait for them). */
  settling: Set<Promise<void>>;
  /** Where requests wait while every provider of their model is at capacity. */
  queue: CapacityQueue;
  /** How this gateway is connected to a peer now (tests may leave it out: then only announced addresses tell). */
  connectionKind?: (peerId: string) => "direct" | "relayed" | null;
  /** Makes the provider a request would fail over to ready while it streams (none: nothing is prepared). */
  standby?: Standby;
  logger: Logger;
};

/** A segment that was answered and verified. */
type SignedSegment = { provider: KnownProvider; request: InferenceRequest; receipt: SignedReceipt };

/** The answer so far. */
type RequestState = {
  requestId: Hex;
  modelHash: Hex;
  seed: number;
  outputTokens: number[];
  text: string;
  segments: SignedSegment[];
  tried: Set<string>;
  lastFailure: unknown;
  started: boolean;
  startedAt: number;
  /** When the request arrived (ms since the epoch): its wait for capacity is bounded from there. */
  arrivedAt: number;
  /** When an answer already streaming first had to wait for capacity again (its own deadline runs from there). */
  resumedAt: number | undefined;
  /** Providers whose unknown channel was replaced during this request (each gets one retry). */
  reopened: Set<string>;
  warnings: string[];
  /**
   * Output of segments that ended without a receipt (a provider failed, or the client went away), at their
   * providers' output prices: it was metered and paid for by voucher as it arrived, so an API key is charged it.
   */
  unreceiptedCost: bigint;
  /** The providers of that output (addresses, in order, each once). */
  unreceiptedProviders: string[];
  /** Per provider reached through a relay: how often its cut stream was resumed on it (see sortOutFailure). */
  relayResumes: Map<string, number>;
  /** Whether the provider of the segment running now was reached through a relay when it started. */
  viaRelay: boolean;
  /** The provider a cut relayed stream resumes on: asked first by the next pick. */
  resumeOn: string | undefined;
};

/** A provider that charges nothing is never paid (it asks for no channel). */
export function isFree(provider: KnownProvider): boolean {
  return provider.announcement.price.input === "0" && provider.announcement.price.output === "0";
}

/** The wire request of an API request, checked here: bad input is the client's, never a provider's fault. */
export function wireRequestOf(parameters: BackendGenerateParameters, seed: number): InferenceRequest {
  const { sampling, prompt } = parameters;
  const request = buildInferenceRequest({
    modelHash: modelHashToBytes32(parameters.model.hash),
    prompt: prompt.kind === "chat" ? { kind: "chat", messages: prompt.messages } : prompt,
    maxTokens: sampling.maxTokens,
    temperature: sampling.temperature,
    topP: sampling.topP,
    topK: sampling.topK,
    seed,
    stop: sampling.stop,
    constraints: sampling,
  });
  const checked = inferenceRequestSchema.safeParse(request);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new InvalidInputError(
      `invalid request: ${issue?.path.join(".") || "request"} ${issue?.message ?? "is invalid"}`,
      { code: "invalid_value", param: issue?.path.join(".") || null },
    );
  }
  const frameBytes = Buffer.byteLength(JSON.stringify(request)) + 512;
  if (frameBytes > streamLimits.maxFrameBytes)
    throw new InvalidInputError(
      `the request is ${frameBytes} bytes; providers take at most ${streamLimits.maxFrameBytes}`,
      { code: "request_too_large", param: "messages", hint: "shorten the messages" },
    );
  return request;
}

/** Answers a request over the network, failing over between providers. */
export async function answerWithFailover(
  parameters: BackendGenerateParameters,
  context: FailoverContext,
): Promise<GatewayAnswer> {
  const seed = parameters.sampling.seed ?? randomInt(0, 0x7fffffff);
  const base = wireRequestOf(parameters, seed);
  const state: RequestState = {
    requestId: toHex(randomBytes(32)),
    modelHash: modelHashToBytes32(parameters.model.hash),
    seed,
    outputTokens: [],
    text: "",
    segments: [],
    tried: new Set(),
    lastFailure: undefined,
    started: false,
    startedAt: performance.now(),
    arrivedAt: Date.now(),
    resumedAt: undefined,
    reopened: new Set(),
    warnings: [],
    unreceiptedCost: 0n,
    unreceiptedProviders: [],
    relayResumes: new Map(),
    viaRelay: false,
    resumeOn: undefined,
  };
  // `attempt` counts failures; a busy refusal is none (the wait for capacity is bounded by the queue's deadline).
  for (let attempt = 0; attempt < context.maxAttempts; ) {
    if (parameters.signal.aborted) break;
    const { maxTokens } = parameters.sampling;
    const remaining = maxTokens === undefined ? undefined : maxTokens - state.outputTokens.length;
    // A provider died (or its relay cut the stream) after its last token but before its receipt: the answer is
    // complete, unsigned; without the receipt the prompt's token count is unknown.
    if (remaining !== undefined && remaining <= 0) {
      state.warnings.push(
        `the receipt of the last segment was lost (its stream ended after the last token, before the receipt): ` +
          `its output is counted in unreceipted_cost and usage.prompt_tokens is unknown (0)`,
      );
      return answerOf(state, { finishReason: "length", promptTokens: 0, failovers: attempt });
    }
    // An answer already streaming (its provider failed late) gets a whole deadline from its first wait.
    if (state.started) state.resumedAt ??= Date.now();
    const provider = await context.queue.take({
      pick: () => pickProvider({ parameters, context, state, attempt }),
      arrivedAt: state.resumedAt ?? state.arrivedAt,
      signal: parameters.signal,
      model: parameters.model.name,
    });
    if (!provider) break;
    state.tried.add(provider.peerId);
    const request: InferenceRequest = {
      ...base,
      ...(state.outputTokens.length > 0 ? { prefix_tokens: [...state.outputTokens] } : {}),
      ...(remaining === undefined ? {} : { max_tokens: remaining }),
    };
    const before = { tokens: state.outputTokens.length, text: state.text.length };
    state.viaRelay =
      context.connectionKind?.(provider.peerId) === "relayed" ||
      provider.announcement.multiaddrs.some((address) => address.includes("/p2p-circuit"));
    let failed = true;
    try {
      return await attemptWith({ parameters, context, state, provider, request, attempt });
    } catch (error) {
      state.unreceiptedCost += meteredOutputCost(provider, state.outputTokens.length - before.tokens);
      if (state.outputTokens.length > before.tokens && state.unreceiptedProviders.at(-1) !== provider.address)
        state.unreceiptedProviders.push(provider.address);
      if (parameters.signal.aborted) break;
      failed = sortOutFailure({ error, parameters, context, state, provider, before }) === "failed";
    } finally {
      provider.inFlight--;
      context.queue.release();
    }
    if (!failed) continue;
    // The first failover goes straight to the next provider; later ones back off, more each time.
    if (attempt > 0)
      await new Promise((resolve) => setTimeout(resolve, Math.min(50 * 2 ** (attempt - 1), 400)));
    attempt++;
  }
  if (parameters.signal.aborted)
    return {
      ...answerOf(state, { finishReason: "stop", promptTokens: 0, failovers: 0 }),
      finishReason: "cancelled",
    };
  throw noProviderLeft(parameters, context, state);
}

/** The best provider not tried yet with room; "full" when those left have none now; undefined when none is left. */
function pickProvider(input: {
  parameters: BackendGenerateParameters;
  context: FailoverContext;
  state: RequestState;
  attempt: number;
}): CapacityPick {
  const { parameters, context, state } = input;
  const payable = (provider: KnownProvider) => {
    const payment = provider.announcement.payment;
    if (!payment || isFree(provider)) return true;
    return context.payments?.canPay(payment) ?? false;
  };
  const serving = context.table
    .serving(state.modelHash)
    .filter((entry) => parameters.onlyProvider === undefined || entry.peerId === parameters.onlyProvider);
  const policy = context.policy ?? defaultRoutingPolicy;
  const eligible = (entry: KnownProvider) =>
    isRoutable(entry, {
      modelHash: state.modelHash,
      policy,
      maxPricePerMillion: parameters.maxPricePerMillion,
      requiredCapabilities: parameters.requiredCapabilities,
    });
  if (input.attempt === 0)
    refuseAboveCeiling({
      modelName: parameters.model.name,
      modelHash: state.modelHash,
      requested: parameters.maxPricePerMillion,
      policy,
      serving,
    });
  const rank = (now?: number) =>
    rankProviders({
      candidates: serving.filter(eligible).filter(payable),
      exclude: state.tried,
      minimumReputation: context.reputation?.minimum,
      now,
    });
  // When every provider left is resting after a failure (a dial that timed out before its relay address was
  // known, a stream a relay cut), they get another try rather than none: a model must not go dark because its
  // last providers failed once. An untrusted provider never does.
  let ranked = rank();
  if (ranked.length === 0) ranked = rank(Number.POSITIVE_INFINITY);
  const now = Date.now();
  // A cut relayed stream goes back to its own provider (it holds the answer's context) when it has room.
  const resumeOn = state.resumeOn;
  state.resumeOn = undefined;
  const provider =
    ranked.find((entry) => entry.peerId === resumeOn && hasRoom(entry, now)) ??
    ranked.find((entry) => hasRoom(entry, now));
  if (!provider && ranked.length > 0) return "full";
  if (!provider && input.attempt === 0 && serving.length > 0 && !serving.some(payable))
    throw new PaymentRequiredError(
      `every provider of model "${parameters.model.name}" is paid on a chain this gateway does not pay on`,
      {
        details: serving
          .map((entry) => `${entry.address}: chain ${entry.announcement.payment?.chain_id}`)
          .join("; "),
        hint: "start the gateway with --rpc-url and --deployments of that chain",
      },
    );
  return provider;
}

/**
 * Makes the provider this request would fail over to now ready (see standby.ts): connected, and for a paid provider
 * with a funded channel, as long as the budget keeps room for one more deposit after it (a standby never takes the
 * last of the budget).
 */
function prepareStandby(input: {
  parameters: BackendGenerateParameters;
  context: FailoverContext;
  state: RequestState;
}): void {
  const { context } = input;
  if (!context.standby) return;
  let next: CapacityPick;
  try {
    next = pickProvider({ ...input, attempt: 1 });
  } catch {
    return;
  }
  if (!next || next === "full") return;
  const payment = next.announcement.payment;
  const payments = context.payments;
  const provider = next;
  const fund =
    payment && payments && !isFree(provider) && payments.canPay(payment)
      ? async () => {
          // Opening or topping up takes a deposit: only while another one would still fit.
          const { limit, depositPerProvider, committed } = payments.budget;
          if (committed() + 2n * depositPerProvider > limit) return;
          await payments.channelFor({
            provider: provider.address as Hex,
            creditWindow: BigInt(payment.credit_window),
          });
        }
      : undefined;
  void context.standby.prepare(provider, fund);
}

/** The channel that pays `provider`, opened or topped up if needed; undefined for a provider that serves unpaid. */
export async function channelFor(
  context: FailoverContext,
  provider: KnownProvider,
): Promise<PayingChannel | undefined> {
  const payment = provider.announcement.payment;
  if (!payment || !context.payments || isFree(provider)) return undefined;
  try {
    return await context.payments.channelFor({
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

/** One attempt at one provider, to a verified, recorded and possibly sampled answer. */
async function attemptWith(input: {
  parameters: BackendGenerateParameters;
  context: FailoverContext;
  state: RequestState;
  provider: KnownProvider;
  request: InferenceRequest;
  attempt: number;
}): Promise<GatewayAnswer> {
  const { parameters, context, state, provider, request } = input;
  let standbyAsked = false;
  // The price it was picked at: a provider that announces a new price mid-answer is paid the old one or nothing.
  const pricePerMillion = {
    input: BigInt(provider.announcement.price.input),
    output: BigInt(provider.announcement.price.output),
  };
  const segment = await runPaidSegment({
    context,
    state,
    provider,
    run: (paying) =>
      runSegment(context.components, {
        provider,
        requestId: state.requestId,
        client: context.client,
        request,
        paying,
        outputPricePerMillion: pricePerMillion.output,
        timeouts: context.timeouts,
        signal: parameters.signal,
        onTokens: (tokens, piece) => {
          if (!state.started) {
            state.started = true;
            parameters.onStart?.();
          }
          state.outputTokens.push(...tokens);
          state.text += piece;
          // The client first; the explorer's feed and the standby after.
          if (piece) parameters.onText?.(piece);
          context.activity.emit({ type: "tokens", provider: provider.address, count: tokens.length });
          // Once this segment streams, the provider it would fail over to gets ready, off the first token's path.
          if (!standbyAsked) {
            standbyAsked = true;
            setImmediate(() => prepareStandby({ parameters, context, state }));
          }
        },
      }),
  });
  let receipt: SignedReceipt;
  try {
    receipt = await verifyReceipt({
      end: segment.end,
      requestId: state.requestId,
      client: context.client,
      provider: provider.address,
      request,
      outputTokens: segment.tokens,
      streamedText: segment.text,
      pricePerMillion,
      maxPricePerMillion: effectiveCeiling(
        context.policy ?? defaultRoutingPolicy,
        parameters.maxPricePerMillion,
      ),
      domain: context.domain,
    });
  } catch (error) {
    void segment.settle(undefined);
    throw error;
  }
  // The receipt is paid for after the answer goes back: the client does not wait for the voucher's round trip.
  const settled = segment
    .settle(BigInt(receipt.message.price))
    .catch((error) => context.logger.warn("paying for a receipt failed", { error: describeError(error) }));
  context.settling.add(settled);
  void settled.finally(() => context.settling.delete(settled));
  provider.successes++;
  provider.busyStreak = 0;
  state.segments.push({ provider, request, receipt });
  recordReceipts(context, state);
  // Sampled for audit after the answer: the provider cannot know beforehand which answers are checked.
  // The answer names the validators that took its samples (one that cannot be reached is replaced).
  const auditedBy = (
    await Promise.all(
      state.segments.map((entry, index) =>
        context.sampler.maybeSample({
          requestId: state.requestId,
          segment: index,
          providerPeerId: entry.provider.peerId,
          request: entry.request,
          receipt: entry.receipt,
          force: parameters.requestAudit === true,
        }),
      ),
    )
  ).filter((peer): peer is string => peer !== undefined);
  context.activity.emit({ type: "completed", requestId: state.requestId });
  const evidence = parameters.includeEvidence ? await collectEvidence(context, state.segments) : undefined;
  context.logger.info("request completed", {
    requestId: state.requestId.slice(0, 18),
    providers: state.segments.length,
    attempts: input.attempt + 1,
    completionTokens: state.outputTokens.length,
  });
  const prefixLength = request.prefix_tokens?.length ?? 0;
  return {
    ...answerOf(state, {
      finishReason: segment.end.finish_reason,
      promptTokens: segment.end.prompt_token_ids.length - prefixLength,
      failovers: input.attempt,
    }),
    ...(evidence === undefined ? {} : { evidence }),
    ...(auditedBy.length > 0 ? { audit: { validators: [...new Set(auditedBy)] } } : {}),
    ...(segment.logprobs === undefined ? {} : { logprobs: segment.logprobs }),
  };
}

/**
 * Runs a segment on the provider's channel. A provider that does not know the channel (`unknown_channel`: a chain
 * reset, a channel closed meanwhile) is asked once more on a new channel when the chain does not know it either;
 * when the chain knows it, the provider is wrong and the refusal stands (a failure of that provider).
 */
async function runPaidSegment(input: {
  context: FailoverContext;
  state: RequestState;
  provider: KnownProvider;
  run: (paying: PayingChannel | undefined) => ReturnType<typeof runSegment>;
}) {
  const { context, state, provider } = input;
  const paying = await channelFor(context, provider);
  try {
    return await input.run(paying);
  } catch (error) {
    const unknownChannel = error instanceof SegmentFailedError && error.code === "unknown_channel";
    if (!unknownChannel || !paying || !context.payments || state.reopened.has(provider.peerId)) throw error;
    state.reopened.add(provider.peerId);
    let forgotten: boolean;
    try {
      forgotten = await context.payments.forgetIfUnknown({ channelId: paying.channelId });
    } catch (chainError) {
      throw new ServiceUnavailableError("the gateway cannot check its payment channel on the chain", {
        details: `provider ${provider.address} does not know channel ${paying.channelId}; ${describeError(chainError)}`,
        hint: "check the gateway's chain RPC (--rpc-url), then retry",
        retryAfterSeconds: 2,
        cause: chainError,
      });
    }
    if (!forgotten) throw error;
    context.logger.info("the provider's channel was unknown to the chain: retrying on a new channel", {
      provider: provider.address,
      channel: paying.channelId,
    });
    return input.run(await channelFor(context, provider));
  }
}

/** Stores every segment's receipt; a store that fails spoils nothing the client holds: it becomes a warning. */
function recordReceipts(context: FailoverContext, state: RequestState) {
  for (const [index, entry] of state.segments.entries()) {
    try {
      const saved = context.receipts.saveReceipt({
        requestId: state.requestId,
        segment: index,
        provider: entry.provider.address as Hex,
        modelHash: state.modelHash,
        receipt: entry.receipt,
      });
      if (saved.created)
        context.activity.emit({ type: "receipt", requestId: state.requestId, segment: index });
    } catch (error) {
      context.logger.error(
        "a receipt could not be stored (the answer and its receipt still go to the client)",
        {
          requestId: state.requestId.slice(0, 18),
          error: describeError(error),
        },
      );
      state.warnings.push(
        `this gateway could not store the receipt of segment ${index}: ${describeError(error).split("\n")[0]}`,
      );
    }
  }
}

/**
 * What a failed attempt means: thrown on for the client's input, payment and this gateway's own failures; "busy"
 * for a provider that is full (no failure: it rests until its retry-after and may be asked again); "failed" else.
 */
function sortOutFailure(input: {
  error: unknown;
  parameters: BackendGenerateParameters;
  context: FailoverContext;
  state: RequestState;
  provider: KnownProvider;
  before: { tokens: number; text: number };
}): "busy" | "failed" {
  const { error, context, state, provider, before } = input;
  const kind = classifyFailure(error);
  if (kind === "client_input" || kind === "payment") throw error;
  // Refused before any token: nothing to undo, nobody to blame.
  if (kind === "provider_busy" && state.outputTokens.length === before.tokens) {
    restBusyProvider(provider, error instanceof SegmentFailedError ? error.retryAfterMs : undefined);
    state.tried.delete(provider.peerId);
    context.logger.debug("provider is full: asking another or waiting", {
      peer: provider.peerId,
      restMs: provider.busyUntil - Date.now(),
    });
    return "busy";
  }
  if (kind === "gateway_failed") {
    context.logger.error("request failed on this gateway (no provider is blamed)", {
      peer: provider.peerId,
      error: describeError(error),
    });
    throw error;
  }
  // A stream through a relay cut after it made progress (the relay's data or time limit, or the relay restarting) is
  // the relay's doing, not the provider's: resume the answer on the same provider over a new relayed connection (each
  // has a fresh limit), a few times a request, without blaming it. A dead provider makes no progress, so it is failed.
  // A relayed connection that broke before the stream began (closed while opening) gets one new dial the same way.
  const resumes = state.relayResumes.get(provider.peerId) ?? 0;
  const progressed = state.outputTokens.length > before.tokens;
  if (
    kind === "provider_failed" &&
    state.viaRelay &&
    (progressed ? resumes < maxRelayResumesPerRequest : resumes === 0)
  ) {
    state.relayResumes.set(provider.peerId, resumes + 1);
    state.tried.delete(provider.peerId);
    state.resumeOn = provider.peerId;
    context.logger.info("a stream through a relay was cut: resuming it on the same provider", {
      peer: provider.peerId,
      tokensSoFar: state.outputTokens.length,
      resumes: resumes + 1,
      error: describeError(error).split("\n")[0],
    });
    return "busy";
  }
  state.lastFailure = error;
  provider.failures++;
  if (kind === "provider_cheated") {
    provider.untrusted = true;
    const reason =
      error instanceof Error && "shortMessage" in error ? String(error.shortMessage) : describeError(error);
    try {
      context.receipts.markUntrusted({ address: provider.address as Hex, peerId: provider.peerId, reason });
    } catch (storeError) {
      context.logger.error("could not remember an untrusted provider", { error: describeError(storeError) });
    }
    context.logger.warn("provider cheated or broke the protocol: no longer routed to", {
      peer: provider.peerId,
      address: provider.address,
      error: reason,
    });
    // Its tokens are not trusted either: continue from before its segment, or fail if they were shown.
    if (input.parameters.onText && state.text.length > before.text) throw error;
    state.outputTokens.length = before.tokens;
    state.text = state.text.slice(0, before.text);
    return "failed";
  }
  // A busy provider says when to come back; a dead or stalled one sits out the whole ban.
  const retryAfterMs = error instanceof SegmentFailedError ? error.retryAfterMs : undefined;
  const banMs = context.timeouts.banMs;
  provider.bannedUntil = Date.now() + Math.min(retryAfterMs ?? banMs, banMs);
  context.logger.warn("provider failed: failing over", {
    peer: provider.peerId,
    tokensSoFar: state.outputTokens.length,
    error: describeError(error).split("\n")[0],
    ...causesOf(error),
  });
  return "failed";
}

/** The messages of an error's causes (a dial failure's own reason), for the log: `{}` when it has none. */
function causesOf(error: unknown): { cause?: string } {
  const messages: string[] = [];
  let cause = error instanceof Error ? error.cause : undefined;
  while (cause !== undefined && messages.length < 4) {
    messages.push(describeError(cause).split("\n")[0] ?? "");
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return messages.length === 0 ? {} : { cause: messages.join(" <- ") };
}

/** Why no provider could answer. */
function noProviderLeft(
  parameters: BackendGenerateParameters,
  context: FailoverContext,
  state: RequestState,
): ServiceUnavailableError {
  const name = parameters.model.name;
  const minimum = context.reputation?.minimum;
  const served = context.table.serving(state.modelHash);
  const unroutable = whyNoneRoutable(served, {
    modelHash: state.modelHash,
    policy: context.policy ?? defaultRoutingPolicy,
    maxPricePerMillion: parameters.maxPricePerMillion,
  });
  const reputable = served.filter((entry) => reputationOf(entry) >= (minimum ?? 0));
  return new ServiceUnavailableError(
    served.length === 0
      ? `no provider serves model "${name}" now`
      : unroutable
        ? `no provider of model "${name}" may be routed to: ${unroutable}`
        : reputable.length === 0
          ? `every provider of model "${name}" has an on-chain reputation below ${minimum} (validators caught them cheating)`
          : `every provider of model "${name}" failed (${state.tried.size} tried)`,
    {
      details: state.lastFailure ? describeError(state.lastFailure) : undefined,
      hint: unroutable
        ? "stake a provider of it on chain (`mycel provider stake`), raise the price ceiling (--max-price, mycel.max_price), or start the gateway with --allow-unstaked"
        : `retry shortly, or start another provider with \`mycel provider --model ${name}\``,
      retryAfterSeconds: 2,
    },
  );
}

/** The answer so far, with the receipts of the segments that produced it. */
/** How often one request resumes a cut relayed stream on the same provider before that provider counts as failed. */
export const maxRelayResumesPerRequest = 8;

/** What `tokens` of a provider's output cost at its announced output price (rounded up), the way vouchers meter it. */
function meteredOutputCost(provider: KnownProvider, tokens: number): bigint {
  if (tokens <= 0) return 0n;
  const perMillion = BigInt(provider.announcement.price.output);
  return (BigInt(tokens) * perMillion + 999_999n) / 1_000_000n;
}

function answerOf(
  state: RequestState,
  input: { finishReason: "stop" | "length"; promptTokens: number; failovers: number },
): GatewayAnswer {
  return {
    text: state.text,
    finishReason: input.finishReason,
    usage: {
      promptTokens: input.promptTokens,
      completionTokens: state.outputTokens.length,
      totalTokens: input.promptTokens + state.outputTokens.length,
    },
    requestId: state.requestId,
    modelHash: state.modelHash.slice(2),
    seed: state.seed,
    providers: state.segments.map((entry) => entry.provider.address),
    failovers: input.failovers,
    receipts: state.segments.map((entry) => entry.receipt),
    ...(state.unreceiptedCost > 0n ? { unreceiptedCost: state.unreceiptedCost } : {}),
    ...(state.unreceiptedProviders.length > 0
      ? { unreceiptedProviders: [...state.unreceiptedProviders] }
      : {}),
    ...(state.warnings.length > 0 ? { warnings: [...state.warnings] } : {}),
    totalMs: performance.now() - state.startedAt,
  };
}

/** Fetches each segment's evidence from its provider and checks it against the receipt. */
async function collectEvidence(
  context: FailoverContext,
  segments: readonly SignedSegment[],
): Promise<AnsweredEvidence | AnsweredEvidence[] | { error: string }> {
  const collected: AnsweredEvidence[] = [];
  for (const segment of segments) {
    try {
      const frame = await fetchEvidence(context.components, {
        providerPeerId: segment.provider.peerId,
        requestId: segment.receipt.message.requestId as Hex,
      });
      const message = segment.receipt.message;
      if (
        evidenceCommitment(frame.evidence) !== message.commitment ||
        hashTokenIds(frame.evidence.outputTokens) !== message.outputHash ||
        hashTokenIds(frame.evidence.promptTokens) !== message.promptHash
      )
        throw new Error("the provider's evidence does not match its receipt");
      collected.push({ ...frame.evidence, request: segment.request });
    } catch (error) {
      context.logger.warn("evidence unavailable", {
        provider: segment.provider.address,
        error: describeError(error),
      });
      return { error: `provider ${segment.provider.address}: ${describeError(error)}` };
    }
  }
  return collected.length === 1 ? (collected[0] as AnsweredEvidence) : collected;
}
