/** The provider's side of `/mycel/evidence/1.0.0`: one request frame in, the evidence (or an error) out. */
import type { Hex } from "viem";
import { MycelError } from "../../errors/index.ts";
import { ethereumAddressOfPeerId } from "../../p2p/index.ts";
import {
  canonicalJson,
  type EvidenceFrame,
  type EvidenceRequestFrame,
  evidenceRequestFrameSchema,
  parseFrame,
  recoverAuditSampleSigner,
  wireVersion,
} from "../../protocol/index.ts";
import { type FramedComponents, serveFramed } from "../framed/index.ts";
import {
  defaultEvidenceLimits,
  type EvidenceLimits,
  evidenceProtocolId,
  evidenceRunsOnLimitedConnection,
} from "./constants.ts";

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

/** Whether two signed receipts are the same receipt (same message, same signature; hex case aside). */
function sameReceipt(one: KeptEvidence["receipt"], other: KeptEvidence["receipt"]): boolean {
  return canonicalJson(one).toLowerCase() === canonicalJson(other).toLowerCase();
}

/**
 * The evidence the asker may have: the request's client (the stream's authenticated peer is the receipt's
 * `client`), or whoever shows an audit sample of this request and this receipt signed by that client. Undefined
 * otherwise, and when there is none: the two are not told apart.
 */
export async function evidenceForAsker(parameters: {
  ask: EvidenceRequestFrame;
  peerId: string;
  lookup: ServeEvidenceParameters["lookup"];
}): Promise<KeptEvidence | undefined> {
  const { ask, peerId } = parameters;
  // Recovered before the lookup, so that the answer takes as long whether or not the evidence exists.
  const sampleSigner = ask.sample
    ? await recoverAuditSampleSigner(ask.sample).catch(() => undefined)
    : undefined;
  const kept = parameters.lookup(ask.request_id as Hex);
  if (!kept) return undefined;
  const client = kept.receipt.message.client.toLowerCase();
  if (ethereumAddressOfPeerId(peerId)?.toLowerCase() === client) return kept;
  const sample = ask.sample;
  if (
    sample &&
    sampleSigner?.toLowerCase() === client &&
    sample.request_id.toLowerCase() === ask.request_id.toLowerCase() &&
    sameReceipt(sample.receipt as KeptEvidence["receipt"], kept.receipt)
  )
    return kept;
  return undefined;
}

/**
 * Hands out the evidence of a request to its client, and to validators showing an audit sample the client signed
 * ({@link evidenceForAsker}). Anyone else gets the answer a request without evidence gets: `evidence_not_found`.
 */
export async function serveEvidence(
  components: FramedComponents,
  parameters: ServeEvidenceParameters,
): Promise<void> {
  const limits = { ...defaultEvidenceLimits, ...parameters.limits };
  const keptHours = Math.round(parameters.retentionMs / 3600_000);
  await serveFramed(components, {
    protocol: evidenceProtocolId,
    runOnLimitedConnection: evidenceRunsOnLimitedConnection,
    limits,
    serve: async (channel, peerId) => {
      const value = await channel.read({ timeoutMs: limits.requestTimeoutMs });
      if (value === undefined) return;
      const ask = parseFrame(evidenceRequestFrameSchema, value);
      const kept = await evidenceForAsker({ ask, peerId, lookup: parameters.lookup });
      if (!kept)
        throw new MycelError(
          `no evidence of request ${ask.request_id} for this peer (evidence goes to the request's client, or to a validator showing an audit sample the client signed, and is kept ${keptHours} h)`,
          { code: "evidence_not_found" },
        );
      await channel.write({ v: wireVersion, type: "evidence", ...kept });
    },
  });
}
