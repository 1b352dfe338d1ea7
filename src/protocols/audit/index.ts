/**
 * `/mycel/audit/1.0.0`: a gateway hands a validator an answer to audit, signed by the receipt's client; the
 * validator takes it (`audit_accepted`) or refuses it with an error frame, and audits it later.
 *
 * @example
 * ```ts
 * await serveAuditSamples({ node }, { accept: async (sample, peerId) => queue.add(sample, peerId) });
 * await sendAuditSample({ node }, { validatorPeerId, sample: await signAuditSample({ privateKey, sample }) });
 * ```
 */
export { type SendAuditSampleParameters, sendAuditSample } from "./client.ts";
export { type AuditSampleLimits, auditProtocolId, defaultAuditSampleLimits } from "./constants.ts";
export { type ServeAuditSamplesParameters, serveAuditSamples } from "./server.ts";
