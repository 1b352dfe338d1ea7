/**
 * What node-llama-cpp 3.22.1's `controlledEvaluate` cannot take: a grammar, and logit biases on end-of-generation
 * tokens (its TokenBias skips them). Mycel adds both to the sampler config each sequence resolves, through the
 * sequence's internal `_resolveSamplerConfig`, and walks grammars for audits through the sampler's bindings. The
 * engine tests of grammars and biases fail if an update of node-llama-cpp breaks this.
 */
import type { Llama, LlamaContextSequence, LlamaGrammar, LlamaModel } from "node-llama-cpp";
import { MycelError } from "../errors/index.ts";

/** Sampler settings added to a sequence's next samplings. */
export type SamplerExtras = {
  /** A grammar evaluation state (node-llama-cpp's LlamaGrammarEvaluationState): llama.cpp applies and advances it. */
  grammarState?: unknown;
  /** Token ids and the numbers added to their logits. */
  biasTokens?: Uint32Array;
  biasValues?: Float32Array;
};

type ResolveSamplerConfig = (options: Record<string, unknown>) => Record<string, unknown>;

/** Hooks a sequence once; returns the setter of the extras its next samplings use (undefined: none). */
export function installSamplerHook(
  sequence: LlamaContextSequence,
): (extras: SamplerExtras | undefined) => void {
  const target = sequence as unknown as { _resolveSamplerConfig?: ResolveSamplerConfig };
  const original = target._resolveSamplerConfig;
  if (typeof original !== "function")
    throw new MycelError("this node-llama-cpp has no sampler config hook", {
      code: "engine_unavailable",
      hint: "install the node-llama-cpp version package.json pins (npm install)",
    });
  let extras: SamplerExtras | undefined;
  target._resolveSamplerConfig = function (this: unknown, options) {
    if (!extras) return original.call(this, options);
    const config = original.call(this, { ...options, grammarEvaluationState: extras.grammarState });
    if (extras.biasTokens && extras.biasValues && extras.biasTokens.length > 0) {
      config.tokenBiasKeys = extras.biasTokens;
      config.tokenBiasValues = extras.biasValues;
    }
    return config;
  };
  return (next) => {
    extras = next;
  };
}

type GrammarBindings = {
  canBeNextTokenForGrammarEvaluationState(state: unknown, token: number): boolean;
  acceptGrammarEvaluationStateToken(state: unknown, token: number): void;
};

/** A grammar's state over a sequence of tokens: which token may come next, and taking one. */
export type GrammarWalker = {
  /** The evaluation state, for {@link SamplerExtras.grammarState}. */
  state: unknown;
  allows(token: number): boolean;
  /** Takes a token the grammar allows (end-of-generation tokens leave the state as it is). */
  accept(token: number): void;
};

/** Starts a walk of `grammar` from its beginning, for `model`. */
export async function startGrammarWalk(parameters: {
  llama: Llama;
  model: LlamaModel;
  grammar: LlamaGrammar;
}): Promise<GrammarWalker> {
  const { LlamaGrammarEvaluationState } = await import("node-llama-cpp");
  const state = new LlamaGrammarEvaluationState({ model: parameters.model, grammar: parameters.grammar });
  const bindings = (parameters.llama as unknown as { _bindings: { AddonSampler: GrammarBindings } })._bindings
    .AddonSampler;
  const native = (state as unknown as { _state: unknown })._state;
  return {
    state,
    allows: (token) => bindings.canBeNextTokenForGrammarEvaluationState(native, token),
    accept(token) {
      if (parameters.model.isEogToken(token as never)) return;
      bindings.acceptGrammarEvaluationStateToken(native, token);
    },
  };
}
