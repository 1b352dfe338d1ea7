/** Name and limits of `/mycel/verdict/1.0.0`, on which a validator hands its verdict back to the sampling gateway. */
import { streamLimits, verdictProtocolId } from "../../protocol/index.ts";

export { verdictProtocolId };

/** Limits of the verdict protocol. */
export type VerdictLimits = {
  /** Largest frame, in bytes of JSON. */
  maxFrameBytes: number;
  /** Verdicts one connection may be sending at once to a gateway. */
  maxInboundStreams: number;
  /** Longest a gateway waits for the verdict frame. */
  verdictTimeoutMs: number;
  /** Longest a validator waits to open the stream to the gateway. */
  openTimeoutMs: number;
};

/** Defaults of the verdict protocol. */
export const defaultVerdictLimits: VerdictLimits = {
  maxFrameBytes: streamLimits.maxFrameBytes,
  maxInboundStreams: 8,
  verdictTimeoutMs: 10_000,
  openTimeoutMs: 10_000,
};

/** Whether this protocol runs over relayed (limited) connections: yes, so a gateway at home hears its verdicts through a relay (one bounded frame) (docs/PROTOCOL.md, "Relays"). */
export const verdictRunsOnLimitedConnection = true;
