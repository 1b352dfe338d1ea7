/**
 * Re-applying a request's constraints in an audit: the logit biases and repetition penalties the provider had to
 * apply, and the grammar its output had to keep to, at each output position.
 */
import {
  type Engine,
  type GrammarWalker,
  type OutputConstraint,
  type PositionLogprobs,
  penaltiesApply,
  penaltyWindow,
  type RepetitionPenalties,
  requestConstraintOf,
} from "../engine/index.ts";
import type { InferenceRequest } from "../protocol/index.ts";

/** What a request constrains, ready to re-apply. */
export type AuditConstraints = {
  /** Token -> bias added to its logit. */
  bias: ReadonlyMap<number, number>;
  penalties: RepetitionPenalties | undefined;
  /** The output format's constraint (grammar and the check of the finished text), when the request has one. */
  output: OutputConstraint | undefined;
  /** Whether any of them changes what the model's logits alone would say. */
  any: boolean;
};

/**
 * The constraints of a request (compiles its grammar, as the provider did: the tools' grammar for tool_choice
 * "required" or a named function, in the format of the model's chat template, else the response format's).
 */
export async function auditConstraintsOf(
  request: InferenceRequest,
  chatTemplate: string | undefined,
): Promise<AuditConstraints> {
  const bias = new Map(
    Object.entries(request.logit_bias ?? {})
      .map(([token, value]) => [Number(token), value] as const)
      .filter(([, value]) => value !== 0),
  );
  const penalties: RepetitionPenalties = {
    repeat: request.repeat_penalty,
    presence: request.presence_penalty,
    frequency: request.frequency_penalty,
  };
  const output = await requestConstraintOf({
    responseFormat: request.response_format,
    tools: request.tools,
    toolChoice: request.tool_choice,
    parallelToolCalls: request.parallel_tool_calls,
    chatTemplate,
  });
  const applied = penaltiesApply(penalties) ? penalties : undefined;
  return {
    bias,
    penalties: applied,
    output,
    any: bias.size > 0 || applied !== undefined || output !== undefined,
  };
}

/** Tokens whose logits an audit must see beyond the most likely ones: those a positive bias may have lifted. */
export function liftedTokens(constraints: AuditConstraints): number[] {
  return [...constraints.bias].filter(([, value]) => value > 0).map(([token]) => token);
}

/** One output position as the constrained sampler saw it. */
export type ConstrainedPosition = {
  /** The logit of a token after bias and penalties (undefined: the audit did not see the token's logit). */
  adjusted(token: number): number | undefined;
  /** Whether the grammar allows the token here (always true without a grammar). */
  allows(token: number): boolean;
  /** The highest adjusted logit among the tokens seen, overall and among the allowed ones. */
  bestOverall: number;
  bestAllowed: number;
  /** Tokens seen whose adjusted logit is above `value`, among the allowed ones. */
  allowedAbove(value: number): number;
};

/**
 * Walks the output positions in order with the constraints applied: `at(index, position)` must be called for index
 * 0, 1, 2... (the grammar advances by the output token of each position).
 */
export async function walkConstrainedPositions(parameters: {
  engine: Engine;
  modelHash: string;
  constraints: AuditConstraints;
  request: InferenceRequest;
  outputTokens: readonly number[];
}) {
  const { constraints, outputTokens } = parameters;
  const walker: GrammarWalker | undefined = constraints.output
    ? await parameters.engine.walkGrammar({
        modelHash: parameters.modelHash,
        grammar: constraints.output.gbnf,
      })
    : undefined;
  const prefix = parameters.request.prefix_tokens ?? [];
  if (walker) for (const token of prefix) if (walker.allows(token)) walker.accept(token);
  const history = [...prefix];
  const counts = (): Map<number, number> => {
    const window = new Map<number, number>();
    for (const token of history.slice(-penaltyWindow)) window.set(token, (window.get(token) ?? 0) + 1);
    return window;
  };
  return {
    at(index: number, position: PositionLogprobs): ConstrainedPosition {
      const seen = new Map<number, number>();
      for (const entry of [...position.top, ...position.included]) seen.set(entry.token, entry.logprob);
      seen.set(position.token, position.logprob);
      const window = constraints.penalties ? counts() : undefined;
      const adjusted = (token: number) => {
        const logprob = seen.get(token);
        if (logprob === undefined || !Number.isFinite(logprob)) return undefined;
        let logit = logprob + position.logNormalizer + (constraints.bias.get(token) ?? 0);
        const count = window?.get(token) ?? 0;
        if (constraints.penalties && count > 0) {
          const repeat = constraints.penalties.repeat ?? 1;
          logit = logit <= 0 ? logit * repeat : logit / repeat;
          logit -= count * (constraints.penalties.frequency ?? 0) + (constraints.penalties.presence ?? 0);
        }
        return logit;
      };
      // Whether each token seen may come here, asked before the grammar moves on past this position.
      const allowedHere = new Map<number, boolean>();
      if (walker) for (const token of seen.keys()) allowedHere.set(token, walker.allows(token));
      const allows = (token: number) => !walker || allowedHere.get(token) === true;
      let bestOverall = Number.NEGATIVE_INFINITY;
      let bestAllowed = Number.NEGATIVE_INFINITY;
      const scored: [number, number][] = [];
      for (const token of seen.keys()) {
        const value = adjusted(token);
        if (value === undefined) continue;
        scored.push([token, value]);
        bestOverall = Math.max(bestOverall, value);
        if (allows(token)) bestAllowed = Math.max(bestAllowed, value);
      }
      const result: ConstrainedPosition = {
        adjusted,
        allows,
        bestOverall,
        bestAllowed,
        allowedAbove: (value) => scored.filter(([token, score]) => score > value && allows(token)).length,
      };
      const output = outputTokens[index];
      if (output !== undefined) {
        if (walker && allows(output)) walker.accept(output);
        history.push(output);
      }
      return result;
    },
  };
}
