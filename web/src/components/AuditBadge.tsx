/** An answer's audit state as a badge: pass, fail, pending (sent to a validator) or not audited. */
import type { ReceiptSummary } from "../../../src/explorer/types.ts";
import { Badge } from "./Badge.tsx";

/** The audit verdict of a receipt, or whether it is waiting for one. */
export function AuditBadge(props: { receipt: Pick<ReceiptSummary, "audit" | "sampled_to"> }) {
  const { audit, sampled_to } = props.receipt;
  if (audit)
    return (
      <Badge
        tone={audit.verdict === "pass" ? "good" : "bad"}
        title={audit.reasons.map((reason) => reason.message).join("; ") || `by ${audit.validator}`}
      >
        {audit.verdict}
      </Badge>
    );
  if (sampled_to)
    return (
      <Badge tone="info" title={`sent to validator ${sampled_to}`}>
        pending
      </Badge>
    );
  return <Badge tone="neutral">not audited</Badge>;
}
