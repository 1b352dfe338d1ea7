/** Name and limits of `/mycel/evidence/1.0.0`, on which providers hand out the evidence of their answers. */
import { evidenceProtocolId, streamLimits } from "../../protocol/index.ts";

export { evidenceProtocolId };

/** Limits of the evidence protocol. */
export type EvidenceLimits = {
  /** Largest frame, in bytes of JSON (evidence of a long answer is large). */
  maxFrameBytes: number;
  /** Evidence requests one connection may have open at once on a provider. */
  maxInboundStreams: number;
  /** Longest a provider waits for the request frame. */
  requestTimeoutMs: number;
  /** Longest an asker waits to open the stream, and then for the evidence. */
  replyTimeoutMs: number;
};

/** Defaults of the evidence protocol. */
export const defaultEvidenceLimits: EvidenceLimits = {
  maxFrameBytes: streamLimits.maxFrameBytes,
  maxInboundStreams: 16,
  requestTimeoutMs: streamLimits.firstFrameTimeoutMs,
  replyTimeoutMs: 10_000,
};

/** Whether this protocol runs over relayed (limited) connections: yes, so a provider reachable only through a relay is audited like any other (one request, one bounded reply) (docs/PROTOCOL.md, "Relays"). */
export const evidenceRunsOnLimitedConnection = true;
