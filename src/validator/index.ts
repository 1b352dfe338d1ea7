/** The validator role: audits, verdicts handed back, challenges, per-epoch scores with commit-reveal, and slashing. */
export { type AuditQueue, createAuditQueue } from "./auditQueue.ts";
export {
  type AuditSample,
  type CreateSampleAuditorParameters,
  createSampleAuditor,
  type SampleAuditor,
} from "./audits.ts";
export {
  type Challenger,
  type CreateChallengerParameters,
  challengePrompts,
  createChallenger,
} from "./challenges.ts";
export { type CreateEpochLoopParameters, createEpochLoop, type EpochLoop } from "./epochs.ts";
export { checkSample } from "./intake.ts";
export type { ChallengeRequest, ValidatorNetwork } from "./network.ts";
export { epochScores, fullScore, isSlashable, slashableReasons } from "./scores.ts";
export { decodeSlashEvidence, encodeSlashEvidence, maxEvidenceBytes } from "./slashEvidence.ts";
export {
  type CreateSlasherParameters,
  createSlasher,
  type Slasher,
  type ValidatorChain,
} from "./slashing.ts";
export {
  challengeCpuShare,
  defaultValidatorOptions,
  nextChallengeDelayMs,
  type StartValidatorParameters,
  startValidator,
  type Validator,
  type ValidatorOptions,
} from "./validator.ts";
export { flatMetrics, returnVerdict } from "./verdictReturn.ts";
