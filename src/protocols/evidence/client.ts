/** The asker's side of `/mycel/evidence/1.0.0`: fetch an answer's evidence from the provider that served it. */
import type { Hex } from "viem";
import { describeError, MycelError } from "../../errors/index.ts";
import {
  type AuditSampleFrame,
  type EvidenceFrame,
  evidenceFrameSchema,
  wireVersion,
} from "../../protocol/index.ts";
import { type FramedComponents, readReply, withFramedStream } from "../framed/index.ts";
import {
  defaultEvidenceLimits,
  type EvidenceLimits,
  evidenceProtocolId,
  evidenceRunsOnLimitedConnection,
} from "./constants.ts";

/** The provider did not hand over evidence (unreachable, refused, or it has none). */
export class EvidenceUnavailableError extends MycelError {
  override name = "EvidenceUnavailableError";
}

/** Parameters of {@link fetchEvidence}. */
export type FetchEvidenceParameters = {
  providerPeerId: string;
  requestId: Hex;
  /**
   * The audit sample the request's client signed, shown by a validator: the provider hands evidence only to the
   * client itself (the stream's peer) or to the holder of such a sample.
   */
  sample?: AuditSampleFrame;
  /** Longest wait to open the stream, and then for the evidence (default 10 s). */
  timeoutMs?: number;
  limits?: Partial<EvidenceLimits>;
};

/** Asks a provider for the evidence of a request; throws {@link EvidenceUnavailableError} if it does not give it. */
export async function fetchEvidence(
  components: FramedComponents,
  parameters: FetchEvidenceParameters,
): Promise<EvidenceFrame> {
  const limits = { ...defaultEvidenceLimits, ...parameters.limits };
  const timeoutMs = parameters.timeoutMs ?? limits.replyTimeoutMs;
  try {
    return await withFramedStream(
      components,
      {
        peerId: parameters.providerPeerId,
        protocol: evidenceProtocolId,
        runOnLimitedConnection: evidenceRunsOnLimitedConnection,
        maxFrameBytes: limits.maxFrameBytes,
        openTimeoutMs: timeoutMs,
      },
      async (channel) => {
        await channel.write({
          v: wireVersion,
          type: "evidence_request",
          request_id: parameters.requestId,
          ...(parameters.sample ? { sample: parameters.sample } : {}),
        });
        return readReply(channel, evidenceFrameSchema, { protocol: evidenceProtocolId, timeoutMs });
      },
    );
  } catch (cause) {
    throw new EvidenceUnavailableError(
      `provider ${parameters.providerPeerId} did not hand over evidence: ${describeError(cause).split("\n")[0]}`,
      { code: "evidence_unavailable", details: describeError(cause), cause },
    );
  }
}
