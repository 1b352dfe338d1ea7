/** Name and limits of `/mycel/infer/1.0.0`, the inference stream between a gateway and a provider. */
import { inferenceProtocolId, streamLimits } from "../../protocol/index.ts";

export { inferenceProtocolId };

/** Limits of the inference protocol, on the provider's side. */
export type InferenceLimits = {
  /** Largest frame, in bytes of JSON. */
  maxFrameBytes: number;
  /** Most prompt tokens (prompt + continuation prefix) a provider evaluates for one request. */
  maxPromptTokens: number;
  /** Inference streams one peer may hold open on a provider at once. */
  maxStreamsPerPeer: number;
  /** Inbound inference streams a provider serves at once, from all peers. */
  maxInboundStreams: number;
  /** Longest wait for a stream's request frame before the stream is dropped. */
  idleTimeoutMs: number;
  /** Longest a whole request may take. */
  totalTimeoutMs: number;
};

/** Defaults of the inference protocol (the wire limits of docs/PROTOCOL.md). */
export const defaultInferenceLimits: InferenceLimits = {
  maxFrameBytes: streamLimits.maxFrameBytes,
  maxPromptTokens: streamLimits.maxPromptTokens,
  maxStreamsPerPeer: streamLimits.maxStreamsPerPeer,
  maxInboundStreams: streamLimits.maxInboundStreams,
  idleTimeoutMs: streamLimits.idleTimeoutMs,
  totalTimeoutMs: streamLimits.totalTimeoutMs,
};

/** Most tokens a provider puts in one chunk frame (the schema allows 64). */
export const maxTokensPerChunk = 32;

/** How long a busy provider asks a refused peer to wait before asking again. */
export const busyRetryAfterMs = 1_000;
