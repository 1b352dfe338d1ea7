/**
 * Auditing an answer: re-evaluate prompt + output with the claimed model in one teacher-forced pass and check
 * the prompt, every token, the fingerprints, the streamed text, the accounting and the receipt.
 */
import { getAddress } from "viem";
import type { Engine, LoadedModelInfo } from "../engine/index.ts";
import {
  type AuditInput,
  evidenceCommitment,
  fingerprintAt,
  fingerprintChunkTokens,
  fingerprintGapScale,
  fingerprintPositions,
  hashRequest,
  hashStreamedText,
  hashTokenIds,
  recoverReceiptSigner,
  type SignedReceipt,
} from "../protocol/index.ts";
import {
  type AuditConstraints,
  auditConstraintsOf,
  type ConstrainedPosition,
  liftedTokens,
  walkConstrainedPositions,
} from "./constraints.ts";
import { reEvaluationBatchesOf } from "./reEvaluation.ts";
import { type AuditTolerances, impossibleLogprob, minChunkPositions, tolerancesFor } from "./tolerances.ts";

/** Why an answer failed its audit: a stable code and a sentence naming what was wrong. */
export type AuditReason = { code: AuditReasonCode; message: string };

/** The codes of {@link AuditReason}. */
export type AuditReasonCode =
  | "prompt_mismatch"
  | "fingerprints_incomplete"
  | "fingerprint_mismatch"
  | "implausible_token"
  | "not_argmax"
  | "finish_reason_dishonest"
  | "usage_dishonest"
  | "receipt_invalid"
  /** An output token the request's grammar (response_format) did not allow, or a finished answer that breaks its format. */
  | "constraint_violated"
  /** The provider did not hand over the evidence of its answer (validators record this; auditAnswer never does). */
  | "evidence_unavailable"
  /** The text the provider committed to streaming (evidence `textHash`) is not the text of its output tokens. */
  | "text_mismatch";

/** Figures an audit measured. */
export type AuditMetrics = {
  weightType: string;
  promptTokens: number;
  outputTokens: number;
  temperature: number;
  /** Mean over positions of |provider gap - validator gap| (nats), over every fingerprinted token. */
  meanGapError: number;
  /** The largest chunk mean of that error, over chunks of at least minChunkPositions positions. */
  worstChunkGapError: number;
  /** The largest single-position error. */
  maxGapError: number;
  /** Output tokens that were not the claimed model's argmax (temperature 0), and how many of them were near-ties. */
  notArgmax: number;
  nearTies: number;
  /** Mean and lowest log-probability of the output tokens under the claimed model. */
  meanLogprob: number;
  minLogprob: number;
  evaluateMs: number;
  tolerances: AuditTolerances;
};

/** An audit's outcome. */
export type AuditVerdict = { verdict: "pass" | "fail"; reasons: AuditReason[]; metrics: AuditMetrics };

/** Parameters of {@link auditAnswer}. */
export type AuditAnswerParameters = {
  /** An engine with the claimed model loaded. */
  engine: Engine;
  input: AuditInput;
  /** Override the calibrated tolerances (calibration runs do). */
  tolerances?: AuditTolerances;
  signal?: AbortSignal;
};

function round(value: number, digits = 4): number {
  if (!Number.isFinite(value)) return value;
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/**
 * The prompt tokens the request may have produced: chat template + tokenization (+ a continuation prefix). A chat
 * prompt is the whole rendered template tokenized once, a text prompt as llama.cpp's server tokenizes it; the forms
 * Mycel made before (template text and message contents tokenized apart; text with no BOS and special-token
 * strings as text) are accepted too, so that answers and receipts made before the change stay auditable.
 */
function expectedPromptTokens(engine: Engine, model: LoadedModelInfo, input: AuditInput): number[][] {
  const { request } = input;
  const prefix = request.prefix_tokens ?? [];
  if (request.kind === "chat") {
    const messages = request.messages ?? [];
    const whole = engine.tokenizeChat({
      modelHash: model.hash,
      messages,
      ...(request.tools ? { tools: request.tools } : {}),
    });
    // Requests with tools came after whole-prompt tokenization: no earlier form to accept.
    if (request.tools) return [[...whole, ...prefix]];
    const legacy = engine.tokenizeChatLegacy({ modelHash: model.hash, messages });
    return [
      [...whole, ...prefix],
      [...legacy, ...prefix],
    ];
  }
  if (typeof request.prompt !== "string") return [[...(request.prompt ?? []), ...prefix]];
  // A text prompt as llama.cpp's server tokenizes it (BOS when the model asks, special tokens parsed), or as Mycel
  // did before (plain text, no BOS): receipts made before the change stay auditable.
  const completion = engine.tokenizeCompletion({ modelHash: model.hash, text: request.prompt });
  const legacy = engine.tokenizeText({ modelHash: model.hash, text: request.prompt });
  return [
    [...completion, ...prefix],
    [...legacy, ...prefix],
  ];
}

async function checkReceipt(input: AuditInput, receipt: SignedReceipt, reasons: AuditReason[]) {
  const message = receipt.message;
  const bad = (code: AuditReasonCode, text: string) => reasons.push({ code, message: text });
  try {
    const signer = await recoverReceiptSigner(receipt);
    if (getAddress(signer) !== getAddress(message.provider))
      bad("receipt_invalid", `the receipt names provider ${message.provider} but was signed by ${signer}`);
  } catch {
    bad("receipt_invalid", "the receipt's signature cannot be recovered");
  }
  if (message.modelHash !== input.modelHash) bad("receipt_invalid", "the receipt names another model");
  if (message.modelHash !== input.request.model_hash)
    bad("receipt_invalid", "the request names another model");
  if (message.requestHash !== hashRequest(input.request))
    bad("receipt_invalid", "the receipt's requestHash is not the hash of the request");
  if (message.promptHash !== hashTokenIds(input.promptTokens))
    bad("receipt_invalid", "the receipt's promptHash is not the hash of the prompt tokens");
  if (message.outputHash !== hashTokenIds(input.outputTokens))
    bad("receipt_invalid", "the receipt's outputHash is not the hash of the output tokens");
  if (message.commitment !== evidenceCommitment(input))
    bad(
      "receipt_invalid",
      input.textHash === undefined
        ? "the receipt's commitment does not match the fingerprints and finish reason (and the evidence has no textHash)"
        : "the receipt's commitment does not match the fingerprints, finish reason and textHash",
    );
  if (message.promptTokens !== input.promptTokens.length)
    bad(
      "usage_dishonest",
      `the receipt counts ${message.promptTokens} prompt tokens; the prompt has ${input.promptTokens.length}`,
    );
  if (message.completionTokens !== input.outputTokens.length)
    bad(
      "usage_dishonest",
      `the receipt counts ${message.completionTokens} completion tokens; the output has ${input.outputTokens.length}`,
    );
}

/** Checks the claimed finish reason against the tokens: no truncation claimed as stop, no early stop. */
function checkFinish(engine: Engine, model: LoadedModelInfo, input: AuditInput, reasons: AuditReason[]) {
  const { outputTokens, request } = input;
  const isEnd = (token: number) => engine.isEndOfGeneration({ modelHash: model.hash, token });
  const early = outputTokens.slice(0, -1).findIndex(isEnd);
  if (early >= 0)
    reasons.push({
      code: "finish_reason_dishonest",
      message: `output token ${early} ends generation, yet ${outputTokens.length - early - 1} tokens follow it`,
    });
  const last = outputTokens[outputTokens.length - 1];
  const endsWithEog = last !== undefined && isEnd(last);
  const text = (tokens: readonly number[]) => engine.detokenize({ modelHash: model.hash, tokens });
  const stops = request.stop ?? [];
  // A continuation's text goes on from its prefix: a stop sequence begun in the prefix may complete in the output
  // (one completed inside the prefix does not count: generation went on past it).
  const prefix = request.prefix_tokens ?? [];
  const prefixLength = prefix.length > 0 ? text(prefix).length : 0;
  const completesStop = (tokens: readonly number[]) => {
    const value = text([...prefix, ...tokens]);
    return stops.some((stop) => value.indexOf(stop, Math.max(0, prefixLength - stop.length + 1)) !== -1);
  };
  // Generation ends at the token that completes a stop sequence: one completed earlier means tokens were
  // generated (and billed) past the end.
  const stopInFull = stops.length > 0 && completesStop(outputTokens);
  const stopBeforeLast = stops.length > 0 && completesStop(outputTokens.slice(0, -1));
  if (stopBeforeLast)
    reasons.push({
      code: "finish_reason_dishonest",
      message: "a stop sequence completes before the last output token: the answer runs on past its end",
    });
  if (input.finishReason === "stop") {
    if (!endsWithEog && !stopInFull)
      reasons.push({
        code: "finish_reason_dishonest",
        message: `finish_reason "stop", but the last of ${outputTokens.length} tokens is no end-of-generation token and no stop sequence was produced (a truncated answer)`,
      });
    return;
  }
  if (endsWithEog)
    reasons.push({
      code: "finish_reason_dishonest",
      message: 'finish_reason "length", but the answer ends with an end-of-generation token',
    });
  if (stopInFull && !stopBeforeLast)
    reasons.push({
      code: "finish_reason_dishonest",
      message: 'finish_reason "length", but the answer completes a stop sequence (it stopped)',
    });
  const limit = request.max_tokens;
  const contextFull = input.promptTokens.length + outputTokens.length >= model.contextSize;
  if ((limit === undefined || outputTokens.length < limit) && !contextFull)
    reasons.push({
      code: "finish_reason_dishonest",
      message: `finish_reason "length" after ${outputTokens.length} tokens, below max_tokens ${limit ?? "(none)"} and the context window (an answer cut short)`,
    });
  if (limit !== undefined && outputTokens.length > limit)
    reasons.push({
      code: "usage_dishonest",
      message: `${outputTokens.length} output tokens exceed max_tokens ${limit}`,
    });
}

/**
 * Compares the provider's fingerprint gaps with the validator's at every position, on logits after the request's
 * biases and penalties (the distribution the provider sampled from).
 */
function compareFingerprints(input: AuditInput, positions: readonly ConstrainedPosition[]) {
  const errors: number[] = [];
  for (let index = 0; index < positions.length; index++) {
    const claimed = fingerprintAt(input.fingerprints, index);
    const measured = positions[index];
    if (!claimed || !measured) continue;
    const scoreOf = (token: number) => measured.adjusted(token) ?? Number.NEGATIVE_INFINITY;
    const top = claimed.ids[0] as number;
    const base = scoreOf(top);
    let worst = 0;
    claimed.gaps.forEach((gap, slot) => {
      const other = scoreOf(claimed.ids[slot + 1] as number);
      const error = Math.abs(base - other - gap / fingerprintGapScale);
      worst = Math.max(worst, Number.isFinite(error) ? error : 1e9);
    });
    // The provider's most likely token must be (nearly) the validator's most likely one: among the tokens the
    // grammar allows when it is one of them (a grammar-masked distribution), else among all.
    const reference = measured.allows(top) ? measured.bestAllowed : measured.bestOverall;
    const topGap = reference - base;
    worst = Math.max(worst, Number.isFinite(topGap) ? topGap : 1e9);
    errors.push(worst);
  }
  return errors;
}

/** A finished answer (ended by an end-of-generation token) must keep to its output format as a whole. */
function checkOutputFormat(
  engine: Engine,
  model: LoadedModelInfo,
  input: AuditInput,
  constraints: AuditConstraints,
  reasons: AuditReason[],
) {
  const last = input.outputTokens[input.outputTokens.length - 1];
  if (
    !constraints.output ||
    last === undefined ||
    !engine.isEndOfGeneration({ modelHash: model.hash, token: last })
  )
    return;
  const prefix = input.request.prefix_tokens ?? [];
  const text = engine.detokenize({
    modelHash: model.hash,
    tokens: [...prefix, ...input.outputTokens.slice(0, -1)],
  });
  const violation = constraints.output.violation(text);
  if (violation) reasons.push({ code: "constraint_violated", message: violation });
}

/**
 * The text the provider committed to (evidence `textHash`, bound by the receipt's commitment) must be the text the
 * engine streams for the output tokens: decoded, stop sequences cut, after a continuation's prefix. Evidence from
 * before receipts bound the text has no `textHash`: there is nothing to check.
 */
function checkText(engine: Engine, model: LoadedModelInfo, input: AuditInput, reasons: AuditReason[]) {
  if (input.textHash === undefined) return;
  const text = engine.streamedText({
    modelHash: model.hash,
    prefixTokens: input.request.prefix_tokens ?? [],
    outputTokens: input.outputTokens,
    stop: input.request.stop,
  });
  const expected = hashStreamedText(text);
  if (expected === input.textHash) return;
  reasons.push({
    code: "text_mismatch",
    message: `the text the provider committed to streaming (keccak256 ${input.textHash}) is not the text of its ${input.outputTokens.length} output tokens (${text.length} characters, keccak256 ${expected})`,
  });
}

/** The prompt tokens must be the request's, as the model's template and tokenizer make them. */
function checkPrompt(engine: Engine, model: LoadedModelInfo, input: AuditInput, reasons: AuditReason[]) {
  const candidates = expectedPromptTokens(engine, model, input);
  const matches = (tokens: number[]) =>
    tokens.length === input.promptTokens.length &&
    tokens.every((token, index) => input.promptTokens[index] === token);
  const expected = candidates[0] ?? [];
  if (candidates.some(matches)) return;
  const firstDifference = expected.findIndex((token, index) => input.promptTokens[index] !== token);
  reasons.push({
    code: "prompt_mismatch",
    message: `the prompt tokens are not the chat template and tokenization of the request (${input.promptTokens.length} tokens given, ${expected.length} expected, first difference at ${firstDifference >= 0 ? firstDifference : Math.min(expected.length, input.promptTokens.length)})`,
  });
}

/** The request's constraints; a request whose constraints no grammar enforces should have been refused. */
async function constraintsOrViolation(
  input: AuditInput,
  model: LoadedModelInfo,
  reasons: AuditReason[],
): Promise<AuditConstraints> {
  try {
    return await auditConstraintsOf(input.request, model.chatTemplate);
  } catch (error) {
    reasons.push({
      code: "constraint_violated",
      message: `the request's constraints cannot be enforced: ${error instanceof Error ? error.message : String(error)}`,
    });
    return { bias: new Map(), penalties: undefined, output: undefined, any: true };
  }
}

/**
 * Audits one answer. The claimed model must be loaded in the engine (by the hash in `input.modelHash`); the
 * input must already be valid against `auditInputSchema`. Never throws for a dishonest answer: it fails.
 */
export async function auditAnswer(parameters: AuditAnswerParameters): Promise<AuditVerdict> {
  const { engine, input } = parameters;
  const model = engine.findModel(input.modelHash.slice(2));
  const tolerances = parameters.tolerances ?? tolerancesFor(model.weightType);
  const reasons: AuditReason[] = [];
  const { request } = input;

  checkPrompt(engine, model, input, reasons);
  const covered = fingerprintPositions(input.fingerprints);
  if (covered !== input.outputTokens.length)
    reasons.push({
      code: "fingerprints_incomplete",
      message: `the fingerprints cover ${covered} positions; the output has ${input.outputTokens.length} tokens (one chunk per ${fingerprintChunkTokens})`,
    });
  if (input.receipt) await checkReceipt(input, input.receipt as SignedReceipt, reasons);
  checkFinish(engine, model, input, reasons);
  checkText(engine, model, input, reasons);
  const constraints = await constraintsOrViolation(input, model, reasons);
  checkOutputFormat(engine, model, input, constraints, reasons);
  const lifted = liftedTokens(constraints);

  const started = performance.now();
  // Under constraints the best allowed token may rank lower in the model's own distribution: look further.
  const topK = constraints.any ? 64 : Math.max(8, Math.min(64, request.top_k));
  const evaluation =
    input.outputTokens.length === 0
      ? { positions: [] }
      : await engine.evaluate({
          modelHash: model.hash,
          promptTokens: input.promptTokens,
          outputTokens: input.outputTokens,
          topK,
          ...reEvaluationBatchesOf(input),
          includeTokens: input.outputTokens.map((_, index) => [
            ...(fingerprintAt(input.fingerprints, index)?.ids ?? []),
            ...lifted,
          ]),
          signal: parameters.signal,
        });
  const evaluateMs = performance.now() - started;
  const positions = evaluation.positions;
  const walk = await walkConstrainedPositions({
    engine,
    modelHash: model.hash,
    constraints,
    request,
    outputTokens: input.outputTokens,
  });
  const constrained = positions.map((position, index) => walk.at(index, position));

  // Every output token must be one the claimed model could have produced with the request's sampling, biases,
  // penalties and grammar: allowed by the grammar, and at temperature 0 the best allowed token after biases and
  // penalties.
  let notArgmax = 0;
  let nearTies = 0;
  let firstNotArgmax = -1;
  let firstImpossible = -1;
  let firstOutsideTopK = -1;
  let firstDisallowed = -1;
  let firstForeignFingerprint = -1;
  for (const [index, position] of positions.entries()) {
    const view = constrained[index] as ConstrainedPosition;
    const score = view.adjusted(position.token) ?? Number.NEGATIVE_INFINITY;
    const below = view.bestAllowed - score;
    if (!view.allows(position.token) && firstDisallowed < 0) firstDisallowed = index;
    // A lazy grammar records the model's own distribution where its token was allowed and the masked one where it
    // was not; greedy, the top token of either is the token chosen, so one the grammar allows. A fingerprint whose
    // top token the grammar forbids was not sampled under the grammar (it hides the allowed tokens preferred).
    const claimedTop = fingerprintAt(input.fingerprints, index)?.ids[0];
    if (
      constraints.output &&
      request.temperature === 0 &&
      firstForeignFingerprint < 0 &&
      claimedTop !== undefined &&
      !view.allows(claimedTop)
    )
      firstForeignFingerprint = index;
    const impossible = constraints.any ? below > -impossibleLogprob : position.logprob < impossibleLogprob;
    if (impossible && firstImpossible < 0) firstImpossible = index;
    if (request.temperature === 0 && below > 0) {
      if (below <= tolerances.nearTie) nearTies++;
      else {
        notArgmax++;
        if (firstNotArgmax < 0) firstNotArgmax = index;
      }
    }
    if (request.temperature > 0 && request.top_k > 0 && request.top_k <= topK) {
      const outside = view.allowedAbove(score + tolerances.nearTie) >= request.top_k;
      if (outside && firstOutsideTopK < 0) firstOutsideTopK = index;
    }
  }
  if (firstDisallowed >= 0)
    reasons.push({
      code: "constraint_violated",
      message: `output token ${firstDisallowed} is not allowed by the request's grammar (response_format) at its position`,
    });
  if (firstForeignFingerprint >= 0)
    reasons.push({
      code: "fingerprint_mismatch",
      message: `the fingerprint of output position ${firstForeignFingerprint} has a top token the request's grammar forbids there: it was not sampled under the grammar`,
    });
  if (firstImpossible >= 0)
    reasons.push({
      code: "implausible_token",
      message: `output token ${firstImpossible} has log-probability ${round(positions[firstImpossible]?.logprob ?? 0, 2)} under the claimed model (below ${impossibleLogprob})`,
    });
  if (notArgmax > 0)
    reasons.push({
      code: "not_argmax",
      message: `${notArgmax} of ${positions.length} tokens are not the claimed model's most likely token at temperature 0 (first at ${firstNotArgmax}), beyond near-ties of ${tolerances.nearTie} nats`,
    });
  if (firstOutsideTopK >= 0)
    reasons.push({
      code: "implausible_token",
      message: `output token ${firstOutsideTopK} is outside the top ${request.top_k} tokens the request allowed`,
    });

  const errors = compareFingerprints(input, constrained);
  const meanGapError = errors.length > 0 ? errors.reduce((sum, value) => sum + value, 0) / errors.length : 0;
  const maxGapError = errors.reduce((max, value) => Math.max(max, value), 0);
  let worstChunkGapError = 0;
  for (let start = 0; start < errors.length; start += fingerprintChunkTokens) {
    const chunk = errors.slice(start, start + fingerprintChunkTokens);
    if (chunk.length < minChunkPositions) continue;
    worstChunkGapError = Math.max(
      worstChunkGapError,
      chunk.reduce((sum, value) => sum + value, 0) / chunk.length,
    );
  }
  if (worstChunkGapError > tolerances.chunkMeanGapError || maxGapError > tolerances.positionGapError) {
    reasons.push({
      code: "fingerprint_mismatch",
      message: `the fingerprints disagree with the claimed model: worst chunk mean error ${round(worstChunkGapError)} nats (tolerance ${tolerances.chunkMeanGapError}), largest ${round(maxGapError)} (tolerance ${tolerances.positionGapError})`,
    });
  }

  const logprobs = positions.map((position) => position.logprob);
  const metrics: AuditMetrics = {
    weightType: model.weightType,
    promptTokens: input.promptTokens.length,
    outputTokens: input.outputTokens.length,
    temperature: request.temperature,
    meanGapError: round(meanGapError),
    worstChunkGapError: round(worstChunkGapError),
    maxGapError: round(maxGapError),
    notArgmax,
    nearTies,
    meanLogprob: round(
      logprobs.length > 0 ? logprobs.reduce((sum, value) => sum + value, 0) / logprobs.length : 0,
    ),
    minLogprob: round(logprobs.length > 0 ? Math.min(...logprobs) : 0),
    evaluateMs: round(evaluateMs, 1),
    tolerances,
  };
  return { verdict: reasons.length === 0 ? "pass" : "fail", reasons, metrics };
}
