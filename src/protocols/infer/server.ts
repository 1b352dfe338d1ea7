/**
 * The provider's side of `/mycel/infer/1.0.0`: admits a stream (admission.ts), reads its request frame within a
 * short deadline, and hands the exchange to the provider's answer; what the answer throws goes back as an error frame.
 */
import { describeError } from "../../errors/index.ts";
import { silentLogger } from "../../log/index.ts";
import { type FrameChannel, FrameTimeoutError } from "../../p2p/index.ts";
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
import { createStreamAdmission, StreamLimitError } from "./admission.ts";
import {
  defaultInferenceLimits,
  type InferenceLimits,
  inferenceProtocolId,
  inferRunsOnLimitedConnection,
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
  /**
   * Whether the provider trusts a peer (a funded channel, requests served before): trusted peers may use all of the
   * serving capacity, strangers share `maxStrangerStreams` of it. Without it every peer is trusted.
   */
  isTrustedPeer?: (peerId: string) => boolean;
};

/** A running inference service. */
export type InferenceService = {
  /** Streams being served now (their request arrived). */
  activeStreams(): number;
  /** Streams waiting for their request frame now. */
  pendingStreams(): number;
};

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

/** Waits for a stream's request frame within the deadline; a pushed-out stream throws its StreamLimitError. */
async function readRequest(
  channel: FrameChannel,
  parameters: { timeoutMs: number; evicted: AbortSignal },
): Promise<RequestFrame | undefined> {
  let first: unknown;
  try {
    first = await channel.read({ timeoutMs: parameters.timeoutMs, signal: parameters.evicted });
  } catch (error) {
    throw parameters.evicted.aborted ? parameters.evicted.reason : error;
  }
  return first === undefined ? undefined : parseFrame(requestFrameSchema, first);
}

/**
 * Serves inference streams on the node: a stream waits for its request frame in the pending budget (no serving
 * capacity taken, a short deadline), then takes a serving slot and is answered (see admission.ts).
 */
export async function serveInference(
  components: FramedComponents,
  parameters: ServeInferenceParameters,
): Promise<InferenceService> {
  const limits = { ...defaultInferenceLimits, ...parameters.limits };
  const logger = components.logger ?? silentLogger;
  const admission = createStreamAdmission(limits);
  const isTrustedPeer = parameters.isTrustedPeer ?? (() => true);
  await serveFramed(components, {
    protocol: inferenceProtocolId,
    runOnLimitedConnection: inferRunsOnLimitedConnection,
    limits: { maxFrameBytes: limits.maxFrameBytes, maxInboundStreams: limits.maxStreamsPerConnection },
    serve: async (channel, peerId, source) => {
      try {
        const trusted = isTrustedPeer(peerId);
        const evicted = new AbortController();
        const leavePending = admission.admitPending({
          peerId,
          // Without an address (a test network), each peer counts as a host of its own.
          host: source?.remoteHost ?? peerId,
          trusted,
          evict: (reason) => evicted.abort(reason),
        });
        let request: RequestFrame | undefined;
        try {
          request = await readRequest(channel, {
            timeoutMs: limits.firstFrameTimeoutMs,
            evicted: evicted.signal,
          });
        } finally {
          leavePending();
        }
        if (request === undefined) return;
        const release = admission.admitServing({ peerId, trusted });
        try {
          await parameters.answer(exchangeOf(channel, peerId, request));
        } finally {
          release();
        }
      } catch (error) {
        // Refusals for capacity and silent streams are what a flood looks like: kept out of the warnings.
        const quiet = error instanceof StreamLimitError || error instanceof FrameTimeoutError;
        const fields = { peer: peerId, error: describeError(error).split("\n")[0] };
        if (quiet) logger.debug("stream refused", fields);
        else logger.warn("stream refused", fields);
        throw error;
      }
    },
  });
  return {
    activeStreams: () => admission.counts().serving,
    pendingStreams: () => admission.counts().pending,
  };
}
