/**
 * The frame-stream skeleton every Mycel wire protocol is built on: a server that gives each inbound stream a
 * frame channel, answers what its handler throws with an error frame and always closes the stream; a client that
 * opens a stream, hands over its channel and closes it; and {@link WireError}, an error frame received.
 *
 * @example
 * ```ts
 * await serveFramed({ node }, { protocol: "/mycel/x/1.0.0", limits, serve: async (channel, peerId) => {
 *   const ask = await channel.read({ timeoutMs: limits.firstFrameTimeoutMs });
 *   await channel.write(answerTo(ask));
 * } });
 * const answer = await withFramedStream({ node }, { peerId, protocol: "/mycel/x/1.0.0", timeoutMs: 10_000 },
 *   async (channel) => { await channel.write(ask); return readReply(channel, answerSchema, { timeoutMs: 10_000 }); });
 * ```
 */
import type { z } from "zod";
import { describeError, MycelError, type MycelErrorParameters } from "../../errors/index.ts";
import { type Logger, silentLogger } from "../../log/index.ts";
import {
  createFrameChannel,
  type FrameChannel,
  type InboundStreamSource,
  type MycelNode,
} from "../../p2p/index.ts";
import {
  buildErrorFrame,
  type ErrorFrame,
  errorFrameSchema,
  parseFrame,
  toWireErrorCode,
  type WireErrorKind,
  wireErrorKindOf,
} from "../../protocol/index.ts";

/** What the wire protocols need of a node: serve a protocol, open a stream (a test may give an in-memory pair). */
export type FramedNode = Pick<MycelNode, "handleProtocol" | "openStream">;

/** What every protocol service is built with. */
export type FramedComponents = { node: FramedNode; logger?: Logger };

/** The limits every served protocol names. */
export type FramedServerLimits = {
  /** Largest frame either side may send, in bytes of JSON. */
  maxFrameBytes: number;
  /** Inbound streams of this protocol one connection may hold at once (libp2p resets the ones beyond). */
  maxInboundStreams: number;
};

/** An error frame a peer sent back: its code, what the code means, and when to ask again. */
export class WireError extends MycelError {
  override name = "WireError";
  /** What the code tells the asker (see protocol/wireErrors.ts). */
  readonly kind: WireErrorKind;
  /** When the peer said to ask again, if it did. */
  readonly retryAfterMs: number | undefined;
  /** The peer's own words. */
  readonly peerMessage: string;
  constructor(frame: ErrorFrame, parameters: MycelErrorParameters = {}) {
    super(`${frame.code}: ${frame.message}`, { code: frame.code, ...parameters });
    this.kind = wireErrorKindOf(frame.code);
    this.retryAfterMs = frame.retry_after_ms;
    this.peerMessage = frame.message;
  }
}

/** A stream that ended before the one reply it should carry. */
export class NoReplyError extends MycelError {
  override name = "NoReplyError";
  constructor(protocol: string) {
    super(`the peer closed the ${protocol} stream without an answer`, {
      code: "stream_closed",
      hint: "the peer may have restarted or does not speak this protocol: retry, or ask another peer",
    });
  }
}

/** How long to wait before asking again, as an error says it (QueueFullError, VoucherRejectedError...). */
function retryAfterMsOf(error: unknown): number | undefined {
  if (!(error instanceof MycelError)) return undefined;
  const fields = error as MycelError & { retryAfterMs?: unknown; retryAfterSeconds?: unknown };
  if (typeof fields.retryAfterMs === "number") return fields.retryAfterMs;
  if (typeof fields.retryAfterSeconds === "number") return fields.retryAfterSeconds * 1000;
  return undefined;
}

/** The error frame that tells a peer about `error`: its wire code (internal_error for anything else), message and retry. */
export function errorFrameOf(error: unknown): ErrorFrame {
  return buildErrorFrame({
    code: toWireErrorCode(error instanceof MycelError ? error.code : undefined),
    message: describeError(error),
    retryAfterMs: retryAfterMsOf(error),
  });
}

/** Parameters of {@link serveFramed}. */
export type ServeFramedParameters = {
  protocol: string;
  limits: FramedServerLimits;
  /** Serve it over relayed (limited) connections too (docs/PROTOCOL.md, "Relays"); default false. */
  runOnLimitedConnection?: boolean;
  /**
   * Serves one stream. What it throws is sent to the peer as an error frame ({@link errorFrameOf}); the stream is
   * closed after it settles either way. `source` says where the stream comes from, when the node knows.
   */
  serve: (channel: FrameChannel, peerId: string, source: InboundStreamSource | undefined) => Promise<void>;
};

/** Serves a protocol on the node: one frame channel per inbound stream, errors answered, every stream closed. */
export async function serveFramed(
  components: FramedComponents,
  parameters: ServeFramedParameters,
): Promise<void> {
  const logger = components.logger ?? silentLogger;
  const { protocol, limits } = parameters;
  await components.node.handleProtocol(
    protocol,
    async (stream, peerId, source) => {
      const channel = createFrameChannel(stream, { maxFrameBytes: limits.maxFrameBytes });
      try {
        await parameters.serve(channel, peerId, source);
      } catch (error) {
        logger.debug("request refused", {
          protocol,
          peer: peerId,
          error: describeError(error).split("\n")[0],
        });
        await channel.write(errorFrameOf(error)).catch(() => undefined);
      } finally {
        await channel.close().catch(() => undefined);
      }
    },
    {
      maxInboundStreams: limits.maxInboundStreams,
      runOnLimitedConnection: parameters.runOnLimitedConnection,
    },
  );
}

/** Parameters of {@link withFramedStream}. */
export type WithFramedStreamParameters = {
  peerId: string;
  protocol: string;
  maxFrameBytes: number;
  /** Longest the stream may take to open (dial and protocol negotiation). */
  openTimeoutMs: number;
  /** Aborts opening the stream. */
  signal?: AbortSignal;
  /** Open it over a relayed (limited) connection when that is the only one; default false. */
  runOnLimitedConnection?: boolean;
};

/** Opens a stream of a protocol to a peer, hands its channel to `use`, and closes it when `use` settles. */
export async function withFramedStream<T>(
  components: FramedComponents,
  parameters: WithFramedStreamParameters,
  use: (channel: FrameChannel) => Promise<T>,
): Promise<T> {
  const channel = await openFramedChannel(components, parameters);
  try {
    return await use(channel);
  } finally {
    await channel.close().catch(() => undefined);
  }
}

/** Opens a stream of a protocol to a peer as a frame channel; the caller closes it. */
export async function openFramedChannel(
  components: FramedComponents,
  parameters: WithFramedStreamParameters,
): Promise<FrameChannel> {
  const timeout = AbortSignal.timeout(parameters.openTimeoutMs);
  const stream = await components.node.openStream(parameters.peerId, parameters.protocol, {
    signal: parameters.signal ? AbortSignal.any([parameters.signal, timeout]) : timeout,
    runOnLimitedConnection: parameters.runOnLimitedConnection,
  });
  return createFrameChannel(stream, { maxFrameBytes: parameters.maxFrameBytes });
}

/**
 * Reads the one reply a request expects: the frame parsed with `schema`. An error frame throws {@link WireError},
 * a stream closed first throws {@link NoReplyError}, a malformed frame throws ProtocolError.
 */
export async function readReply<T>(
  channel: FrameChannel,
  schema: z.ZodType<T>,
  parameters: { protocol: string; timeoutMs: number; signal?: AbortSignal },
): Promise<T> {
  const value = await channel.read({ timeoutMs: parameters.timeoutMs, signal: parameters.signal });
  if (value === undefined) throw new NoReplyError(parameters.protocol);
  const refused = errorFrameSchema.safeParse(value);
  if (refused.success) throw new WireError(refused.data);
  return parseFrame(schema, value);
}
