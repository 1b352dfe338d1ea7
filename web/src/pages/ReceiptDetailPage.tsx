/**
 * #/receipts/<request id>: one request's signed receipts (every field), their signature check, its cost, the
 * audit verdict with reasons and metrics, and on demand the provider's evidence (tokens and fingerprints).
 */
import { useState } from "preact/hooks";
import type { AuditSummary, ReceiptDetail, ReceiptSummary } from "../../../src/explorer/types.ts";
import {
  type EvidenceResponse,
  getJson,
  isSignedReceipt,
  messageOf,
  type SignedReceiptJson,
  sameHex,
} from "../api.ts";
import { Amount } from "../components/Amount.tsx";
import { AuditBadge } from "../components/AuditBadge.tsx";
import { Badge } from "../components/Badge.tsx";
import { Hex } from "../components/Hex.tsx";
import { ErrorAlert, Loading, LoadState } from "../components/Status.tsx";
import { useExplorerEvent } from "../events.ts";
import { useToken } from "../explorerInfo.ts";
import { formatNumber, formatTime, isoTime, type Token } from "../format.ts";
import { useJson } from "../useJson.ts";

/** Output positions shown in the fingerprint table. */
const fingerprintRows = 16;

/** A receipt timestamp (seconds or ms since the epoch, as a decimal string) as a local time. */
function receiptTime(timestamp: string): string {
  const value = Number(timestamp);
  if (!Number.isFinite(value) || value <= 0) return timestamp;
  return formatTime(value < 1e12 ? value * 1000 : value);
}

function MessageFields(props: { receipt: SignedReceiptJson; token: Token | null | undefined }) {
  const { message, domain } = props.receipt;
  const hexFields: [string, string][] = [
    ["Request id", message.requestId],
    ["Client", message.client],
    ["Provider", message.provider],
    ["Model hash", message.modelHash],
    ["Request hash", message.requestHash],
    ["Prompt hash", message.promptHash],
    ["Output hash", message.outputHash],
    ["Commitment", message.commitment],
  ];
  return (
    <dl class="fields">
      {hexFields.map(([name, value]) => (
        <div key={name}>
          <dt>{name}</dt>
          <dd class="mono break">{value}</dd>
        </div>
      ))}
      <div>
        <dt>Prompt tokens</dt>
        <dd class="num">{formatNumber(message.promptTokens)}</dd>
      </div>
      <div>
        <dt>Completion tokens</dt>
        <dd class="num">{formatNumber(message.completionTokens)}</dd>
      </div>
      <div>
        <dt>Price</dt>
        <dd>
          <Amount value={message.price} token={props.token} />{" "}
          <span class="muted mono">({message.price})</span>
        </dd>
      </div>
      <div>
        <dt>Timestamp</dt>
        <dd>
          {receiptTime(message.timestamp)} <span class="muted mono">({message.timestamp})</span>
        </dd>
      </div>
      {domain && (
        <div>
          <dt>Signed for</dt>
          <dd>
            {domain.name ?? "?"} v{domain.version ?? "?"}, chain {domain.chainId ?? "?"}, contract{" "}
            <Hex value={domain.verifyingContract} />
          </dd>
        </div>
      )}
    </dl>
  );
}

function metricText(value: unknown): string {
  if (typeof value === "number") return formatNumber(value, 4);
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

function AuditView(props: { summary: ReceiptSummary | undefined }) {
  const summary = props.summary;
  const audit: AuditSummary | null | undefined = summary?.audit;
  if (!summary) return null;
  if (!audit)
    return (
      <p>
        <strong>Audit:</strong> <AuditBadge receipt={summary} />{" "}
        {summary.sampled_to ? (
          <>
            sent to validator <Hex value={summary.sampled_to} />, no verdict yet
          </>
        ) : (
          "this answer was not sampled for audit"
        )}
      </p>
    );
  const metrics = Object.entries(audit.metrics);
  return (
    <div class="audit">
      <h3>
        Audit <AuditBadge receipt={summary} />
      </h3>
      <dl class="fields">
        <div>
          <dt>Verdict</dt>
          <dd>{audit.verdict}</dd>
        </div>
        <div>
          <dt>Validator</dt>
          <dd class="mono break">{audit.validator}</dd>
        </div>
        <div>
          <dt>Audited</dt>
          <dd>
            <time dateTime={isoTime(audit.audited_at)}>{formatTime(audit.audited_at)}</time>
          </dd>
        </div>
        <div>
          <dt>Signature</dt>
          <dd class="mono break">{audit.signature}</dd>
        </div>
      </dl>
      {audit.reasons.length > 0 && (
        <>
          <h4>Reasons</h4>
          <ul>
            {audit.reasons.map((reason) => (
              <li key={`${reason.code}:${reason.message}`}>
                <code>{reason.code}</code>: {reason.message}
              </li>
            ))}
          </ul>
        </>
      )}
      {metrics.length > 0 && (
        <div class="table-scroll">
          <table class="compact">
            <caption>Audit metrics</caption>
            <thead>
              <tr>
                <th scope="col">Metric</th>
                <th scope="col" class="num">
                  Value
                </th>
              </tr>
            </thead>
            <tbody>
              {metrics.map(([name, value]) => (
                <tr key={name}>
                  <th scope="row">{name}</th>
                  <td class="num mono">{metricText(value)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

function EvidenceView(props: { requestId: string }) {
  const [state, setState] = useState<
    | { state: "idle" }
    | { state: "loading" }
    | { state: "error"; message: string }
    | { state: "done"; data: EvidenceResponse }
  >({ state: "idle" });
  const load = () => {
    setState({ state: "loading" });
    getJson<EvidenceResponse>(`/mycel/v1/receipts/${encodeURIComponent(props.requestId)}/evidence`).then(
      (data) => setState({ state: "done", data }),
      (cause: unknown) => setState({ state: "error", message: messageOf(cause) }),
    );
  };
  return (
    <section aria-labelledby="evidence-heading">
      <h2 id="evidence-heading">Evidence</h2>
      <p class="note">
        What the provider read and wrote, and the most likely tokens at each step it wrote, as the provider
        itself keeps them.
      </p>
      <button
        type="button"
        onClick={() => state.state !== "loading" && load()}
        aria-disabled={state.state === "loading" ? "true" : undefined}
      >
        {state.state === "idle"
          ? "Load evidence"
          : state.state === "loading"
            ? "Loading evidence…"
            : "Load evidence again"}
      </button>
      {state.state === "loading" && <Loading what="evidence" />}
      {state.state === "error" && <ErrorAlert title="Cannot load the evidence" message={state.message} />}
      {state.state === "done" &&
        (state.data.evidence.length === 0 ? (
          <p class="empty">The provider returned no evidence.</p>
        ) : (
          state.data.evidence.map((segment, index) => {
            const positions = segment.fingerprints.flatMap((chunk) =>
              chunk.ids.map((ids, offset) => ({ ids, gaps: chunk.gaps[offset] ?? [] })),
            );
            return (
              <div key={`${segment.provider}${index}`} class="evidence">
                <h3>
                  Segment {segment.segment ?? index} · <Hex value={segment.provider} />
                </h3>
                <dl class="fields">
                  <div>
                    <dt>Prompt tokens</dt>
                    <dd class="num">{formatNumber(segment.promptTokens.length)}</dd>
                  </div>
                  <div>
                    <dt>Output tokens</dt>
                    <dd class="num">{formatNumber(segment.outputTokens.length)}</dd>
                  </div>
                  <div>
                    <dt>Finish reason</dt>
                    <dd>{segment.finishReason}</dd>
                  </div>
                  <div>
                    <dt>Fingerprint</dt>
                    <dd>
                      {segment.fingerprints.length} chunks, {positions.length} positions
                    </dd>
                  </div>
                </dl>
                <div class="table-scroll">
                  <table class="compact">
                    <caption>
                      Fingerprint, first {Math.min(fingerprintRows, positions.length)} output positions (most
                      likely token ids, and how far each lies below the first, in nats)
                    </caption>
                    <thead>
                      <tr>
                        <th scope="col" class="num">
                          Position
                        </th>
                        <th scope="col" class="num">
                          Token written
                        </th>
                        <th scope="col">Most likely ids</th>
                        <th scope="col">Gaps (nats)</th>
                      </tr>
                    </thead>
                    <tbody>
                      {positions.slice(0, fingerprintRows).map((position, offset) => (
                        <tr key={offset}>
                          <th scope="row" class="num">
                            {offset}
                          </th>
                          <td class="num mono">{segment.outputTokens[offset] ?? "—"}</td>
                          <td class="mono">{position.ids.join(", ")}</td>
                          <td class="mono">
                            {position.gaps.map((gap) => (gap / 1000).toFixed(3)).join(", ") || "—"}
                          </td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              </div>
            );
          })
        ))}
    </section>
  );
}

/** The receipt detail page of one request. */
export function ReceiptDetailPage(props: { requestId: string }) {
  const token = useToken();
  const detail = useJson<ReceiptDetail>(`/mycel/v1/receipts/${encodeURIComponent(props.requestId)}`);
  useExplorerEvent("audit", (event) => {
    if (!sameHex(event.request_id, props.requestId)) return;
    detail.update((current) => ({
      ...current,
      summaries: current.summaries.map((summary) =>
        summary.segment === event.segment ? { ...summary, audit: event.audit } : summary,
      ),
    }));
  });

  const data = detail.data;
  const segments = data ? Math.max(data.receipts.length, data.summaries.length) : 0;
  const allValid = data
    ? data.verification.length > 0 && data.verification.every((entry) => entry.valid)
    : false;
  return (
    <section aria-labelledby="receipt-heading">
      <p class="crumbs">
        <a href="#/receipts">← All receipts</a>
      </p>
      <h1 id="receipt-heading">
        Receipt <span class="mono break heading-id">{props.requestId}</span>
      </h1>
      {!data && (
        <LoadState
          loading={detail.loading}
          error={detail.error}
          what="this receipt"
          onRetry={detail.reload}
        />
      )}
      {data && (
        <>
          <dl class="stats">
            <div>
              <dt>Cost</dt>
              <dd>
                <Amount value={data.cost} token={token} />
              </dd>
            </div>
            <div>
              <dt>Segments</dt>
              <dd class="num">{segments}</dd>
            </div>
            <div>
              <dt>Signatures</dt>
              <dd>
                {allValid ? <Badge tone="good">all valid</Badge> : <Badge tone="bad">NOT verified</Badge>}
              </dd>
            </div>
          </dl>
          {Array.from({ length: segments }, (_, index) => {
            const receipt = data.receipts[index];
            const summary = data.summaries.find((entry) => entry.segment === index) ?? data.summaries[index];
            const check = data.verification.find((entry) => entry.segment === index);
            return (
              <section key={index} class="segment" aria-labelledby={`segment-${index}`}>
                <h2 id={`segment-${index}`}>
                  Segment {index}
                  {summary && (
                    <>
                      {" "}
                      · <Hex value={summary.provider} />
                      {summary.model_name && <span class="muted"> · {summary.model_name}</span>}
                    </>
                  )}
                </h2>
                {isSignedReceipt(receipt) ? (
                  <>
                    <h3>Receipt</h3>
                    <MessageFields receipt={receipt} token={token} />
                    <dl class="fields">
                      <div>
                        <dt>Signature</dt>
                        <dd class="mono break">{receipt.signature}</dd>
                      </div>
                    </dl>
                  </>
                ) : (
                  <p class="note">No signed receipt is stored for this segment.</p>
                )}
                <p>
                  <strong>Verification:</strong>{" "}
                  {!check ? (
                    <span class="muted">not checked</span>
                  ) : check.valid ? (
                    <span class="text-good">
                      valid: signed by <span class="mono">{check.signer}</span>
                    </span>
                  ) : (
                    <span class="text-bad">
                      NOT valid: signed by <span class="mono">{check.signer ?? "nobody"}</span>, not the
                      provider it names
                    </span>
                  )}
                </p>
                <AuditView summary={summary} />
              </section>
            );
          })}
          <EvidenceView requestId={props.requestId} />
        </>
      )}
    </section>
  );
}
