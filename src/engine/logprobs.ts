/** Log-probabilities of an answer's tokens under the model, in the shape the API and the wire carry them. */
import type { Engine } from "./engine.ts";

/** The lowest log-probability written (JSON has no -Infinity; OpenAI writes -9999 for the same). */
export const lowestLogprob = -9999;

/** A token, its bytes and its log-probability. */
export type TokenLogprobEntry = { token: number; bytes: number[]; logprob: number };

/** One output token's log-probability and the most likely alternatives at its position. */
export type OutputLogprob = TokenLogprobEntry & { top: TokenLogprobEntry[] };

/**
 * The log-probabilities of `outputTokens` after `promptTokens`, each with the `top` most likely tokens at its
 * position: the model's own distribution (log-softmax of its logits, before temperature, truncation, penalties,
 * biases or grammar), from one teacher-forced pass as audits make. A final end-of-generation token has none (it
 * wrote no text).
 */
export async function outputLogprobsOf(parameters: {
  engine: Pick<Engine, "evaluate" | "isEndOfGeneration" | "tokenBytes">;
  modelHash: string;
  promptTokens: readonly number[];
  outputTokens: readonly number[];
  top: number;
  signal?: AbortSignal;
}): Promise<OutputLogprob[]> {
  const { engine, modelHash } = parameters;
  const last = parameters.outputTokens[parameters.outputTokens.length - 1];
  const scored =
    last !== undefined && engine.isEndOfGeneration({ modelHash, token: last })
      ? parameters.outputTokens.slice(0, -1)
      : parameters.outputTokens;
  if (scored.length === 0) return [];
  const evaluation = await engine.evaluate({
    modelHash,
    promptTokens: parameters.promptTokens,
    outputTokens: scored,
    topK: Math.max(1, parameters.top),
    signal: parameters.signal,
  });
  const entry = (token: number, logprob: number): TokenLogprobEntry => ({
    token,
    bytes: [...engine.tokenBytes({ modelHash, token })],
    logprob: Number.isFinite(logprob) ? Math.max(lowestLogprob, logprob) : lowestLogprob,
  });
  return evaluation.positions.map((position) => ({
    ...entry(position.token, position.logprob),
    top: position.top
      .slice(0, parameters.top)
      .map((alternative) => entry(alternative.token, alternative.logprob)),
  }));
}
