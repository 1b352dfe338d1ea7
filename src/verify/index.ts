/**
 * The verify part: auditing answers against their evidence with the claimed model, reading what `mycel audit` takes
 * (a saved API answer or the flat audit input), and the calibrated tolerances.
 */
export {
  type AuditAnswerParameters,
  type AuditMetrics,
  type AuditReason,
  type AuditReasonCode,
  type AuditVerdict,
  auditAnswer,
} from "./audit.ts";
export { type AuditInputsOfReturnType, auditInputsOf } from "./auditInputsOf.ts";
export { type Auditor, type CreateAuditorParameters, createAuditor, parseAuditInput } from "./auditor.ts";
export {
  type AnswerAuditVerdict,
  combineSegmentVerdicts,
  type SegmentAuditVerdict,
} from "./combineSegmentVerdicts.ts";
export { type ReEvaluationBatches, reEvaluationBatchesOf } from "./reEvaluation.ts";
export {
  type AuditTolerances,
  assumedDecoding,
  auditBatchSize,
  auditPrefillMaxBatchSize,
  auditTolerances,
  impossibleLogprob,
  minChunkPositions,
  tolerancesFor,
} from "./tolerances.ts";
