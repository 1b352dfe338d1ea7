/**
 * #/playground: chat with a model through this gateway. The answer streams in; then the result panel shows who
 * answered, what it cost, whether the receipt verifies, and the validator's audit verdict when it arrives.
 */
import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import type { AuditSummary, ReceiptDetail, ReceiptList } from "../../../src/explorer/types.ts";
import { getJson, type ModelList, messageOf, sameHex } from "../api.ts";
import { type ChatMessage, type ChatTrailer, type ChatUsage, streamChat } from "../chat.ts";
import { Amount } from "../components/Amount.tsx";
import { Hex } from "../components/Hex.tsx";
import { ErrorAlert, Loading } from "../components/Status.tsx";
import { useExplorerEvent } from "../events.ts";
import { useToken } from "../explorerInfo.ts";
import { formatAmount, formatNumber, shortHex, sumAmounts } from "../format.ts";
import { hrefOf } from "../router.ts";
import { useJson } from "../useJson.ts";

/** One message in the conversation as shown. */
export type Turn = {
  id: number;
  role: "user" | "assistant";
  content: string;
  streaming?: boolean;
  /** Why the answer is incomplete: stopped by the user, or the error. */
  ended?: "stopped" | "failed";
};

type Result = { trailer: ChatTrailer | null; usage: ChatUsage | null; finishReason: string | null };

type Verification =
  | { state: "checking" }
  | { state: "verified"; signers: string[] }
  | { state: "not-verified"; detail: string }
  | { state: "error"; message: string };

type AuditState =
  | { state: "not-requested" }
  | { state: "not-sent" }
  | { state: "pending"; validator: string }
  | { state: "timeout"; validator: string }
  | { state: "done"; audit: AuditSummary };

const auditPollMs = 2000;
const auditWaitMs = 120_000;

/**
 * Fetches a request's receipts. The gateway stores them as the answer ends, so first wait (briefly) until the
 * search lists the request: asking for the detail too early would be a 404.
 */
async function fetchReceiptDetail(requestId: string, signal: AbortSignal): Promise<ReceiptDetail> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const list = await getJson<ReceiptList>(`/mycel/v1/receipts?q=${encodeURIComponent(requestId)}&limit=5`, {
      signal,
    });
    if (list.data.some((entry) => sameHex(entry.request_id, requestId))) break;
    await new Promise((resolve) => window.setTimeout(resolve, 250 * (attempt + 1)));
  }
  return getJson<ReceiptDetail>(`/mycel/v1/receipts/${encodeURIComponent(requestId)}`, { signal });
}

/** What a receipt check says: verified when every segment's signature is valid. */
export function verificationOf(detail: ReceiptDetail): Verification {
  const entries = detail.verification;
  if (entries.length === 0)
    return { state: "not-verified", detail: "no receipt was stored for this request" };
  const invalid = entries.filter((entry) => !entry.valid);
  if (invalid.length > 0)
    return {
      state: "not-verified",
      detail: invalid
        .map((entry) => `segment ${entry.segment} signed by ${entry.signer ?? "nobody"}, not its provider`)
        .join("; "),
    };
  return { state: "verified", signers: [...new Set(entries.map((entry) => entry.signer ?? "?"))] };
}

/** The turns to send again as context: answers that failed or came back empty are left out with their question. */
export function conversationHistory(turns: readonly Turn[]): ChatMessage[] {
  const history: ChatMessage[] = [];
  turns.forEach((turn, index) => {
    const answer = turn.role === "user" ? turns[index + 1] : turn;
    if (answer?.role === "assistant" && (answer.ended === "failed" || !answer.content)) return;
    history.push({ role: turn.role, content: turn.content });
  });
  return history;
}

/** The verdict of an answer from its segments' audits: any failure wins, else the first pass. */
export function auditOf(audits: readonly (AuditSummary | null)[]): AuditSummary | undefined {
  const given = audits.filter((audit): audit is AuditSummary => audit !== null);
  return given.find((audit) => audit.verdict === "fail") ?? given[0];
}

function ReceiptStatus(props: { verification: Verification | null }) {
  const { verification } = props;
  let text: ComponentChildren = "Receipt: not available";
  let verified: string | undefined;
  if (verification?.state === "checking") text = "Receipt: checking…";
  else if (verification?.state === "error") text = `Receipt: cannot check (${verification.message})`;
  else if (verification?.state === "not-verified") {
    verified = "false";
    text = `Receipt NOT verified: ${verification.detail}`;
  } else if (verification?.state === "verified") {
    verified = "true";
    text = (
      <>
        Receipt verified: signed by{" "}
        {verification.signers.map((signer, index) => (
          <span key={signer}>
            {index > 0 && ", "}
            <span class="mono">{signer}</span>
          </span>
        ))}
      </>
    );
  }
  return (
    <p
      data-testid="receipt-status"
      data-verified={verified}
      class={verified === "true" ? "text-good" : verified === "false" ? "text-bad" : undefined}
    >
      {text}
    </p>
  );
}

function AuditStatus(props: { audit: AuditState }) {
  const { audit } = props;
  let text: ComponentChildren;
  let verdict: string | undefined;
  let tone: string | undefined;
  switch (audit.state) {
    case "not-requested":
      text = "Audit: not requested";
      break;
    case "not-sent":
      text = "Audit: not sent (the gateway sent this answer to no validator)";
      break;
    case "pending":
      verdict = "pending";
      text = (
        <>
          Audit: pending (sent to validator <Hex value={audit.validator} />)
        </>
      );
      break;
    case "timeout":
      verdict = "pending";
      text = (
        <>
          Audit: no verdict after 2 minutes (sent to validator <Hex value={audit.validator} />; see{" "}
          <a href="#/receipts">Receipts</a> later)
        </>
      );
      break;
    case "done":
      verdict = audit.audit.verdict;
      tone = audit.audit.verdict === "pass" ? "text-good" : "text-bad";
      text =
        audit.audit.verdict === "pass" ? (
          <>
            Audit: pass <span class="muted">· validator</span> <Hex value={audit.audit.validator} />
          </>
        ) : (
          <>
            Audit: fail ({audit.audit.reasons.map((reason) => reason.message).join("; ") || "no reason given"}
            ) <span class="muted">· validator</span> <Hex value={audit.audit.validator} />
          </>
        );
      break;
  }
  return (
    <p data-testid="audit-status" data-verdict={verdict} class={tone}>
      {text}
    </p>
  );
}

/**
 * The conversation and the last answer, kept while the app is open: going to another page and back loses
 * nothing (an answer still streaming then is stopped, and marked so).
 */
const kept: { turns: Turn[]; result: Result | null; auditState: AuditState } = {
  turns: [],
  result: null,
  auditState: { state: "not-requested" },
};

/** The playground page. */
export function PlaygroundPage() {
  const token = useToken();
  const models = useJson<ModelList>("/v1/models");
  const [model, setModel] = useState("");
  const [system, setSystem] = useState("");
  const [message, setMessage] = useState("");
  const [maxTokens, setMaxTokens] = useState("64");
  const [temperature, setTemperature] = useState("0.7");
  const [audit, setAudit] = useState(true);
  const [turns, setTurns] = useState<Turn[]>(() =>
    kept.turns.map((turn) => (turn.streaming ? { ...turn, streaming: false, ended: "stopped" } : turn)),
  );
  const [streaming, setStreaming] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);
  const [result, setResult] = useState<Result | null>(kept.result);
  const [verification, setVerification] = useState<Verification | null>(null);
  const [auditState, setAuditState] = useState<AuditState>(kept.auditState);
  const controller = useRef<AbortController | null>(null);
  const nextId = useRef(Math.max(0, ...kept.turns.map((turn) => turn.id)) + 1);
  const messageBox = useRef<HTMLTextAreaElement>(null);
  const stopButton = useRef<HTMLButtonElement>(null);
  const conversation = useRef<HTMLElement>(null);

  const modelIds = models.data?.data.map((entry) => entry.id) ?? [];
  const selectedModel = model || modelIds[0] || "";
  const requestId = result?.trailer?.request_id;
  const awaitingAudit = auditState.state === "pending" ? requestId : undefined;

  useEffect(() => () => controller.current?.abort(), []);
  useEffect(() => {
    kept.turns = turns;
    kept.result = result;
    kept.auditState = auditState;
  }, [turns, result, auditState]);

  // Keep the newest text in view while it streams, unless the reader scrolled up.
  useEffect(() => {
    const element = conversation.current;
    if (!turns.length || !element) return;
    if (element.scrollHeight - element.scrollTop - element.clientHeight < 160)
      element.scrollTop = element.scrollHeight;
  }, [turns]);

  // The receipt check, once an answer is complete.
  useEffect(() => {
    if (!requestId) return;
    const check = new AbortController();
    setVerification({ state: "checking" });
    fetchReceiptDetail(requestId, check.signal).then(
      (detail) => {
        if (check.signal.aborted) return;
        setVerification(verificationOf(detail));
        const verdict = auditOf(detail.summaries.map((summary) => summary.audit));
        if (verdict)
          setAuditState((state) => (state.state === "pending" ? { state: "done", audit: verdict } : state));
      },
      (cause: unknown) => {
        if (!check.signal.aborted) setVerification({ state: "error", message: messageOf(cause) });
      },
    );
    return () => check.abort();
  }, [requestId]);

  // The audit verdict: live "audit" events, with polling as a fallback, for up to two minutes.
  useExplorerEvent("audit", (event) => {
    if (awaitingAudit && sameHex(event.request_id, awaitingAudit))
      setAuditState({ state: "done", audit: event.audit });
  });
  useEffect(() => {
    if (!awaitingAudit) return;
    const poll = new AbortController();
    const started = Date.now();
    const timer = window.setInterval(() => {
      if (Date.now() - started > auditWaitMs) {
        window.clearInterval(timer);
        setAuditState((state) =>
          state.state === "pending" ? { state: "timeout", validator: state.validator } : state,
        );
        return;
      }
      getJson<ReceiptList>(`/mycel/v1/receipts?q=${encodeURIComponent(awaitingAudit)}`, {
        signal: poll.signal,
      }).then(
        (list) => {
          const verdict = auditOf(
            list.data.filter((entry) => sameHex(entry.request_id, awaitingAudit)).map((entry) => entry.audit),
          );
          if (verdict && !poll.signal.aborted)
            setAuditState((state) => (state.state === "pending" ? { state: "done", audit: verdict } : state));
        },
        () => undefined,
      );
    }, auditPollMs);
    return () => {
      window.clearInterval(timer);
      poll.abort();
    };
  }, [awaitingAudit]);

  const send = async () => {
    if (streaming) return;
    const content = message.trim();
    const tokens = Number(maxTokens);
    const heat = Number(temperature);
    if (!selectedModel) return setError("Pick a model first: no model is served by this gateway yet.");
    if (!content) {
      messageBox.current?.focus();
      return setError("Write a message first.");
    }
    if (!Number.isInteger(tokens) || tokens < 1)
      return setError("Max tokens must be a whole number of at least 1.");
    if (!Number.isFinite(heat) || heat < 0 || heat > 2)
      return setError("Temperature must be between 0 and 2.");

    const history = conversationHistory(turns);
    const messages: ChatMessage[] = [
      ...(system.trim() ? [{ role: "system" as const, content: system.trim() }] : []),
      ...history,
      { role: "user", content },
    ];
    const userTurn: Turn = { id: nextId.current++, role: "user", content };
    const answerId = nextId.current++;
    setTurns((current) => [
      ...current,
      userTurn,
      { id: answerId, role: "assistant", content: "", streaming: true },
    ]);
    setMessage("");
    setError(undefined);
    setResult(null);
    setVerification(null);
    setAuditState({ state: "not-requested" });
    setStreaming(true);
    const run = new AbortController();
    controller.current = run;
    const patchAnswer = (change: (turn: Turn) => Turn) =>
      setTurns((current) => current.map((turn) => (turn.id === answerId ? change(turn) : turn)));
    try {
      const answer = await streamChat({
        model: selectedModel,
        messages,
        maxTokens: tokens,
        temperature: heat,
        audit,
        signal: run.signal,
        onText: (text) => patchAnswer((turn) => ({ ...turn, content: turn.content + text })),
      });
      patchAnswer((turn) => ({ ...turn, streaming: false }));
      setResult({ trailer: answer.mycel, usage: answer.usage, finishReason: answer.finishReason });
      setAuditState(
        !audit
          ? { state: "not-requested" }
          : answer.mycel?.audit
            ? { state: "pending", validator: answer.mycel.audit.validator }
            : { state: "not-sent" },
      );
    } catch (cause) {
      const stopped = run.signal.aborted;
      patchAnswer((turn) => ({ ...turn, streaming: false, ended: stopped ? "stopped" : "failed" }));
      if (!stopped) setError(messageOf(cause));
    } finally {
      if (controller.current === run) controller.current = null;
      setStreaming(false);
      if (document.activeElement === stopButton.current) messageBox.current?.focus();
    }
  };

  const stop = () => {
    controller.current?.abort();
    messageBox.current?.focus();
  };

  const clear = () => {
    controller.current?.abort();
    setTurns([]);
    setResult(null);
    setError(undefined);
    setVerification(null);
    setAuditState({ state: "not-requested" });
    messageBox.current?.focus();
  };

  const trailer = result?.trailer;
  const receipts = trailer?.receipts ?? [];
  const cost = sumAmounts(receipts.map((receipt) => receipt.message?.price ?? "0"));
  const promptTokens = result?.usage?.prompt_tokens ?? receipts[0]?.message?.promptTokens;
  const completionTokens =
    result?.usage?.completion_tokens ??
    (receipts.length
      ? receipts.reduce((sum, receipt) => sum + (receipt.message?.completionTokens ?? 0), 0)
      : undefined);

  return (
    <section aria-labelledby="playground-heading" class="playground">
      <h1 id="playground-heading">Playground</h1>
      <p class="note">
        Ask a model through this gateway. Each answer is paid for, comes with a signed receipt, and can be
        checked by a validator.
      </p>

      <section aria-label="Conversation" class="conversation" ref={conversation}>
        {turns.length === 0 ? (
          <p class="empty">No messages yet.</p>
        ) : (
          <ol class="messages">
            {turns.map((turn) => (
              <li key={turn.id} class={`message message-${turn.role}`}>
                <div class="message-role">{turn.role === "user" ? "You" : "Assistant"}</div>
                {turn.role === "assistant" ? (
                  <div
                    class="message-body"
                    data-testid="assistant-message"
                    data-streaming={turn.streaming ? "true" : "false"}
                    aria-busy={turn.streaming ? "true" : undefined}
                  >
                    {turn.content}
                    {turn.streaming && <span class="cursor" aria-hidden="true" />}
                    {turn.ended === "stopped" && <span class="muted"> [stopped]</span>}
                    {turn.ended === "failed" && <span class="text-bad"> [failed]</span>}
                  </div>
                ) : (
                  <div class="message-body">{turn.content}</div>
                )}
              </li>
            ))}
          </ol>
        )}
      </section>

      {error && <ErrorAlert message={error} />}

      <form
        class="chat-form"
        onSubmit={(event) => {
          event.preventDefault();
          void send();
        }}
      >
        <div class="field">
          {models.data ? <label for="pg-model">Model</label> : <span class="label">Model</span>}
          {models.error ? (
            <ErrorAlert title="Cannot load the models" message={models.error} onRetry={models.reload} />
          ) : models.loading && !models.data ? (
            <Loading what="models" />
          ) : (
            <select
              id="pg-model"
              value={selectedModel}
              onChange={(event) => setModel(event.currentTarget.value)}
            >
              {modelIds.length === 0 && <option value="">No model is served yet</option>}
              {models.data?.data.map((entry) => (
                <option key={entry.id} value={entry.id}>
                  {entry.id}
                  {entry.mycel?.hash ? ` (${shortHex(entry.mycel.hash)})` : ""}
                </option>
              ))}
            </select>
          )}
        </div>
        <div class="field">
          <label for="pg-system">
            System prompt <span class="muted">(optional)</span>
          </label>
          <textarea
            id="pg-system"
            rows={2}
            value={system}
            onInput={(event) => setSystem(event.currentTarget.value)}
          />
        </div>
        <div class="field">
          <label for="pg-message">Message</label>
          <textarea
            id="pg-message"
            ref={messageBox}
            rows={4}
            value={message}
            aria-describedby="pg-message-hint"
            onInput={(event) => setMessage(event.currentTarget.value)}
            onKeyDown={(event) => {
              if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
                event.preventDefault();
                void send();
              }
            }}
          />
          <p id="pg-message-hint" class="hint">
            Ctrl+Enter (⌘+Enter on a Mac) sends; Enter starts a new line.
          </p>
        </div>
        <div class="field-row">
          <div class="field">
            <label for="pg-max-tokens">Max tokens</label>
            <input
              id="pg-max-tokens"
              type="number"
              min={1}
              step={1}
              inputMode="numeric"
              value={maxTokens}
              onInput={(event) => setMaxTokens(event.currentTarget.value)}
            />
          </div>
          <div class="field">
            <label for="pg-temperature">Temperature</label>
            <input
              id="pg-temperature"
              type="number"
              min={0}
              max={2}
              step={0.1}
              inputMode="decimal"
              value={temperature}
              onInput={(event) => setTemperature(event.currentTarget.value)}
            />
          </div>
          <div class="field field-check">
            <input
              id="pg-audit"
              type="checkbox"
              checked={audit}
              onChange={(event) => setAudit(event.currentTarget.checked)}
            />
            <label for="pg-audit">Send this answer to a validator for audit</label>
          </div>
        </div>
        <div class="actions">
          <button type="submit" class="primary" aria-disabled={streaming ? "true" : undefined}>
            {streaming ? "Answering…" : "Send"}
          </button>
          {streaming && (
            <button type="button" ref={stopButton} onClick={stop}>
              Stop
            </button>
          )}
          {turns.length > 0 && !streaming && (
            <button type="button" onClick={clear}>
              Clear conversation
            </button>
          )}
        </div>
      </form>

      <section class="result" aria-live="polite" aria-label="Answer details">
        {result && (
          <>
            <h2>Answer</h2>
            {trailer ? (
              <dl class="facts">
                <dt>Answered by</dt>
                <dd data-testid="answer-provider">
                  {trailer.providers.length === 0
                    ? "—"
                    : trailer.providers.map((provider, index) => (
                        <span key={`${provider}${index}`}>
                          {index > 0 && ", then "}
                          <span class="mono">{provider}</span>
                        </span>
                      ))}
                  {trailer.failovers > 0 && (
                    <span class="muted">
                      {" "}
                      ({trailer.failovers} failover{trailer.failovers === 1 ? "" : "s"})
                    </span>
                  )}
                </dd>
                <dt>Request</dt>
                <dd>
                  <a class="mono" href={hrefOf({ page: "receipts", requestId: trailer.request_id })}>
                    {trailer.request_id}
                  </a>
                </dd>
                <dt>Tokens</dt>
                <dd class="num">
                  {formatNumber(promptTokens)} prompt, {formatNumber(completionTokens)} completion
                  {result.finishReason && <span class="muted"> · finished: {result.finishReason}</span>}
                </dd>
                <dt>Cost</dt>
                <dd data-testid="answer-cost" class="num">
                  {token === null ? (
                    `${formatAmount(cost, null)} (no chain: nothing is paid)`
                  ) : (
                    <Amount value={cost} token={token} />
                  )}
                </dd>
              </dl>
            ) : (
              <p class="note">The gateway sent no receipt details with this answer.</p>
            )}
            <ReceiptStatus verification={verification} />
            <AuditStatus audit={auditState} />
          </>
        )}
      </section>
    </section>
  );
}
