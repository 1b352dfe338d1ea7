/**
 * Embeddings over the network: the request (`kind: "embed"`) goes to the best provider whose announcement says its
 * model makes embeddings, is paid at its input price through the payment channel, and comes back as one
 * `embedding` frame per input and a receipt whose outputHash must be the hash of exactly the vectors received. A
 * provider that fails is left for another (an embedding has no partial answer to continue: the next one starts over).
 */
import { randomBytes } from "node:crypto";
import { type Hex, toHex } from "viem";
import type { BackendEmbedParameters } from "../api/index.ts";
import { describeError, InvalidInputError, ServiceUnavailableError } from "../errors/index.ts";
import { openPayerSession, type PayerSession } from "../payments/index.ts";
import {
  buildEmbedRequest,
  decodeVector,
  type EndFrame,
  embedLimits,
  hashVectors,
  type InferenceRequest,
  inferenceRequestSchema,
  type ModelCapability,
  modelHashToBytes32,
  ProtocolError,
  type SignedReceipt,
  streamLimits,
} from "../protocol/index.ts";
import { WireError } from "../protocols/index.ts";
import { hasRoom, restBusyProvider } from "./capacity.ts";
import {
  defaultRoutingPolicy,
  effectiveCeiling,
  hasCapabilities,
  isRoutable,
  whyNoneRoutable,
} from "./eligibility.ts";
import { channelFor, type FailoverContext, isFree } from "./failover.ts";
import { classifyFailure, SegmentFailedError } from "./failures.ts";
import { recordLatency } from "./measurements.ts";
import type { KnownProvider } from "./providerTable.ts";
import { rankProviders } from "./routing.ts";
import { failureOf, openSegmentCall } from "./segment.ts";
import { verifyReceipt } from "./verifyReceipt.ts";

/** What an embeddings request needs of a provider's model. */
const embedCapabilities: readonly ModelCapability[] = ["embeddings"];

/** An embeddings answer as the network gave it. */
export type GatewayEmbedAnswer = {
  vectors: number[][];
  usage: { promptTokens: number; completionTokens: 0; totalTokens: number };
  requestId: Hex;
  modelHash: string;
  /** The provider that served it (address). */
  provider: string;
  failovers: number;
  receipt: SignedReceipt;
  totalMs: number;
};

/** The wire request of an embeddings request, checked here: bad input is the client's, never a provider's fault. */
export function embedRequestOf(parameters: BackendEmbedParameters): InferenceRequest {
  const request = buildEmbedRequest({
    modelHash: modelHashToBytes32(parameters.model.hash),
    inputs: parameters.inputs,
    dimensions: parameters.dimensions,
  });
  const checked = inferenceRequestSchema.safeParse(request);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new InvalidInputError(`invalid input: ${issue?.message ?? "is invalid"}`, {
      code: "invalid_value",
      param: issue?.path[0] === "dimensions" ? "dimensions" : "input",
    });
  }
  const frameBytes = Buffer.byteLength(JSON.stringify(request)) + 512;
  if (frameBytes > streamLimits.maxFrameBytes)
    throw new InvalidInputError(
      `the request is ${frameBytes} bytes; providers take at most ${streamLimits.maxFrameBytes}`,
      { code: "request_too_large", param: "input", hint: "send fewer or shorter inputs per request" },
    );
  return request;
}

/** Refuses at once (400) a request for a model none of whose providers announces embeddings: no provider could serve it. */
function refuseWithoutCapability(
  context: FailoverContext,
  parameters: BackendEmbedParameters,
  modelHash: Hex,
) {
  const serving = context.table.serving(modelHash);
  if (serving.length === 0) return;
  const entryOf = (provider: KnownProvider) =>
    provider.announcement.models.find((model) => model.hash.toLowerCase() === modelHash) ?? {};
  if (serving.some((provider) => hasCapabilities(entryOf(provider), embedCapabilities))) return;
  throw new InvalidInputError(
    `no provider of model "${parameters.model.name}" makes embeddings with it (${serving.length} serve it for chat and completion)`,
    {
      code: "model_not_supported",
      param: "model",
      hint: "pick a model whose providers list embeddings among its capabilities (GET /v1/models, mycel.capabilities)",
    },
  );
}

/** Answers an embeddings request over the network, failing over between providers that make embeddings. */
export async function answerEmbeddings(
  parameters: BackendEmbedParameters,
  context: FailoverContext,
): Promise<GatewayEmbedAnswer> {
  const request = embedRequestOf(parameters);
  const modelHash = request.model_hash as Hex;
  const startedAt = performance.now();
  const arrivedAt = Date.now();
  const requestId = toHex(randomBytes(32));
  const tried = new Set<string>();
  const policy = context.policy ?? defaultRoutingPolicy;
  const routable = {
    modelHash,
    policy,
    maxPricePerMillion: parameters.maxPricePerMillion,
    requiredCapabilities: embedCapabilities,
  };
  refuseWithoutCapability(context, parameters, modelHash);
  let lastFailure: unknown;
  for (let attempt = 0; attempt < context.maxAttempts; ) {
    if (parameters.signal.aborted) break;
    const provider = await context.queue.take({
      pick: () => {
        const candidates = context.table
          .serving(modelHash)
          .filter(
            (entry) => parameters.onlyProvider === undefined || entry.peerId === parameters.onlyProvider,
          )
          .filter((entry) => isRoutable(entry, routable))
          .filter(
            (entry) =>
              // As for completions: a provider that announces no payment serves unpaid.
              isFree(entry) ||
              entry.announcement.payment === undefined ||
              context.payments?.canPay(entry.announcement.payment) === true,
          );
        let ranked = rankProviders({
          candidates,
          exclude: tried,
          minimumReputation: context.reputation?.minimum,
        });
        if (ranked.length === 0)
          ranked = rankProviders({
            candidates,
            exclude: tried,
            minimumReputation: context.reputation?.minimum,
            now: Number.POSITIVE_INFINITY,
          });
        const now = Date.now();
        const picked = ranked.find((entry) => hasRoom(entry, now));
        return picked ?? (ranked.length > 0 ? "full" : undefined);
      },
      arrivedAt,
      signal: parameters.signal,
      model: parameters.model.name,
    });
    if (!provider) break;
    tried.add(provider.peerId);
    try {
      const answered = await embedWith({ parameters, context, provider, request, requestId });
      provider.successes++;
      provider.busyStreak = 0;
      try {
        context.receipts.saveReceipt({
          requestId,
          segment: 0,
          provider: provider.address as Hex,
          modelHash,
          receipt: answered.receipt,
        });
      } catch (error) {
        context.logger.error("an embeddings receipt could not be stored", { error: describeError(error) });
      }
      context.logger.info("embeddings completed", {
        requestId: requestId.slice(0, 18),
        inputs: answered.vectors.length,
        attempts: attempt + 1,
      });
      return {
        vectors: answered.vectors,
        usage: {
          promptTokens: answered.promptTokens,
          completionTokens: 0,
          totalTokens: answered.promptTokens,
        },
        requestId,
        modelHash: modelHash.slice(2),
        provider: provider.address,
        failovers: attempt,
        receipt: answered.receipt,
        totalMs: performance.now() - startedAt,
      };
    } catch (error) {
      if (parameters.signal.aborted) throw error;
      const kind = classifyFailure(error);
      if (kind === "client_input" || kind === "payment" || kind === "gateway_failed") throw error;
      if (kind === "provider_busy") {
        restBusyProvider(provider, error instanceof SegmentFailedError ? error.retryAfterMs : undefined);
        tried.delete(provider.peerId);
        continue;
      }
      lastFailure = error;
      provider.failures++;
      if (kind === "provider_cheated") {
        provider.untrusted = true;
        try {
          context.receipts.markUntrusted({
            address: provider.address as Hex,
            peerId: provider.peerId,
            reason: describeError(error),
          });
        } catch (storeError) {
          context.logger.error("could not remember an untrusted provider", {
            error: describeError(storeError),
          });
        }
      } else provider.bannedUntil = Date.now() + context.timeouts.banMs;
      context.logger.warn("embeddings provider failed: failing over", {
        peer: provider.peerId,
        error: describeError(error).split("\n")[0],
      });
      attempt++;
    } finally {
      provider.inFlight--;
      context.queue.release();
    }
  }
  if (parameters.signal.aborted) throw parameters.signal.reason;
  const served = context.table.serving(modelHash);
  const unroutable = whyNoneRoutable(served, routable);
  throw new ServiceUnavailableError(
    served.length === 0
      ? `no provider serves model "${parameters.model.name}" now`
      : unroutable
        ? `no provider of model "${parameters.model.name}" may be routed to for embeddings: ${unroutable}`
        : `every provider of model "${parameters.model.name}" that makes embeddings failed (${tried.size} tried)`,
    {
      details: lastFailure ? describeError(lastFailure) : undefined,
      hint: "retry shortly, or start another provider of the model",
      retryAfterSeconds: 2,
    },
  );
}

/** One attempt: the vectors and the verified receipt, paid for; throws what the failure means (see failures.ts). */
async function embedWith(input: {
  parameters: BackendEmbedParameters;
  context: FailoverContext;
  provider: KnownProvider;
  request: InferenceRequest;
  requestId: Hex;
}): Promise<{ vectors: number[][]; promptTokens: number; receipt: SignedReceipt }> {
  const { parameters, context, provider, request, requestId } = input;
  const pricePerMillion = {
    input: BigInt(provider.announcement.price.input),
    output: BigInt(provider.announcement.price.output),
  };
  const paying = await channelFor(context, provider);
  const startedAt = performance.now();
  const call = await openSegmentCall(context.components, {
    provider,
    paying,
    requestId,
    client: context.client,
    request,
    timeouts: context.timeouts,
    signal: parameters.signal,
  });
  parameters.signal.addEventListener("abort", call.cancel, { once: true });
  const payer: PayerSession | undefined =
    paying &&
    openPayerSession({
      channel: paying,
      outputPricePerMillion: pricePerMillion.output,
      maxOutputTokens: 0,
      sendVoucher: call.sendVoucher,
    });
  payer?.begin();
  const inputs = request.inputs?.length ?? 0;
  const vectors: number[][] = [];
  let end: EndFrame | undefined;
  let settled = false;
  try {
    while (!end) {
      let frame: Awaited<ReturnType<typeof call.next>>;
      try {
        frame = await call.next({ timeoutMs: context.timeouts.firstTokenMs, signal: parameters.signal });
      } catch (cause) {
        if (cause instanceof WireError) {
          const failure = failureOf(cause, provider);
          if (failure instanceof InvalidInputError)
            throw new InvalidInputError(failure.message, {
              code: failure.code,
              param: /\bdimensions\b/.test(failure.message) ? "dimensions" : "input",
            });
          throw failure;
        }
        if (cause instanceof ProtocolError) throw cause;
        throw new SegmentFailedError(`provider ${provider.peerId} stopped answering`, {
          cause,
          details: describeError(cause),
        });
      }
      if (frame === undefined)
        throw new SegmentFailedError(`provider ${provider.peerId} closed the stream without a receipt`);
      if (frame.type === "paid") {
        payer?.acknowledged(frame);
        continue;
      }
      if (frame.type === "embedding") {
        const vector = decodeVector(Buffer.from(frame.data, "base64"));
        const expectedLength = vectors[0]?.length ?? vector.length;
        if (
          frame.index !== vectors.length ||
          vectors.length >= inputs ||
          vector.length === 0 ||
          vector.length !== expectedLength ||
          vector.length > embedLimits.maxDimensions ||
          vector.some((value) => !Number.isFinite(value))
        ) {
          const error = new ProtocolError(
            `provider ${provider.peerId} sent a malformed embedding (index ${frame.index}, ${vector.length} values)`,
            {
              code: "malformed_embedding",
            },
          );
          call.abort(error);
          throw error;
        }
        if (vectors.length === 0) recordLatency(provider, performance.now() - startedAt);
        vectors.push(vector);
        continue;
      }
      if (frame.type === "chunk" || frame.type === "logprobs") {
        const error = new ProtocolError(`provider ${provider.peerId} sent tokens for an embeddings request`, {
          code: "malformed_frame",
        });
        call.abort(error);
        throw error;
      }
      end = frame;
    }
    if (vectors.length !== inputs)
      throw new ProtocolError(
        `provider ${provider.peerId} sent ${vectors.length} vectors for ${inputs} inputs`,
        {
          code: "malformed_embedding",
        },
      );
    // The receipt binds exactly these vectors: outputHash over their float32 little-endian bytes.
    const receipt = await verifyReceipt({
      end,
      requestId,
      client: context.client,
      provider: provider.address,
      request,
      outputTokens: [],
      outputHash: hashVectors(vectors),
      pricePerMillion,
      maxPricePerMillion: effectiveCeiling(
        context.policy ?? defaultRoutingPolicy,
        parameters.maxPricePerMillion,
      ),
      domain: context.domain,
    });
    settled = true;
    parameters.signal.removeEventListener("abort", call.cancel);
    const settling = (
      payer ? payer.settle({ price: BigInt(receipt.message.price), stream: call }) : call.close()
    ).catch((error) =>
      context.logger.warn("paying for an embeddings receipt failed", { error: describeError(error) }),
    );
    context.settling.add(settling);
    void settling.finally(() => context.settling.delete(settling));
    return { vectors, promptTokens: end.prompt_token_ids.length, receipt };
  } finally {
    if (!settled) {
      payer?.abandon();
      parameters.signal.removeEventListener("abort", call.cancel);
      if (!parameters.signal.aborted) await call.close().catch(() => undefined);
    }
  }
}
