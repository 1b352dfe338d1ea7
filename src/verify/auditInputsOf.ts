/**
 * What `mycel audit --input` reads, turned into audit inputs: the flat audit input, or a whole API answer (chat or
 * text completion, or the last SSE event, the one that carries `mycel`) with its evidence and receipts.
 */
import { InvalidInputError } from "../errors/index.ts";
import { type AuditInput, auditInputSchema } from "../protocol/index.ts";
import { parseAuditInput } from "./auditor.ts";

/** What {@link auditInputsOf} returns: one audit input per segment of the answer, each with its receipt if any. */
export type AuditInputsOfReturnType = AuditInput[];

/** Keys of the flat audit input (`{modelHash, request, promptTokens, outputTokens, fingerprints, finishReason, receipt?}`). */
const flatInputKeys = [
  "modelHash",
  "request",
  "promptTokens",
  "outputTokens",
  "fingerprints",
  "finishReason",
];
/** `object` of the API's answers and stream events. */
const answerObjects = ["chat.completion", "chat.completion.chunk", "text_completion"];

const inputsHint =
  'give a saved API answer asked with `"mycel": {"include_evidence": true}` (the JSON body, or the last event of a stream), or {modelHash, request, promptTokens, outputTokens, fingerprints, finishReason, receipt?} as docs/VERIFICATION.md describes';

type JsonObject = Record<string, unknown>;

const isObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function invalid(shortMessage: string, parameters: { param?: string; details?: string; hint: string }) {
  return new InvalidInputError(shortMessage, { code: "invalid_audit_input", ...parameters });
}

function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return `a ${typeof value}`;
}

/** An error field's text (the gateway's `{error: "…"}`, or OpenAI's `{error: {message}}`). */
function errorText(error: unknown): string {
  if (typeof error === "string") return error;
  if (isObject(error) && typeof error.message === "string") return error.message;
  return JSON.stringify(error);
}

/** Whether a value looks like an API answer (or a stream event) rather than the flat audit input. */
function isAnswer(value: JsonObject): boolean {
  return (
    "mycel" in value ||
    "choices" in value ||
    (typeof value.object === "string" && answerObjects.includes(value.object))
  );
}

/** One segment's evidence and receipt, validated; a bad field is named by where it sits in the answer. */
function parseSegment(parameters: {
  evidence: JsonObject;
  receipt: unknown;
  evidencePath: string;
  receiptPath: string;
}): AuditInput {
  const { evidence, receipt, evidencePath, receiptPath } = parameters;
  const candidate = receipt === undefined ? evidence : { ...evidence, receipt };
  const parsed = auditInputSchema.safeParse(candidate);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = issue?.path.map(String) ?? [];
  const where =
    path[0] === "receipt" && receipt !== undefined
      ? [receiptPath, ...path.slice(1)].join(".")
      : [evidencePath, ...path].join(".");
  const missingRequest = path.length === 1 && path[0] === "request" && !("request" in evidence);
  throw invalid(`bad audit input: ${where} ${issue?.message ?? "is invalid"}`, {
    param: where,
    hint: missingRequest
      ? "this evidence lacks `request` (the wire request): save the answer of a gateway or `mycel serve` that adds it, or add it as docs/VERIFICATION.md describes"
      : "save the answer exactly as the gateway or `mycel serve` returned it (docs/VERIFICATION.md)",
  });
}

function inputsOfAnswer(answer: JsonObject): AuditInput[] {
  const mycel = answer.mycel;
  if (!isObject(mycel))
    throw invalid("the answer has no `mycel` object, so no evidence to audit", {
      param: "mycel",
      hint: 'save the answer of a Mycel gateway or `mycel serve` asked with `"mycel": {"include_evidence": true}`; for a stream, the last event before `data: [DONE]` (the one that carries `mycel`)',
    });
  const evidence = mycel.evidence;
  if (evidence === undefined || evidence === null)
    throw invalid("the answer has no `mycel.evidence`", {
      param: "mycel.evidence",
      hint: 'ask for it with `"mycel": {"include_evidence": true}` in the request, and audit that answer',
    });
  const segments: unknown[] = Array.isArray(evidence) ? evidence : [evidence];
  if (segments.length === 0)
    throw invalid("the answer's `mycel.evidence` is an empty array", {
      param: "mycel.evidence",
      hint: 'audit an answer asked with `"mycel": {"include_evidence": true}` as the gateway returned it',
    });
  const path = (base: string, index: number) => (Array.isArray(evidence) ? `${base}[${index}]` : base);
  for (const [index, segment] of segments.entries()) {
    if (isObject(segment) && "error" in segment && !("modelHash" in segment))
      throw invalid(
        `the gateway could not get the answer's evidence from the provider: ${errorText(segment.error)}`,
        {
          param: path("mycel.evidence", index),
          hint: 'only the provider that served an answer holds its evidence (for 7 days): ask again for a new answer with `"mycel": {"include_evidence": true}`, or retry when the provider is back',
        },
      );
    if (!isObject(segment))
      throw invalid(`bad audit input: ${path("mycel.evidence", index)} is ${describeValue(segment)}`, {
        param: path("mycel.evidence", index),
        hint: "each segment's evidence is an object {modelHash, request, promptTokens, outputTokens, fingerprints, finishReason}",
      });
  }
  const receipts = mycel.receipts;
  if (receipts !== undefined && !Array.isArray(receipts))
    throw invalid(`bad audit input: mycel.receipts is ${describeValue(receipts)}, not an array`, {
      param: "mycel.receipts",
      hint: "save the answer exactly as the gateway returned it: mycel.receipts holds one receipt per segment",
    });
  if (receipts !== undefined && receipts.length !== segments.length)
    throw invalid(
      `the answer has ${segments.length} evidence segment${segments.length === 1 ? "" : "s"} but ${receipts.length} receipt${receipts.length === 1 ? "" : "s"}`,
      {
        param: "mycel.receipts",
        hint: "save the answer exactly as the gateway returned it: mycel.evidence and mycel.receipts hold one entry per segment, in the same order",
      },
    );
  return (segments as JsonObject[]).map((segment, index) =>
    parseSegment({
      evidence: segment,
      receipt: receipts?.[index],
      evidencePath: path("mycel.evidence", index),
      receiptPath: `mycel.receipts[${index}]`,
    }),
  );
}

/**
 * Returns the audit inputs in what `mycel audit --input` reads: the flat audit input as it is, or, for a whole API
 * answer, one input per segment (`mycel.evidence`, an object or an array after a failover) with its receipt
 * (`mycel.receipts`, same order; absent from `mycel serve`'s answers). Throws InvalidInputError
 * (`invalid_audit_input`) naming the fix for anything else.
 */
export function auditInputsOf(value: unknown): AuditInputsOfReturnType {
  if (!isObject(value))
    throw invalid(`the audit input is ${describeValue(value)}, neither an API answer nor an audit input`, {
      hint: inputsHint,
    });
  if (isAnswer(value)) return inputsOfAnswer(value);
  if (flatInputKeys.some((key) => key in value)) return [parseAuditInput(value)];
  if ("error" in value)
    throw invalid(`the audit input is an API error, not an answer: ${errorText(value.error)}`, {
      hint: inputsHint,
    });
  throw invalid("the audit input is neither an API answer nor an audit input", {
    details: `its keys: ${Object.keys(value).slice(0, 8).join(", ") || "none"}`,
    hint: inputsHint,
  });
}
