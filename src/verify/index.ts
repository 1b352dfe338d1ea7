/** The verify part: auditing answers against their evidence with the claimed model, and the calibrated tolerances. */
export {
  type AuditAnswerParameters,
  type AuditMetrics,
  type AuditReason,
  type AuditReasonCode,
  type AuditVerdict,
  auditAnswer,
} from "./audit.ts";
export { type Auditor, type CreateAuditorParameters, createAuditor, parseAuditInput } from "./auditor.ts";
export {
  type AuditTolerances,
  auditBatchSize,
  auditTolerances,
  impossibleLogprob,
  minChunkPositions,
  tolerancesFor,
} from "./tolerances.ts";
