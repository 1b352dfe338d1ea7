/** Fetching an answer's evidence from the provider that served it, over `/mycel/evidence/1.0.0`. */
import type { Hex } from "viem";
import { MycelError } from "../errors/index.ts";
import { createFrameChannel, type MycelNode } from "../p2p/index.ts";
import {
  type EvidenceFrame,
  errorFrameSchema,
  evidenceFrameSchema,
  evidenceProtocolId,
  parseFrame,
  streamLimits,
  wireVersion,
} from "../protocol/index.ts";

/** The provider did not hand over evidence (unreachable, refused, or it has none). */
export class EvidenceUnavailableError extends MycelError {
  override name = "EvidenceUnavailableError";
}

/** Asks a provider for the evidence of a request; throws {@link EvidenceUnavailableError} if it does not give it. */
export async function fetchEvidence(parameters: {
  node: MycelNode;
  providerPeerId: string;
  requestId: Hex;
  timeoutMs?: number;
}): Promise<EvidenceFrame> {
  const timeoutMs = parameters.timeoutMs ?? 10_000;
  let value: unknown;
  try {
    const stream = await parameters.node.openStream(parameters.providerPeerId, evidenceProtocolId, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    const channel = createFrameChannel(stream, { maxFrameBytes: streamLimits.maxFrameBytes });
    try {
      await channel.write({ v: wireVersion, type: "evidence_request", request_id: parameters.requestId });
      value = await channel.read({ timeoutMs });
    } finally {
      await channel.close().catch(() => undefined);
    }
  } catch (cause) {
    throw new EvidenceUnavailableError(`cannot reach provider ${parameters.providerPeerId} for evidence`, {
      code: "evidence_unavailable",
      details: cause instanceof Error ? cause.message : String(cause),
      cause,
    });
  }
  if (value === undefined)
    throw new EvidenceUnavailableError("the provider closed the stream without evidence", {
      code: "evidence_unavailable",
    });
  const refused = errorFrameSchema.safeParse(value);
  if (refused.success)
    throw new EvidenceUnavailableError(`${refused.data.code}: ${refused.data.message}`, {
      code: "evidence_unavailable",
    });
  return parseFrame(evidenceFrameSchema, value);
}
