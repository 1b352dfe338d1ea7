/** Turning a validator's verdicts into per-epoch scores, and which failures are proof enough to slash. Pure. */
import type { AuditReasonCode } from "../verify/index.ts";

/** The highest score (basis points of 1.0, as EpochConsensus takes them). */
export const fullScore = 10_000;

/**
 * Reasons that prove cheating from what the provider signed: the receipt commits to the tokens, the request, the
 * fingerprints, the finish reason and the streamed text's hash, so anyone can re-check them. A bad receipt (receipt_invalid) proves nothing
 * against the provider (anyone can forge an unsigned claim), and missing evidence may be an outage.
 */
export const slashableReasons: ReadonlySet<string> = new Set<AuditReasonCode>([
  "prompt_mismatch",
  "fingerprints_incomplete",
  "fingerprint_mismatch",
  "implausible_token",
  "not_argmax",
  "finish_reason_dishonest",
  "usage_dishonest",
  "text_mismatch",
]);

/** Whether a failed verdict is proof for a slashing proposal: some reason is slashable and the receipt is sound. */
export function isSlashable(reasons: readonly { code: string }[]): boolean {
  return (
    reasons.some((reason) => slashableReasons.has(reason.code)) &&
    !reasons.some((reason) => reason.code === "receipt_invalid" || reason.code === "evidence_unavailable")
  );
}

/**
 * A provider's score for an epoch: the share of its audited answers that passed, in basis points. A provider
 * without audits keeps its standing: its current reputation if it has one, else the full score (newcomers are
 * trusted until an audit says otherwise, as routing does).
 */
export function epochScores(parameters: {
  providers: readonly string[];
  audits: readonly { provider: string; verdict: "pass" | "fail" }[];
  reputationOf: (provider: string) => number | undefined;
}): number[] {
  const tally = new Map<string, { passed: number; total: number }>();
  for (const audit of parameters.audits) {
    const key = audit.provider.toLowerCase();
    const entry = tally.get(key) ?? { passed: 0, total: 0 };
    entry.total++;
    if (audit.verdict === "pass") entry.passed++;
    tally.set(key, entry);
  }
  return parameters.providers.map((provider) => {
    const entry = tally.get(provider.toLowerCase());
    if (!entry || entry.total === 0) return parameters.reputationOf(provider) ?? fullScore;
    return Math.round((fullScore * entry.passed) / entry.total);
  });
}
