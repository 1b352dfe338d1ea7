/** The validator role: audits, per-epoch scores with commit-reveal, and slashing. */
export { epochScores, fullScore, isSlashable, slashableReasons } from "./scores.ts";
export { decodeSlashEvidence, encodeSlashEvidence, maxEvidenceBytes } from "./slashEvidence.ts";
export {
  defaultValidatorOptions,
  type StartValidatorParameters,
  startValidator,
  type Validator,
  type ValidatorOptions,
} from "./validator.ts";
