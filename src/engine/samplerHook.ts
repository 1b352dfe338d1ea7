/**
 * What node-llama-cpp 3.22.1's `controlledEvaluate` cannot take: a grammar, and logit biases on end-of-generation
 * tokens (its TokenBias skips them). Mycel adds both to the sampler config each sequence resolves, through the
 * sequence's internal `_resolveSamplerConfig`, and walks grammars for audits through the sampler's bindings.
 * Lazy grammars (see {@link LazyGrammar}) also wrap the native `sampleToken` of the sequence's context (one
 * sequence per context), to sample a position again from the same logits. The engine tests of grammars and
 * biases fail if an update of node-llama-cpp breaks this.
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
  /** A grammar applied lazily (instead of `grammarState`, which applies it to every token at every step). */
  lazyGrammar?: LazyGrammar;
};

/**
 * A grammar applied as llama.cpp's server does, so that it costs little where the model keeps to it anyway:
 * a position is sampled without it, and a token the grammar allows is kept (the walker takes it). A token it
 * forbids makes the position be sampled again from the same logits, every forbidden token at -Infinity, with a
 * seed of its own: overall the token is drawn exactly from the grammar-masked distribution. After a rejection
 * the next positions (1, then 2, 4 ... up to {@link maxMaskedRun} while rejections follow each other) are
 * sampled masked at once with the step's own seed, as an eager grammar would, so that a model that keeps
 * breaking the grammar does not pay two draws a position. The mask is -Infinity logit biases on the tokens a
 * walk of the vocabulary's prefix tree finds forbidden ({@link allowedTokens}), or, when that walk takes longer
 * than {@link lazyGrammarWalkBudgetMs}, the grammar itself (llama.cpp over the whole vocabulary): the same
 * logits, seed and mask, so the same token either way; which one ran never changes an answer, and which
 * positions are kept or masked depends only on the tokens drawn, so a seed always gives the same answer.
 */
export type LazyGrammar = {
  walker: GrammarWalker;
  buckets: TokenBuckets;
  /** Told how each position's token was chosen, and whether its mask came from the walk (else the grammar). */
  onSample?: (outcome: LazySampleOutcome, walked: boolean) => void;
};

/** How a lazily constrained position got its token: kept unconstrained, sampled again masked, or masked at once. */
export type LazySampleOutcome = "kept" | "resampled" | "masked";

/** Longest run of positions sampled masked at once after rejections (then one is tried unconstrained again). */
export const maxMaskedRun = 16;

/** Longest a lazy grammar walks the vocabulary before it masks with the grammar itself instead (bench/grammar). */
export const lazyGrammarWalkBudgetMs = 3;

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
  /** The config of the latest sampling: a lazy grammar's second draw starts from it. */
  let lastConfig: Record<string, unknown> = {};
  target._resolveSamplerConfig = function (this: unknown, options) {
    if (!extras) return original.call(this, options);
    const config = original.call(this, { ...options, grammarEvaluationState: extras.grammarState });
    if (extras.biasTokens && extras.biasValues && extras.biasTokens.length > 0) {
      config.tokenBiasKeys = extras.biasTokens;
      config.tokenBiasValues = extras.biasValues;
    }
    lastConfig = config;
    return config;
  };
  const native = nativeOf(sequence);
  const sampleToken = native.context.sampleToken.bind(native.context);
  /** Positions left that a lazy grammar samples masked at once, and how many it will after the next rejection. */
  let schedule = { maskedLeft: 0, backoff: 0, walkSkips: 0, walkBackoff: 0 };
  const lazySampleToken: NativeSampleToken = async (batchLogitIndex, sampler, ...rest) => {
    const lazy = extras?.lazyGrammar;
    if (!lazy) return sampleToken(batchLogitIndex, sampler, ...rest);
    /** One draw from the same logits under the grammar's mask, with a fresh sampler (no history, its own seed). */
    const drawMasked = async (seed: number) => {
      // A walk that ran out of time is not tried again for the next 2, 4 ... 8 masks while that repeats (in a
      // long string every token is allowed): the grammar's mask is the same, so only speed depends on it.
      const skip = schedule.walkSkips > 0;
      if (skip) schedule.walkSkips--;
      const allowed = skip
        ? undefined
        : allowedTokens({ walker: lazy.walker, buckets: lazy.buckets, budgetMs: lazyGrammarWalkBudgetMs });
      if (!skip) {
        schedule.walkBackoff = allowed === undefined ? Math.min(8, Math.max(2, schedule.walkBackoff * 2)) : 0;
        schedule.walkSkips = schedule.walkBackoff;
      }
      const walked = allowed !== undefined && allowed.length > 0;
      const resampler = new native.AddonSampler(native.model);
      try {
        resampler.applyConfig({
          ...lastConfig,
          seed,
          ...(walked
            ? maskedBiases({ allowed, buckets: lazy.buckets, config: lastConfig })
            : { grammarEvaluationState: (lazy.walker.state as { _state: unknown })._state }),
        });
        const result = await sampleToken(batchLogitIndex, resampler, ...rest);
        // llama.cpp's sampler has taken the token into the grammar's state when it applied the grammar.
        if (walked && typeof result[0] === "number" && result[0] >= 0) lazy.walker.accept(result[0]);
        return { result, walked };
      } finally {
        resampler.dispose();
      }
    };
    const stepSeed = Number(lastConfig.seed ?? 0);
    if (schedule.maskedLeft > 0) {
      schedule.maskedLeft--;
      const { result, walked } = await drawMasked(stepSeed);
      lazy.onSample?.("masked", walked);
      return result;
    }
    const first = await sampleToken(batchLogitIndex, sampler, ...rest);
    const token = first[0];
    if (typeof token !== "number" || token < 0 || lazy.walker.allows(token)) {
      if (typeof token === "number" && token >= 0) lazy.walker.accept(token);
      schedule.backoff = 0;
      lazy.onSample?.("kept", false);
      return first;
    }
    schedule.backoff = Math.min(maxMaskedRun, Math.max(1, schedule.backoff * 2));
    schedule.maskedLeft = schedule.backoff;
    const { result, walked } = await drawMasked(resampleSeed(stepSeed));
    lazy.onSample?.("resampled", walked);
    return result;
  };
  // The native method is read-only on its prototype; an own property of the context object shadows it.
  Object.defineProperty(native.context, "sampleToken", { value: lazySampleToken, configurable: true });
  return (next) => {
    extras = next;
    schedule = { maskedLeft: 0, backoff: 0, walkSkips: 0, walkBackoff: 0 };
  };
}

type NativeSampler = { applyConfig(config: Record<string, unknown>): void; dispose(): void };
type NativeSampleToken = (
  batchLogitIndex: number,
  sampler: NativeSampler,
  ...rest: unknown[]
) => Promise<unknown[]>;

/** The native objects behind a sequence: its context, its model, and the sampler class. */
function nativeOf(sequence: LlamaContextSequence) {
  const context = (sequence.context as unknown as { _ctx?: { sampleToken?: NativeSampleToken } })._ctx;
  const model = sequence.model as unknown as {
    _model?: unknown;
    _llama?: { _bindings?: { AddonSampler?: new (model: unknown) => NativeSampler } };
  };
  const AddonSampler = model._llama?._bindings?.AddonSampler;
  if (!context || typeof context.sampleToken !== "function" || !model._model || !AddonSampler)
    throw new MycelError("this node-llama-cpp has no native sampling hook", {
      code: "engine_unavailable",
      hint: "install the node-llama-cpp version package.json pins (npm install)",
    });
  return { context: context as { sampleToken: NativeSampleToken }, model: model._model, AddonSampler };
}

/** The seed of a position's second draw: its own stream, so that it does not reuse the rejected draw's randomness. */
function resampleSeed(seed: number): number {
  return (Math.imul(seed ^ 0x2c1b3c6d, 0x297a2d39) + 0x7feb352d) >>> 1;
}

/** The request's logit biases plus -Infinity on every token outside `allowed`, over the whole vocabulary. */
function maskedBiases(parameters: {
  allowed: readonly number[];
  buckets: TokenBuckets;
  config: Record<string, unknown>;
}) {
  const { allowed, buckets, config } = parameters;
  const values = new Float32Array(buckets.vocabularySize).fill(Number.NEGATIVE_INFINITY);
  for (const token of allowed) values[token] = 0;
  const keys = config.tokenBiasKeys as Uint32Array | undefined;
  const biases = config.tokenBiasValues as Float32Array | undefined;
  if (keys && biases)
    for (const [index, token] of keys.entries())
      if (token < values.length) values[token] = (values[token] as number) + (biases[index] ?? 0);
  return { tokenBiasKeys: buckets.allTokens, tokenBiasValues: values };
}

/**
 * A vocabulary as a tree of token prefixes, so that a grammar is asked only about plausible tokens: each ordinary
 * token hangs under the longest proper prefix of its bytes that is itself a token (or at the top).
 */
export type TokenBuckets = {
  vocabularySize: number;
  /** Every token id, in order (the keys of a whole-vocabulary mask). */
  allTokens: Uint32Array;
  /** Ordinary tokens with no token as a proper prefix (every single-byte token among them). */
  top: Uint32Array;
  /** Per token: the ordinary tokens it is the longest token prefix of. */
  children: (Uint32Array | undefined)[];
  /** Tokens the grammar is always asked about: special, end-of-generation, or without bytes. */
  always: Uint32Array;
};

/**
 * Makes the prefix tree of a vocabulary for {@link allowedTokens}. `ordinary` tokens are those whose piece
 * llama.cpp's grammar reads as their bytes (`bytesOf`); every other token is always asked about.
 */
export function createTokenBuckets(parameters: {
  vocabularySize: number;
  bytesOf: (token: number) => Uint8Array;
  ordinary: (token: number) => boolean;
}): TokenBuckets {
  const { vocabularySize } = parameters;
  const keys: (string | undefined)[] = new Array(vocabularySize);
  const tokenOfKey = new Map<string, number>();
  const always: number[] = [];
  for (let token = 0; token < vocabularySize; token++) {
    const bytes = parameters.ordinary(token) ? parameters.bytesOf(token) : new Uint8Array(0);
    if (bytes.length === 0) {
      always.push(token);
      continue;
    }
    const key = String.fromCharCode(...bytes);
    keys[token] = key;
    if (!tokenOfKey.has(key)) tokenOfKey.set(key, token);
  }
  const top: number[] = [];
  const children: number[][] = new Array(vocabularySize);
  for (let token = 0; token < vocabularySize; token++) {
    const key = keys[token];
    if (key === undefined) continue;
    // A token with the same bytes as an earlier one hangs under it (the grammar judges bytes, not ids).
    let parent = tokenOfKey.get(key);
    if (parent === token) parent = undefined;
    for (let length = key.length - 1; length > 0 && parent === undefined; length--)
      parent = tokenOfKey.get(key.slice(0, length));
    if (parent === undefined) top.push(token);
    else {
      const siblings = children[parent] ?? [];
      siblings.push(token);
      children[parent] = siblings;
    }
  }
  return {
    vocabularySize,
    allTokens: Uint32Array.from({ length: vocabularySize }, (_, token) => token),
    top: Uint32Array.from(top),
    children: Array.from(children, (list) => (list ? Uint32Array.from(list) : undefined)),
    always: Uint32Array.from(always),
  };
}

/**
 * The tokens a walker's grammar allows next, or undefined when finding them takes longer than `budgetMs`.
 * llama.cpp rejects a token at the first byte no rule continues (a partial UTF-8 character is kept while
 * some character could complete it), so a grammar that forbids a token forbids every token its bytes begin:
 * the walk descends the prefix tree only below allowed tokens.
 */
export function allowedTokens(parameters: {
  walker: GrammarWalker;
  buckets: TokenBuckets;
  budgetMs: number;
}): number[] | undefined {
  const { walker, buckets } = parameters;
  const deadline = performance.now() + parameters.budgetMs;
  const allowed: number[] = [];
  for (const token of buckets.always) if (walker.allows(token)) allowed.push(token);
  const pending: Uint32Array[] = [buckets.top];
  let checks = 0;
  for (let list = pending.pop(); list !== undefined; list = pending.pop()) {
    for (const token of list) {
      // A grammar state can make each question cost 30 times more than another; the clock bounds the walk.
      if (++checks % 64 === 0 && performance.now() > deadline) return undefined;
      if (!walker.allows(token)) continue;
      allowed.push(token);
      const below = buckets.children[token];
      if (below) pending.push(below);
    }
  }
  return allowed;
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
