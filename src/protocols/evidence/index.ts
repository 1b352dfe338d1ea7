/**
 * `/mycel/evidence/1.0.0`: a provider hands out the evidence of its answers (fingerprints, tokens, request and
 * receipt) to whoever names the request id; validators and gateways fetch it.
 *
 * @example
 * ```ts
 * await serveEvidence({ node }, { lookup: (id) => store.get(id), retentionMs });
 * const frame = await fetchEvidence({ node }, { providerPeerId, requestId });
 * ```
 */
export { EvidenceUnavailableError, type FetchEvidenceParameters, fetchEvidence } from "./client.ts";
export { defaultEvidenceLimits, type EvidenceLimits, evidenceProtocolId } from "./constants.ts";
export { type KeptEvidence, type ServeEvidenceParameters, serveEvidence } from "./server.ts";
