/** Protocol names, versions and limits shared by providers and gateways. */

/** The libp2p protocol of inference streams. */
export const inferenceProtocolId = "/mycel/infer/1.0.0";
/** The libp2p protocol on which providers hand out the evidence of their answers. */
export const evidenceProtocolId = "/mycel/evidence/1.0.0";
/** The libp2p protocol on which validators take audit samples from gateways. */
export const auditProtocolId = "/mycel/audit/1.0.0";
/** The libp2p protocol on which a validator hands its verdict on a sample back to the gateway that sent it. */
export const verdictProtocolId = "/mycel/verdict/1.0.0";
/** The libp2p protocol on which a provider hands its latest signed announcement to a peer that just connected. */
export const announcementProtocolId = "/mycel/announcement/1.0.0";
/** The libp2p protocol on which a node hands every current verified announcement it holds to a peer (a gateway starting). */
export const announcementSnapshotProtocolId = "/mycel/announcements/1.0.0";
/**
 * The gossipsub topic of provider announcements. Version 2: messages unsigned by libp2p (StrictNoSign), each announcement
 * signed by its provider; version-1 nodes (libp2p-signed gossip) refuse them, and the new name keeps them apart.
 */
export const announcementTopic = "mycel/announce/2";
/** The version carried in every frame (`v`) and announcement. */
export const wireVersion = 1;

/** Limits every inference stream is held to (both sides). */
export const streamLimits = {
  /** Largest frame, in bytes of JSON. */
  maxFrameBytes: 1024 * 1024,
  /** Most prompt tokens (prompt + continuation prefix) a provider evaluates for one request. */
  maxPromptTokens: 16_384,
  /** Longest text field (prompt or all message contents together), in characters. */
  maxPromptCharacters: 512 * 1024,
  /** Most messages in one chat request. */
  maxMessages: 1024,
  /** Inference streams one peer may have served by a provider at once. */
  maxStreamsPerPeer: 8,
  /** Inference streams a provider serves at once, from all peers. */
  maxInboundStreams: 64,
  /** Of those, how many peers the provider does not know yet (no funded channel, no request served) share. */
  maxStrangerStreams: 16,
  /** Inference streams one connection may have open at once (libp2p resets the ones beyond). */
  maxStreamsPerConnection: 16,
  /** Streams waiting for their request frame, from all peers (they take no serving capacity). */
  maxPendingStreams: 64,
  /** Streams one peer may have waiting for their request frame. */
  maxPendingStreamsPerPeer: 4,
  /** Streams of strangers from one host (IP address) waiting for their request frame. */
  maxPendingStreamsPerHost: 16,
  /** Longest wait for a stream's request frame before the stream is dropped (a gateway sends it at once). */
  firstFrameTimeoutMs: 2_000,
  /** Longest a whole request may take. */
  totalTimeoutMs: 10 * 60_000,
} as const;

/**
 * What a gateway accepts on one inference segment (docs/PROTOCOL.md): a provider that sends more broke the protocol.
 * Tokens are capped by the request's `max_tokens` (else the model's context size); text by these.
 */
export const segmentLimits = {
  /** Chunk text, in UTF-8 bytes per output token so far (a token's piece is a few bytes; invalid UTF-8 at most triples it). */
  maxTextBytesPerToken: 256,
  /** Text a chunk may carry beyond that (held-back text of a stop sequence or an unfinished character). */
  textBytesSlack: 4096,
  /** Text of one segment, in UTF-8 bytes, whatever its tokens. */
  maxSegmentTextBytes: 16 * 1024 * 1024,
  /** Frames beyond one per output token (acknowledgements, the end frame). */
  framesSlack: 64,
} as const;

/** How long a provider's announcement stays valid, and how often it is repeated. */
export const announcementTiming = {
  intervalMs: 5_000,
  ttlMs: 20_000,
  /** Announcements that claim to be valid for longer than this are refused. */
  maxTtlMs: 120_000,
  /** Clock skew tolerated on timestamps. */
  maxSkewMs: 30_000,
} as const;
