/**
 * The provider's side of `/mycel/infer/1.0.0`: admits a stream within the per-peer and total limits, reads its
 * request frame, and hands the exchange to the provider's answer; what the answer throws goes back as an error frame.
 */
import { describeError, MycelError } from "../../errors/index.ts";
import { silentLogger } from "../../log/index.ts";
import type { FrameChannel } from "../../p2p/index.ts";
import {
  type CancelFrame,
  gatewayFrameSchema,
  ProtocolError,
  type ProviderFrame,
  parseFrame,
  type RequestFrame,
  requestFrameSchema,
  type VoucherFrame,
} from "../../protocol/index.ts";
import { type FramedComponents, serveFramed } from "../framed/index.ts";
import {
  busyRetryAfterMs,
  defaultInferenceLimits,
  type InferenceLimits,
  inferenceProtocolId,
} from "./constants.ts";

/** One request being answered: the request frame, and the stream's two directions. */
export type InferenceExchange = {
  peerId: string;
  request: RequestFrame;
  /** Queues a frame to the gateway (frames leave in order); a failed write aborts {@link InferenceExchange.broken}. */
  send(frame: ProviderFrame): void;
  /** Resolves once every queued frame is written (or the stream broke). */
  flushed(): Promise<void>;
  /** Aborts when a frame could not be written: the gateway is gone. */
  broken: AbortSignal;
  /**
   * The gateway's next frame after the request: a voucher or a cancel; undefined once it closed its side. A second
   * request frame throws ProtocolError; `signal` ends the wait (it throws the signal's reason).
   */
  nextGatewayFrame(signal: AbortSignal): Promise<VoucherFrame | CancelFrame | undefined>;
};

/** Parameters of {@link serveInference}. */
export type ServeInferenceParameters = {
  limits?: Partial<InferenceLimits>;
  /** Answers one request; what it throws is sent as an error frame. */
  answer: (exchange: InferenceExchange) => Promise<void>;
};

/** A running inference service. */
export type InferenceService = {
  /** Streams being served now. */
  activeStreams(): number;
};

/** Refuses a stream beyond a limit: the peer may come back after {@link busyRetryAfterMs}. */
class StreamLimitError extends MycelError {
  override name = "StreamLimitError";
  readonly retryAfterMs = busyRetryAfterMs;
}

function exchangeOf(channel: FrameChannel, peerId: string, request: RequestFrame): InferenceExchange {
  const broken = new AbortController();
  let writes = Promise.resolve();
  return {
    peerId,
    request,
    send(frame) {
      writes = writes
        .then(() => (broken.signal.aborted ? undefined : channel.write(frame)))
        .catch((error) => broken.abort(error));
    },
    flushed: () => writes,
    broken: broken.signal,
    async nextGatewayFrame(signal) {
      const value = await channel.read({ signal });
      if (value === undefined) return undefined;
      const frame = parseFrame(gatewayFrameSchema, value);
      if (frame.type === "request")
        throw new ProtocolError("a request frame in the middle of a stream", { code: "malformed_frame" });
      return frame;
    },
  };
}

/** Serves inference streams on the node. */
export async function serveInference(
  components: FramedComponents,
  parameters: ServeInferenceParameters,
): Promise<InferenceService> {
  const limits = { ...defaultInferenceLimits, ...parameters.limits };
  const logger = components.logger ?? silentLogger;
  const streamsByPeer = new Map<string, number>();
  let active = 0;
  await serveFramed(components, {
    protocol: inferenceProtocolId,
    limits,
    serve: async (channel, peerId) => {
      const open = streamsByPeer.get(peerId) ?? 0;
      if (open >= limits.maxStreamsPerPeer)
        throw new StreamLimitError(`at most ${limits.maxStreamsPerPeer} streams per peer`, {
          code: "too_many_streams",
        });
      if (active >= limits.maxInboundStreams)
        throw new StreamLimitError(
          `this provider serves at most ${limits.maxInboundStreams} streams at once`,
          {
            code: "busy",
          },
        );
      streamsByPeer.set(peerId, open + 1);
      active++;
      try {
        const first = await channel.read({ timeoutMs: limits.idleTimeoutMs });
        if (first === undefined) return;
        await parameters.answer(exchangeOf(channel, peerId, parseFrame(requestFrameSchema, first)));
      } catch (error) {
        logger.warn("stream refused", { peer: peerId, error: describeError(error).split("\n")[0] });
        throw error;
      } finally {
        active--;
        const left = (streamsByPeer.get(peerId) ?? 1) - 1;
        if (left > 0) streamsByPeer.set(peerId, left);
        else streamsByPeer.delete(peerId);
      }
    },
  });
  return { activeStreams: () => active };
}
