/** Name and limits of `/mycel/infer/1.0.0`, the inference stream between a gateway and a provider. */
import { inferenceProtocolId, streamLimits } from "../../protocol/index.ts";

export { inferenceProtocolId };

/** Limits of the inference protocol, on the provider's side. */
export type InferenceLimits = {
  /** Largest frame, in bytes of JSON. */
  maxFrameBytes: number;
  /** Most prompt tokens (prompt + continuation prefix) a provider evaluates for one request. */
  maxPromptTokens: number;
  /** Inference streams one peer may have served at once. */
  maxStreamsPerPeer: number;
  /** Inference streams a provider serves at once, from all peers. */
  maxInboundStreams: number;
  /** Of those, how many the peers a provider does not trust yet share (the rest is kept for the ones it does). */
  maxStrangerStreams: number;
  /** Inference streams one connection may have open at once, served or waiting (libp2p resets the ones beyond). */
  maxStreamsPerConnection: number;
  /** Streams waiting for their request frame, from all peers; they take no serving capacity. */
  maxPendingStreams: number;
  /** Streams one peer may have waiting for their request frame. */
  maxPendingStreamsPerPeer: number;
  /** Streams of untrusted peers from one host (IP address) waiting for their request frame. */
  maxPendingStreamsPerHost: number;
  /** Longest wait for a stream's request frame before the stream is dropped. */
  firstFrameTimeoutMs: number;
  /** Longest a whole request may take. */
  totalTimeoutMs: number;
};

/** Defaults of the inference protocol (the wire limits of docs/PROTOCOL.md). */
export const defaultInferenceLimits: InferenceLimits = {
  maxFrameBytes: streamLimits.maxFrameBytes,
  maxPromptTokens: streamLimits.maxPromptTokens,
  maxStreamsPerPeer: streamLimits.maxStreamsPerPeer,
  maxInboundStreams: streamLimits.maxInboundStreams,
  maxStrangerStreams: streamLimits.maxStrangerStreams,
  maxStreamsPerConnection: streamLimits.maxStreamsPerConnection,
  maxPendingStreams: streamLimits.maxPendingStreams,
  maxPendingStreamsPerPeer: streamLimits.maxPendingStreamsPerPeer,
  maxPendingStreamsPerHost: streamLimits.maxPendingStreamsPerHost,
  firstFrameTimeoutMs: streamLimits.firstFrameTimeoutMs,
  totalTimeoutMs: streamLimits.totalTimeoutMs,
};

/** Most tokens a provider puts in one chunk frame (the schema allows 64). */
export const maxTokensPerChunk = 32;

/** How long a busy provider asks a refused peer to wait before asking again. */
export const busyRetryAfterMs = 1_000;

/** Whether this protocol runs over relayed (limited) connections: yes, the inference stream must: a provider at home is reached through a relay until hole punching upgrades the connection, and the relay's limits end a stream the gateway then fails over (docs/PROTOCOL.md, "Relays"). */
export const inferRunsOnLimitedConnection = true;
