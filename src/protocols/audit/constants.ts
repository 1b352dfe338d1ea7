/** Name and limits of `/mycel/audit/1.0.0`, on which gateways hand validators answers to audit. */
import { auditProtocolId, streamLimits } from "../../protocol/index.ts";

export { auditProtocolId };

/** Limits of the audit protocol. */
export type AuditSampleLimits = {
  /** Largest frame, in bytes of JSON. */
  maxFrameBytes: number;
  /** Samples one connection may be sending at once to a validator. */
  maxInboundStreams: number;
  /** Longest a validator waits for the sample frame. */
  sampleTimeoutMs: number;
  /** Longest a gateway waits to open the stream, and then for the validator's answer. */
  replyTimeoutMs: number;
};

/** Defaults of the audit protocol. */
export const defaultAuditSampleLimits: AuditSampleLimits = {
  maxFrameBytes: streamLimits.maxFrameBytes,
  maxInboundStreams: 16,
  sampleTimeoutMs: 15_000,
  replyTimeoutMs: 10_000,
};

/** Whether this protocol runs over relayed (limited) connections: yes, so a validator at home takes samples through a relay (one bounded sample, one reply) (docs/PROTOCOL.md, "Relays"). */
export const auditRunsOnLimitedConnection = true;
