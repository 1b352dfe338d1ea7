/**
 * One segment: one stream to one provider for one request (or its continuation after a failover). Streams the
 * provider's tokens, meters and pays for them through the payer session, measures the provider, and sorts every
 * failure by whose fault it is (see failures.ts).
 */
import type { Hex } from "viem";
import { describeError, InvalidInputError, PaymentRequiredError } from "../errors/index.ts";
import { openPayerSession, type PayerSession, type PayingChannel } from "../payments/index.ts";
import {
  type ChunkFrame,
  type EndFrame,
  type InferenceRequest,
  type LogprobsFrame,
  maxLogprobsPerFrame,
  type OutputLogprobEntry,
  ProtocolError,
  segmentLimits,
  streamLimits,
} from "../protocol/index.ts";
import { callInference, type FramedComponents, type InferenceCall, WireError } from "../protocols/index.ts";
import { ProviderBusyError, SegmentFailedError } from "./failures.ts";
import { recordLatency, recordThroughput } from "./measurements.ts";
import type { KnownProvider } from "./providerTable.ts";

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

/** Parameters of {@link runSegment}. */
export type RunSegmentParameters = {
  provider: KnownProvider;
  requestId: Hex;
  /** The gateway's address: the request's (and the receipt's) client. */
  client: Hex;
  request: InferenceRequest;
  /** The channel that pays this provider; undefined for a provider that serves unpaid. */
  paying: PayingChannel | undefined;
  /** Its output price per 1M tokens as it was when the provider was picked (default: its announcement's now). */
  outputPricePerMillion?: bigint;
  timeouts: GatewayTimeouts;
  signal: AbortSignal;
  /** Tokens as they arrive, with the text they completed. */
  onTokens: (tokens: number[], text: string) => void;
};

/**
 * A segment that ended with a receipt. Its stream stays open until `settle` pays for the receipt (pass its price
 * once it verified, or undefined when it did not) and closes it.
 */
export type SegmentResult = {
  end: EndFrame;
  tokens: number[];
  /** The text streamed (every chunk's `text`, joined): the receipt's commitment must bind it. */
  text: string;
  /** The log-probabilities the provider sent (continuation prefix first), when the request asked for them. */
  logprobs?: OutputLogprobEntry[];
  settle: (price: bigint | undefined) => Promise<void>;
};

/** What one segment may bring: a provider that sends more broke the protocol (docs/PROTOCOL.md). */
export type SegmentCaps = {
  /** Output tokens: the request's max_tokens, or what the model's context leaves after the continuation prefix. */
  maxTokens: number;
  /** Frames of any kind. */
  maxFrames: number;
  /** UTF-8 bytes of chunk text for a number of output tokens so far. */
  maxTextBytes: (tokens: number) => number;
  /** Log-probability entries (continuation prefix and output): 0 when the request asked for none. */
  maxLogprobs: number;
};

/** The caps of a segment of `request` served by `provider`. */
export function segmentCapsOf(parameters: {
  request: InferenceRequest;
  provider: KnownProvider;
}): SegmentCaps {
  const { request, provider } = parameters;
  const model = provider.announcement.models.find((entry) => entry.hash === request.model_hash);
  const prefix = request.prefix_tokens?.length ?? 0;
  const contextLeft = Math.max(1, (model?.context_size ?? streamLimits.maxPromptTokens) - prefix);
  const maxTokens = request.max_tokens ?? contextLeft;
  const maxLogprobs = request.logprobs === undefined ? 0 : prefix + maxTokens;
  return {
    maxTokens,
    maxLogprobs,
    maxFrames: 2 * maxTokens + Math.ceil(maxLogprobs / maxLogprobsPerFrame) + segmentLimits.framesSlack,
    maxTextBytes: (tokens) =>
      Math.min(
        segmentLimits.maxSegmentTextBytes,
        tokens * segmentLimits.maxTextBytesPerToken + segmentLimits.textBytesSlack,
      ),
  };
}

/** Counts what a segment brought; throws ProtocolError once it brings more than its caps. */
function guardSegment(caps: SegmentCaps, provider: KnownProvider) {
  let frames = 0;
  let tokens = 0;
  let textBytes = 0;
  let logprobs = 0;
  const exceeded = (what: string) =>
    new ProtocolError(`provider ${provider.peerId} sent more than a segment may bring: ${what}`, {
      code: "segment_cap_exceeded",
      hint: "the provider is no longer routed to; the answer continues on another provider",
    });
  return {
    frame() {
      frames++;
      if (frames > caps.maxFrames) throw exceeded(`over ${caps.maxFrames} frames`);
    },
    chunk(frame: ChunkFrame) {
      tokens += frame.tokens.length;
      if (tokens > caps.maxTokens) throw exceeded(`${tokens} tokens for at most ${caps.maxTokens}`);
      textBytes += Buffer.byteLength(frame.text);
      const allowed = caps.maxTextBytes(tokens);
      if (textBytes > allowed)
        throw exceeded(`${textBytes} bytes of text for ${tokens} tokens (at most ${allowed})`);
    },
    logprobs(frame: LogprobsFrame) {
      logprobs += frame.entries.length;
      if (logprobs > caps.maxLogprobs)
        throw exceeded(`${logprobs} log-probabilities for at most ${caps.maxLogprobs}`);
    },
  };
}

/** What a provider's error frame means for the request. */
export function failureOf(error: WireError, provider: KnownProvider): Error {
  if (error.kind === "client_input")
    return new InvalidInputError(error.peerMessage, { code: error.code, param: "messages" });
  if (error.kind === "payment")
    return new PaymentRequiredError(`provider ${provider.address} stopped: ${error.peerMessage}`, {
      hint: "check the gateway's payment channel and budget (`mycel channel list`, GET /mycel/v1/usage)",
    });
  if (error.kind === "busy")
    return new ProviderBusyError(`provider ${provider.peerId} is full: ${error.peerMessage}`, {
      code: error.code,
      retryAfterMs: error.retryAfterMs,
    });
  return new SegmentFailedError(`provider ${provider.peerId} refused: ${error.peerMessage}`, {
    code: error.code,
    retryAfterMs: error.retryAfterMs,
  });
}

/** Opens the inference stream of a segment; throws what the provider's refusal means (see failureOf). */
export async function openSegmentCall(
  components: FramedComponents,
  parameters: Pick<
    RunSegmentParameters,
    "provider" | "paying" | "requestId" | "client" | "request" | "timeouts" | "signal"
  >,
): Promise<InferenceCall> {
  const { provider, paying } = parameters;
  try {
    return await callInference(components, {
      providerPeerId: provider.peerId,
      request: {
        id: parameters.requestId,
        client: parameters.client,
        request: parameters.request,
        ...(paying ? { payment: { channel_id: paying.channelId } } : {}),
      },
      openTimeoutMs: parameters.timeouts.firstTokenMs,
      signal: parameters.signal,
    });
  } catch (cause) {
    if (cause instanceof WireError) throw failureOf(cause, provider);
    throw new SegmentFailedError(`cannot reach provider ${provider.peerId}`, {
      cause,
      details: describeError(cause),
    });
  }
}

/** Runs one segment to its receipt; throws SegmentFailedError, InvalidInputError, PaymentRequiredError or ProtocolError. */
export async function runSegment(
  components: FramedComponents,
  parameters: RunSegmentParameters,
): Promise<SegmentResult> {
  const { provider, signal, timeouts } = parameters;
  const startedAt = performance.now();
  const caps = segmentCapsOf({ request: parameters.request, provider });
  const guard = guardSegment(caps, provider);
  const call = await openSegmentCall(components, parameters);
  signal.addEventListener("abort", call.cancel, { once: true });
  const payer: PayerSession | undefined =
    parameters.paying &&
    openPayerSession({
      channel: parameters.paying,
      outputPricePerMillion: parameters.outputPricePerMillion ?? BigInt(provider.announcement.price.output),
      maxOutputTokens: caps.maxTokens,
      sendVoucher: call.sendVoucher,
    });
  payer?.begin();
  const tokens: number[] = [];
  let text = "";
  const logprobs: OutputLogprobEntry[] = [];
  let firstChunk: { at: number; tokens: number } | undefined;
  let ended = false;
  try {
    for (;;) {
      let frame: Awaited<ReturnType<InferenceCall["next"]>>;
      try {
        frame = await call.next({ timeoutMs: firstChunk ? timeouts.stallMs : timeouts.firstTokenMs, signal });
      } catch (cause) {
        if (cause instanceof WireError) throw failureOf(cause, provider);
        // A malformed frame is the provider breaking the protocol (it is not trusted again); anything else is a
        // silent, reset or timed-out stream.
        if (cause instanceof ProtocolError) throw cause;
        throw new SegmentFailedError(`provider ${provider.peerId} stopped answering`, {
          cause,
          details: describeError(cause),
        });
      }
      if (frame === undefined)
        throw new SegmentFailedError(`provider ${provider.peerId} closed the stream without a receipt`);
      try {
        guard.frame();
        if (frame.type === "chunk") guard.chunk(frame);
        if (frame.type === "logprobs") guard.logprobs(frame);
      } catch (error) {
        // Cut at once: the stream is reset, nothing more is read or buffered, and the excess is neither shown nor paid.
        call.abort(error as Error);
        throw error;
      }
      if (frame.type === "chunk") {
        if (!firstChunk) {
          firstChunk = { at: performance.now(), tokens: frame.tokens.length };
          recordLatency(provider, firstChunk.at - startedAt);
        }
        tokens.push(...frame.tokens);
        text += frame.text;
        parameters.onTokens(frame.tokens, frame.text);
        payer?.outputReceived(frame.tokens.length);
        continue;
      }
      if (frame.type === "paid") {
        payer?.acknowledged(frame);
        continue;
      }
      if (frame.type === "logprobs") {
        logprobs.push(...frame.entries);
        continue;
      }
      if (frame.type === "embedding") {
        const error = new ProtocolError(
          `provider ${provider.peerId} sent an embedding for a generation request`,
          {
            code: "malformed_frame",
          },
        );
        call.abort(error);
        throw error;
      }
      ended = true;
      recordThroughput(provider, {
        startedAt,
        firstChunkAt: firstChunk?.at ?? performance.now(),
        firstChunkTokens: firstChunk?.tokens ?? 0,
        endedAt: performance.now(),
        tokens: tokens.length,
      });
      return {
        end: frame,
        tokens,
        text,
        ...(parameters.request.logprobs === undefined ? {} : { logprobs }),
        settle: async (price) => {
          signal.removeEventListener("abort", call.cancel);
          if (!payer || price === undefined) {
            payer?.abandon();
            await call.close().catch(() => undefined);
            return;
          }
          await payer.settle({ price, stream: call });
        },
      };
    }
  } finally {
    if (!ended) {
      payer?.abandon();
      signal.removeEventListener("abort", call.cancel);
      if (!signal.aborted) await call.close().catch(() => undefined);
    }
  }
}
