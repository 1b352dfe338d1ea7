/** The provider's side of `/mycel/evidence/1.0.0`: one request frame in, the evidence (or an error) out. */
import type { Hex } from "viem";
import { MycelError } from "../../errors/index.ts";
import {
  type EvidenceFrame,
  evidenceRequestFrameSchema,
  parseFrame,
  wireVersion,
} from "../../protocol/index.ts";
import { type FramedComponents, serveFramed } from "../framed/index.ts";
import { defaultEvidenceLimits, type EvidenceLimits, evidenceProtocolId } from "./constants.ts";

/** Evidence kept for one request, as the provider hands it out. */
export type KeptEvidence = Omit<EvidenceFrame, "v" | "type">;

/** Parameters of {@link serveEvidence}. */
export type ServeEvidenceParameters = {
  /** The evidence of a request, or undefined when none is kept (never kept, or pruned). */
  lookup: (requestId: Hex) => KeptEvidence | undefined;
  /** How long evidence is kept, named in the answer when there is none. */
  retentionMs: number;
  limits?: Partial<EvidenceLimits>;
};

/**
 * Hands out evidence to whoever names the request id: 32 random bytes known only to the gateway that sent the
 * request and the validators it samples to.
 */
export async function serveEvidence(
  components: FramedComponents,
  parameters: ServeEvidenceParameters,
): Promise<void> {
  const limits = { ...defaultEvidenceLimits, ...parameters.limits };
  await serveFramed(components, {
    protocol: evidenceProtocolId,
    limits,
    serve: async (channel) => {
      const value = await channel.read({ timeoutMs: limits.requestTimeoutMs });
      if (value === undefined) return;
      const ask = parseFrame(evidenceRequestFrameSchema, value);
      const kept = parameters.lookup(ask.request_id as Hex);
      if (!kept)
        throw new MycelError(
          `no evidence of request ${ask.request_id} here (kept ${Math.round(parameters.retentionMs / 3600_000)} h)`,
          { code: "evidence_not_found" },
        );
      await channel.write({ v: wireVersion, type: "evidence", ...kept });
    },
  });
}
