/** The gateway's side of `/mycel/infer/1.0.0`: one request to one provider, its frames read with deadlines. */
import type { FrameChannel } from "../../p2p/index.ts";
import {
  type ChunkFrame,
  type EmbeddingFrame,
  type EndFrame,
  errorFrameSchema,
  type LogprobsFrame,
  type PaidFrame,
  parseFrame,
  providerFrameSchema,
  type RequestFrame,
  type VoucherFrame,
  wireVersion,
} from "../../protocol/index.ts";
import { type FramedComponents, openFramedChannel, WireError } from "../framed/index.ts";
import { defaultInferenceLimits, inferenceProtocolId, inferRunsOnLimitedConnection } from "./constants.ts";

/** What the provider sends on an inference stream, but errors (those throw {@link WireError}). */
export type InferenceReply = ChunkFrame | EmbeddingFrame | PaidFrame | LogprobsFrame | EndFrame;

/** A request open on a provider. */
export type InferenceCall = {
  /**
   * The provider's next frame within `timeoutMs`, or undefined once it closed the stream. An error frame throws
   * {@link WireError}; a malformed frame throws ProtocolError; a silent or broken stream throws the read's error.
   */
  next(parameters: { timeoutMs: number; signal?: AbortSignal }): Promise<InferenceReply | undefined>;
  /** Sends a voucher on the stream. */
  sendVoucher(frame: VoucherFrame): Promise<void>;
  /** Tells the provider to stop and closes the stream (resets it if that fails). */
  cancel(): void;
  /** Closes this side; the provider's last frames can still be read. */
  close(): Promise<void>;
  /** Resets the stream at once: nothing more is read or buffered (a provider that broke the protocol). */
  abort(reason: Error): void;
};

/** Parameters of {@link callInference}. */
export type CallInferenceParameters = {
  providerPeerId: string;
  /** The request frame's fields (the version and type are added). */
  request: Omit<RequestFrame, "v" | "type">;
  /** Longest the stream may take to open. */
  openTimeoutMs: number;
  /** Aborts opening the stream. */
  signal?: AbortSignal;
  maxFrameBytes?: number;
};

function callOf(channel: FrameChannel): InferenceCall {
  return {
    async next(parameters) {
      const value = await channel.read(parameters);
      if (value === undefined) return undefined;
      const refused = errorFrameSchema.safeParse(value);
      if (refused.success) throw new WireError(refused.data);
      return parseFrame(providerFrameSchema, value) as InferenceReply;
    },
    sendVoucher: (frame) => channel.write(frame),
    cancel() {
      channel
        .write({ v: wireVersion, type: "cancel" })
        .then(() => channel.close())
        .catch(() => channel.abort(new Error("cancelled")));
    },
    close: () => channel.close(),
    abort: (reason) => channel.abort(reason),
  };
}

/** Opens an inference stream to a provider and sends the request frame. */
export async function callInference(
  components: FramedComponents,
  parameters: CallInferenceParameters,
): Promise<InferenceCall> {
  const channel = await openFramedChannel(components, {
    peerId: parameters.providerPeerId,
    protocol: inferenceProtocolId,
    runOnLimitedConnection: inferRunsOnLimitedConnection,
    maxFrameBytes: parameters.maxFrameBytes ?? defaultInferenceLimits.maxFrameBytes,
    openTimeoutMs: parameters.openTimeoutMs,
    signal: parameters.signal,
  });
  await channel.write({ v: wireVersion, type: "request", ...parameters.request });
  return callOf(channel);
}
