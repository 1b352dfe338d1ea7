/** #/receipts: search and filter the receipts this gateway holds, with their audit verdicts, live on page one. */
import { useEffect, useState } from "preact/hooks";
import type { ReceiptList, ReceiptSummary } from "../../../src/explorer/types.ts";
import { sameHex } from "../api.ts";
import { Amount } from "../components/Amount.tsx";
import { AuditBadge } from "../components/AuditBadge.tsx";
import { Hex } from "../components/Hex.tsx";
import { EmptyNote, LoadState } from "../components/Status.tsx";
import { useExplorerEvent } from "../events.ts";
import { useToken } from "../explorerInfo.ts";
import { formatNumber, formatTime, isoTime, shortHex } from "../format.ts";
import { hrefOf } from "../router.ts";
import { useJson } from "../useJson.ts";

const pageSize = 25;
const debounceMs = 250;

type AuditFilter = "all" | "audited" | "not-audited";

/** The receipts query for a search, filter and page. */
export function receiptsPath(parameters: { q: string; filter: AuditFilter; page: number }): string {
  const search = new URLSearchParams();
  if (parameters.q) search.set("q", parameters.q);
  if (parameters.filter !== "all") search.set("audited", parameters.filter === "audited" ? "true" : "false");
  search.set("limit", String(pageSize));
  search.set("offset", String(parameters.page * pageSize));
  return `/mycel/v1/receipts?${search}`;
}

const sameReceipt = (a: Pick<ReceiptSummary, "request_id" | "segment">, b: typeof a) =>
  sameHex(a.request_id, b.request_id) && a.segment === b.segment;

/** The receipts page. */
export function ReceiptsPage() {
  const token = useToken();
  const [text, setText] = useState("");
  const [q, setQ] = useState("");
  const [filter, setFilter] = useState<AuditFilter>("all");
  const [page, setPage] = useState(0);
  const list = useJson<ReceiptList>(receiptsPath({ q, filter, page }));

  useEffect(() => {
    const query = text.trim();
    if (query === q) return;
    const timer = window.setTimeout(() => {
      setQ(query);
      setPage(0);
    }, debounceMs);
    return () => window.clearTimeout(timer);
  }, [text, q]);

  useExplorerEvent("receipt", (receipt) => {
    if (page !== 0 || q || filter === "audited" || list.loading) return;
    list.update((current) => {
      if (current.data.some((entry) => sameReceipt(entry, receipt))) return current;
      return { ...current, total: current.total + 1, data: [receipt, ...current.data].slice(0, pageSize) };
    });
  });
  useExplorerEvent("audit", (event) => {
    list.update((current) =>
      current.data.some((entry) => sameReceipt(entry, event))
        ? {
            ...current,
            data: current.data.map((entry) =>
              sameReceipt(entry, event) ? { ...entry, audit: event.audit } : entry,
            ),
          }
        : current,
    );
  });

  const data = list.data;
  const first = data ? data.offset + 1 : 0;
  const last = data ? data.offset + data.data.length : 0;
  return (
    <section aria-labelledby="receipts-heading">
      <h1 id="receipts-heading">Receipts and audits</h1>
      <search>
        <form
          class="toolbar"
          onSubmit={(event) => {
            event.preventDefault();
            setQ(text.trim());
            setPage(0);
          }}
        >
          <div class="field">
            <label for="receipts-q">Search</label>
            <input
              id="receipts-q"
              type="search"
              value={text}
              placeholder="request id, provider, model hash or name"
              aria-describedby="receipts-q-hint"
              onInput={(event) => setText(event.currentTarget.value)}
            />
            <span id="receipts-q-hint" class="sr-only">
              Results update as you type.
            </span>
          </div>
          <div class="field">
            <label for="receipts-filter">Audit</label>
            <select
              id="receipts-filter"
              value={filter}
              onChange={(event) => {
                setFilter(event.currentTarget.value as AuditFilter);
                setPage(0);
              }}
            >
              <option value="all">All</option>
              <option value="audited">Audited</option>
              <option value="not-audited">Not audited</option>
            </select>
          </div>
          <button type="submit">Search</button>
        </form>
      </search>

      {list.error ? (
        <LoadState loading={false} error={list.error} what="receipts" onRetry={list.reload} />
      ) : !data ? (
        <LoadState loading={list.loading} error={undefined} what="receipts" />
      ) : data.data.length === 0 ? (
        <EmptyNote>
          {q || filter !== "all"
            ? "No receipt matches."
            : "No receipts yet: answers served through this gateway appear here."}
        </EmptyNote>
      ) : (
        <div class="table-scroll" aria-busy={list.loading ? "true" : undefined}>
          <table>
            <caption>
              Receipts {formatNumber(first)}–{formatNumber(last)} of {formatNumber(data.total)}
              {q && ` matching “${q}”`}
              {page === 0 && !q && filter !== "audited" && <span class="muted"> (new ones appear live)</span>}
            </caption>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Request</th>
                <th scope="col">Provider</th>
                <th scope="col">Model</th>
                <th scope="col" class="num">
                  Tokens
                </th>
                <th scope="col" class="num">
                  Price
                </th>
                <th scope="col">Audit</th>
              </tr>
            </thead>
            <tbody>
              {data.data.map((receipt) => (
                <tr key={`${receipt.request_id}/${receipt.segment}`}>
                  <td>
                    <time dateTime={isoTime(receipt.created_at)}>{formatTime(receipt.created_at)}</time>
                  </td>
                  <th scope="row">
                    <a
                      class="mono"
                      href={hrefOf({ page: "receipts", requestId: receipt.request_id })}
                      title={receipt.request_id}
                    >
                      {shortHex(receipt.request_id, { head: 8 })}
                    </a>
                    {receipt.segment > 0 && <span class="muted"> · segment {receipt.segment}</span>}
                  </th>
                  <td>
                    <Hex value={receipt.provider} />
                  </td>
                  <td title={receipt.model_hash}>
                    {receipt.model_name ?? <span class="mono">{shortHex(receipt.model_hash)}</span>}
                  </td>
                  <td
                    class="num"
                    title={`${receipt.prompt_tokens} prompt + ${receipt.completion_tokens} completion`}
                  >
                    {formatNumber(receipt.prompt_tokens)} + {formatNumber(receipt.completion_tokens)}
                  </td>
                  <td class="num">
                    <Amount value={receipt.price} token={token} />
                  </td>
                  <td>
                    <AuditBadge receipt={receipt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {data && data.total > pageSize && (
        <nav class="pagination" aria-label="Pages of receipts">
          <button
            type="button"
            disabled={page === 0}
            onClick={() => setPage((value) => Math.max(0, value - 1))}
          >
            Previous page
          </button>
          <span>
            Page {page + 1} of {Math.max(1, Math.ceil(data.total / pageSize))}
          </span>
          <button type="button" disabled={last >= data.total} onClick={() => setPage((value) => value + 1)}>
            Next page
          </button>
        </nav>
      )}
    </section>
  );
}
