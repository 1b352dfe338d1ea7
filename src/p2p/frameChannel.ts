import "./polyfills.ts";
import type { AbortOptions, Stream, StreamCloseEvent, StreamMessageEvent } from "@libp2p/interface";
import { InvalidInputError } from "../errors/index.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "./constants.ts";
import {
  FrameDecodeError,
  FrameStreamClosedError,
  FrameTimeoutError,
  FrameTooLargeError,
  FrameUsageError,
} from "./errors.ts";

/** Parameters of {@link createFrameChannel}. */
export type CreateFrameChannelParameters = {
  /** The largest JSON payload (UTF-8 bytes, without the length prefix) either side may send; default 1 MiB. */
  maxFrameBytes?: number;
};

/** Parameters of {@link FrameChannel.read}. */
export type ReadFrameParameters = {
  /** Aborts the read; the channel stays usable. */
  signal?: AbortSignal;
  /** Throws {@link FrameTimeoutError} when no whole frame arrived within this many ms; the channel stays usable. */
  timeoutMs?: number;
};

/** Parameters of {@link FrameChannel.write}. */
export type WriteFrameParameters = {
  /** Aborts the wait for the stream to drain (the frame itself is already queued). */
  signal?: AbortSignal;
};

/** JSON messages over a libp2p stream, one per unsigned-varint length-prefixed frame. */
export type FrameChannel = {
  /** Sends one value as a JSON frame; waits while the stream is congested. */
  write(value: unknown, parameters?: WriteFrameParameters): Promise<void>;
  /** Reads the next frame's JSON value; `undefined` once the peer closed its side cleanly at a frame boundary. */
  read(parameters?: ReadFrameParameters): Promise<unknown>;
  /** Closes this side for writing once queued frames are sent; the peer's frames can still be read. */
  close(parameters?: AbortOptions): Promise<void>;
  /** Resets the stream at once: queued frames are dropped and pending reads reject with `error`. */
  abort(error: Error): void;
};

/** The longest unsigned varint accepted as a length prefix (2^63 needs 9 bytes; anything past the limit fails sooner). */
const MAX_LENGTH_PREFIX_BYTES = 9;

/** Encodes `value` as an unsigned LEB128 varint (the length prefix of libp2p's length-prefixed streams). */
function encodeLengthPrefix(value: number): Uint8Array {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
  return Uint8Array.from(bytes);
}

/**
 * Wraps a stream in a channel of length-prefixed JSON frames. Create one channel per stream: it takes over the
 * stream's incoming data. Frames over `maxFrameBytes` are refused both ways; an oversize or malformed length
 * prefix resets the stream, a frame that is not JSON only fails that one read.
 */
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a channel is one closure over its stream's buffer; reading, writing and framing share that buffer and are split into named functions inside
export function createFrameChannel(
  stream: Stream,
  parameters: CreateFrameChannelParameters = {},
): FrameChannel {
  const maxFrameBytes = parameters.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 1) {
    throw new InvalidInputError(`maxFrameBytes must be a positive integer, got ${maxFrameBytes}`, {
      param: "maxFrameBytes",
      hint: "pass a byte count such as 1048576",
    });
  }
  const textEncoder = new TextEncoder();
  const textDecoder = new TextDecoder("utf-8", { fatal: true });
  // Pause the stream (yamux then stops granting the peer send window) once a whole frame is buffered.
  const pauseAtBufferedBytes = maxFrameBytes + MAX_LENGTH_PREFIX_BYTES;

  const chunks: Uint8Array[] = [];
  let bufferedBytes = 0;
  /** An error after which no frame can be read any more (set by `abort` or a broken length prefix). */
  let fatalError: Error | undefined;
  /** Why the stream closed, if it closed with an error; reported once the buffered frames are read. */
  let closeFailure: FrameStreamClosedError | undefined;
  let wakeReader: (() => void) | undefined;
  let readInProgress = false;

  const wake = () => {
    const wakeNow = wakeReader;
    wakeReader = undefined;
    wakeNow?.();
  };

  stream.addEventListener("message", (event: StreamMessageEvent) => {
    const chunk = event.data.subarray();
    if (chunk.byteLength === 0 || fatalError) return;
    chunks.push(chunk);
    bufferedBytes += chunk.byteLength;
    if (bufferedBytes >= pauseAtBufferedBytes && stream.readStatus === "readable") stream.pause();
    wake();
  });
  stream.addEventListener("remoteCloseWrite", wake);
  stream.addEventListener("close", (event: StreamCloseEvent) => {
    if (event.error) {
      closeFailure ??= new FrameStreamClosedError({
        shortMessage: event.local ? "the stream was aborted on this side" : "the peer reset the stream",
        cause: event.error,
      });
    }
    wake();
  });

  /** Copies the first `count` buffered bytes into one array without consuming them. */
  const peekBytes = (count: number): Uint8Array => {
    const first = chunks[0];
    if (first && first.byteLength >= count) return first.subarray(0, count);
    const out = new Uint8Array(count);
    let offset = 0;
    for (const chunk of chunks) {
      if (offset >= count) break;
      const take = Math.min(chunk.byteLength, count - offset);
      out.set(chunk.subarray(0, take), offset);
      offset += take;
    }
    return out;
  };

  /** Removes the first `count` buffered bytes. */
  const consumeBytes = (count: number) => {
    let rest = count;
    while (rest > 0) {
      const first = chunks[0];
      if (!first) break;
      if (first.byteLength <= rest) {
        chunks.shift();
        rest -= first.byteLength;
      } else {
        chunks[0] = first.subarray(rest);
        rest = 0;
      }
    }
    bufferedBytes -= count;
  };

  const failFatally = (error: Error): never => {
    fatalError ??= error;
    chunks.length = 0;
    bufferedBytes = 0;
    stream.abort(error);
    throw error;
  };

  /** Returns the payload of the next whole buffered frame, or undefined when more bytes are needed. */
  const takeBufferedFrame = (): Uint8Array | undefined => {
    const prefix = peekBytes(Math.min(bufferedBytes, MAX_LENGTH_PREFIX_BYTES));
    let frameBytes = 0;
    let multiplier = 1;
    for (let index = 0; index < prefix.byteLength; index++) {
      const byte = prefix[index] as number;
      frameBytes += (byte & 0x7f) * multiplier;
      multiplier *= 0x80;
      if (frameBytes > maxFrameBytes) {
        return failFatally(new FrameTooLargeError({ frameBytes, maxFrameBytes, direction: "inbound" }));
      }
      if ((byte & 0x80) === 0) {
        const prefixBytes = index + 1;
        if (bufferedBytes < prefixBytes + frameBytes) return undefined;
        const payload = peekBytes(prefixBytes + frameBytes).subarray(prefixBytes);
        consumeBytes(prefixBytes + frameBytes);
        return payload;
      }
    }
    if (prefix.byteLength >= MAX_LENGTH_PREFIX_BYTES) {
      return failFatally(new FrameDecodeError("the frame's length prefix is not a valid varint"));
    }
    return undefined;
  };

  const decodeFrame = (payload: Uint8Array): unknown => {
    let text: string;
    try {
      text = textDecoder.decode(payload);
    } catch (error) {
      throw new FrameDecodeError("a frame is not valid UTF-8", { cause: error });
    }
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new FrameDecodeError("a frame is not valid JSON", {
        details: `first bytes: ${JSON.stringify(text.slice(0, 80))}`,
        cause: error,
      });
    }
  };

  const remoteFinished = () => stream.remoteWriteStatus === "closed" && stream.readBufferLength === 0;

  /** Resolves on the next stream event, or rejects when the signal aborts or the deadline passes. */
  const waitForActivity = (
    signal: AbortSignal | undefined,
    deadline: number | undefined,
    timeoutMs?: number,
  ) =>
    new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanUp = () => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        wakeReader = undefined;
      };
      const onAbort = () => {
        cleanUp();
        reject(signal?.reason);
      };
      wakeReader = () => {
        cleanUp();
        resolve();
      };
      if (signal) signal.addEventListener("abort", onAbort, { once: true });
      if (deadline !== undefined) {
        timer = setTimeout(
          () => {
            cleanUp();
            reject(new FrameTimeoutError({ timeoutMs: timeoutMs ?? 0 }));
          },
          Math.max(0, deadline - Date.now()),
        );
      }
    });

  const read = async (readParameters: ReadFrameParameters = {}): Promise<unknown> => {
    const { signal, timeoutMs } = readParameters;
    if (readInProgress) {
      throw new FrameUsageError("read() was called while another read() on the same channel is pending");
    }
    readInProgress = true;
    try {
      signal?.throwIfAborted();
      const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
      while (true) {
        if (fatalError) throw fatalError;
        const payload = takeBufferedFrame();
        if (payload) {
          if (stream.readStatus === "paused" && bufferedBytes < pauseAtBufferedBytes) stream.resume();
          return decodeFrame(payload);
        }
        // More bytes are needed: let the peer send them.
        if (stream.readStatus === "paused") stream.resume();
        if (closeFailure && stream.readBufferLength === 0) throw closeFailure;
        if (remoteFinished()) {
          if (bufferedBytes === 0) return undefined;
          throw new FrameDecodeError("the stream ended in the middle of a frame", {
            details: `${bufferedBytes} bytes of an unfinished frame were left`,
          });
        }
        await waitForActivity(signal, deadline, timeoutMs);
      }
    } finally {
      readInProgress = false;
    }
  };

  const write = async (value: unknown, writeParameters: WriteFrameParameters = {}): Promise<void> => {
    let json: string | undefined;
    try {
      json = JSON.stringify(value);
    } catch (error) {
      throw new InvalidInputError("the value cannot be encoded as JSON", {
        details: error instanceof Error ? error.message : String(error),
        hint: "send plain objects, arrays, strings, numbers, booleans and null (no BigInt, no cycles)",
        cause: error,
      });
    }
    if (json === undefined) {
      throw new InvalidInputError("the value cannot be encoded as JSON", {
        details: `JSON.stringify returned nothing for a ${typeof value}`,
        hint: "send plain objects, arrays, strings, numbers, booleans and null",
      });
    }
    const payload = textEncoder.encode(json);
    if (payload.byteLength > maxFrameBytes) {
      throw new FrameTooLargeError({ frameBytes: payload.byteLength, maxFrameBytes, direction: "outbound" });
    }
    const prefix = encodeLengthPrefix(payload.byteLength);
    const frame = new Uint8Array(prefix.byteLength + payload.byteLength);
    frame.set(prefix, 0);
    frame.set(payload, prefix.byteLength);
    if (stream.writableNeedsDrain) await stream.onDrain({ signal: writeParameters.signal });
    if (fatalError || closeFailure || stream.writeStatus !== "writable") {
      throw new FrameStreamClosedError({
        shortMessage: `cannot write a frame: the stream is ${stream.writeStatus === "writable" ? stream.status : `${stream.writeStatus} for writing`}`,
        cause: fatalError ?? closeFailure?.cause,
      });
    }
    if (!stream.send(frame)) await stream.onDrain({ signal: writeParameters.signal });
  };

  return {
    write,
    read,
    close: async (closeParameters?: AbortOptions) => {
      if (stream.writeStatus !== "writable") return;
      await stream.close(closeParameters);
    },
    abort: (error: Error) => {
      fatalError ??= error;
      stream.abort(error);
      wake();
    },
  };
}
