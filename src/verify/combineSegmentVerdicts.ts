/** The verdict of an answer served in several segments (after a failover), from the verdicts of its segments. */
import type { AuditInput } from "../protocol/index.ts";
import type { AuditVerdict } from "./audit.ts";

/** One segment's verdict: its index in the answer, the provider its receipt names (null without one), and the audit. */
export type SegmentAuditVerdict = { segment: number; provider: string | null } & AuditVerdict;

/** An answer's verdict: "pass" only if every segment passes, and each segment's verdict in order. */
export type AnswerAuditVerdict = { verdict: "pass" | "fail"; segments: SegmentAuditVerdict[] };

/** Combines the verdicts of an answer's segments (each with its audit input) into one verdict. */
export function combineSegmentVerdicts(
  segments: readonly { input: AuditInput; verdict: AuditVerdict }[],
): AnswerAuditVerdict {
  const verdicts = segments.map(
    ({ input, verdict }, index): SegmentAuditVerdict => ({
      segment: index,
      provider: input.receipt?.message.provider ?? null,
      ...verdict,
    }),
  );
  return {
    verdict: verdicts.length > 0 && verdicts.every((entry) => entry.verdict === "pass") ? "pass" : "fail",
    segments: verdicts,
  };
}
