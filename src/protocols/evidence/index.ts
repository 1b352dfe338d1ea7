/**
 * `/mycel/evidence/1.0.0`: a provider hands out the evidence of its answers (fingerprints, tokens, request and
 * receipt) to the request's client, and to validators showing an audit sample the client signed.
 *
 * @example
 * ```ts
 * await serveEvidence({ node }, { lookup: (id) => store.get(id), retentionMs });
 * const frame = await fetchEvidence({ node }, { providerPeerId, requestId }); // as the client
 * const audited = await fetchEvidence({ node }, { providerPeerId, requestId, sample }); // as a validator
 * ```
 */
export { EvidenceUnavailableError, type FetchEvidenceParameters, fetchEvidence } from "./client.ts";
export { defaultEvidenceLimits, type EvidenceLimits, evidenceProtocolId } from "./constants.ts";
export {
  evidenceForAsker,
  type KeptEvidence,
  type ServeEvidenceParameters,
  serveEvidence,
} from "./server.ts";
