import { describeError, MycelError, type MycelErrorParameters } from "../errors/index.ts";

/** A frame whose declared length exceeds the channel's `maxFrameBytes`; the stream is aborted. */
export class FrameTooLargeError extends MycelError {
  override name = "FrameTooLargeError";
  readonly frameBytes: number;
  readonly maxFrameBytes: number;
  constructor(parameters: { frameBytes: number; maxFrameBytes: number; direction: "inbound" | "outbound" }) {
    super(
      `${parameters.direction === "inbound" ? "received" : "refused to send"} a ${parameters.frameBytes}-byte frame, over the ${parameters.maxFrameBytes}-byte limit`,
      {
        code: "frame_too_large",
        hint:
          parameters.direction === "inbound"
            ? "the peer sent more than this protocol allows: upgrade or stop using that peer, or raise maxFrameBytes if the limit is too small"
            : "send smaller messages (split them), or raise maxFrameBytes on both ends",
      },
    );
    this.frameBytes = parameters.frameBytes;
    this.maxFrameBytes = parameters.maxFrameBytes;
  }
}

/** A frame that is not valid UTF-8 JSON, or a stream that ended in the middle of a frame. */
export class FrameDecodeError extends MycelError {
  override name = "FrameDecodeError";
  constructor(shortMessage: string, parameters: MycelErrorParameters = {}) {
    super(shortMessage, {
      code: "frame_decode_failed",
      hint: "the peer speaks another version of the protocol or is faulty: upgrade it or stop using it",
      ...parameters,
    });
  }
}

/** No frame arrived within the `timeoutMs` of a read; the channel is still usable. */
export class FrameTimeoutError extends MycelError {
  override name = "FrameTimeoutError";
  readonly timeoutMs: number;
  constructor(parameters: { timeoutMs: number }) {
    super(`no frame arrived within ${parameters.timeoutMs} ms`, {
      code: "frame_timeout",
      hint: "the peer is slow or gone: retry with a longer timeout, or use another peer",
    });
    this.timeoutMs = parameters.timeoutMs;
  }
}

/** A peer that could not be reached, or that refused the protocol. */
export class PeerDialError extends MycelError {
  override name = "PeerDialError";
  readonly peerId: string;
  constructor(parameters: { peerId: string; protocol?: string; cause: unknown }) {
    super(
      `could not open ${parameters.protocol ? `a ${parameters.protocol} stream to` : "a connection to"} peer ${parameters.peerId}`,
      {
        code: "peer_dial_failed",
        details: describeError(parameters.cause),
        hint: "the peer may be offline, unreachable from here, or not serve this protocol: try another peer, or check its addresses and firewall",
        cause: parameters.cause,
      },
    );
    this.peerId = parameters.peerId;
  }
}

/** A DHT provide that reached no peer: the record is only stored locally. */
export class ModelProvideError extends MycelError {
  override name = "ModelProvideError";
  readonly modelHash: string;
  constructor(parameters: { modelHash: string; cause?: unknown }) {
    super(`could not announce model ${parameters.modelHash} to any DHT peer`, {
      code: "model_provide_failed",
      details: parameters.cause === undefined ? undefined : describeError(parameters.cause),
      hint: "connect to the network first (check --bootstrap addresses and that the bootstrap peer runs), then provide again",
      cause: parameters.cause,
    });
    this.modelHash = parameters.modelHash;
  }
}

/** A frame channel whose stream was reset or closed under it: nothing more can be read or written. */
export class FrameStreamClosedError extends MycelError {
  override name = "FrameStreamClosedError";
  constructor(parameters: { shortMessage?: string; cause?: unknown } = {}) {
    super(parameters.shortMessage ?? "the peer reset the stream", {
      code: "stream_closed",
      details: parameters.cause === undefined ? undefined : describeError(parameters.cause),
      hint: "the peer went away or gave up on the request: open a new stream, or try another peer",
      cause: parameters.cause,
    });
  }
}

/** A frame channel used in a way it does not support, such as two reads at once (a bug in the caller). */
export class FrameUsageError extends MycelError {
  override name = "FrameUsageError";
  constructor(shortMessage: string) {
    super(shortMessage, {
      code: "frame_channel_misuse",
      hint: "await each read() before starting the next one; use one channel per stream",
    });
  }
}
