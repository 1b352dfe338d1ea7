/**
 * What node-llama-cpp 3.22.1's `controlledEvaluate` cannot take: a grammar, and logit biases on end-of-generation
 * tokens (its TokenBias skips them). Mycel adds both to the sampler config each sequence resolves, through the
 * sequence's internal `_resolveSamplerConfig`, and walks grammars for audits through the sampler's bindings.
 * Lazy grammars (see {@link LazyGrammar}) also wrap the native `sampleToken` of the sequence's context (one
 * sequence per context), to sample a position again from the same logits. The same wrapper finds top logits (the
 * evidence of generation, the scores of an audit) with a second, top-k sampler instead of node-llama-cpp's sort of
 * the whole vocabulary ({@link cheapTopSplitOf}). The engine tests of grammars, biases and evidence
 * (test/engine/evidenceTop.test.ts) fail if an update of node-llama-cpp breaks this.
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
 * forbids makes the position be drawn again from the same logits under the grammar, with a seed of its own. After
 * a rejection the next positions (1, then 2, 4 ... up to {@link maxMaskedRun} while rejections follow each other)
 * are drawn under the grammar at once with the step's own seed, as an eager grammar would, so that a model that
 * keeps breaking the grammar does not pay two draws a position.
 *
 * A draw under the grammar takes one of two ways, chosen from the grammar's state alone (so a seed always gives
 * the same answer). Where the grammar allows most tokens (inside a string: {@link allowsMostTokens} over a fixed
 * probe of the vocabulary), by exclusion: draws from the same logits with every token found forbidden so far at
 * -Infinity, until one is allowed (at most {@link maxExclusionDraws}, each costing one plain draw). Elsewhere, and
 * when exclusion runs out, by a mask: -Infinity biases on every token a walk of the vocabulary's prefix tree finds
 * forbidden ({@link allowedTokens}), or, when that walk takes longer than {@link lazyGrammarWalkBudgetMs}, the
 * grammar itself (llama.cpp over the whole vocabulary); walk and grammar give the same token. Without top-k, top-p
 * or min-p truncation (the API's defaults) every way draws exactly from the grammar-masked distribution
 * (excluding forbidden tokens one by one keeps the allowed ones' odds); greedy, every way gives the best allowed
 * token. With truncation, exclusion is not used, and a kept first draw is what llama.cpp's server keeps too.
 */
export type LazyGrammar = {
  walker: GrammarWalker;
  buckets: TokenBuckets;
  /** Told how each position's token was chosen, and how a draw under the grammar ran (undefined when kept). */
  onSample?: (outcome: LazySampleOutcome, way: ConstrainedDrawWay | undefined) => void;
};

/** How a draw under the grammar found its token: by exclusion, by a walk's mask, or by the grammar's own mask. */
export type ConstrainedDrawWay = "exclusion" | "walk" | "grammar";

/** How a lazily constrained position got its token: kept unconstrained, sampled again masked, or masked at once. */
export type LazySampleOutcome = "kept" | "resampled" | "masked";

/** Longest run of positions sampled masked at once after rejections (then one is tried unconstrained again). */
export const maxMaskedRun = 16;

/** Longest a lazy grammar walks the vocabulary before it masks with the grammar itself instead (bench/grammar). */
export const lazyGrammarWalkBudgetMs = 16;

/** Most questions a lazy grammar's walk may need before it masks with the grammar itself instead (bench/grammar). */
export const lazyGrammarWalkMaxChecks = 4096;

/** Most draws by exclusion at one position before it is masked instead. */
export const maxExclusionDraws = 3;

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
    if (!extras) {
      lastConfig = original.call(this, options);
      return lastConfig;
    }
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
  let schedule = { maskedLeft: 0, backoff: 0 };
  /** One draw from the same logits with a fresh sampler (no history, its own seed) and some sampler settings changed. */
  const drawWith = async (parameters: {
    batchLogitIndex: number;
    config: Record<string, unknown>;
    rest: unknown[];
  }) => {
    const resampler = new native.AddonSampler(native.model);
    try {
      resampler.applyConfig({ ...lastConfig, ...parameters.config });
      return await sampleToken(parameters.batchLogitIndex, resampler, ...parameters.rest);
    } finally {
      resampler.dispose();
    }
  };
  /** The sampler that finds top logits (kept: it holds no state between positions). */
  let topSampler: NativeSampler | undefined;
  /**
   * A sampling that also asks for the top logits, without node-llama-cpp's sort of the whole vocabulary: the token
   * (and any other figures asked for) from the sampler as asked, the top logits from a second sampler over the
   * same logits that keeps only the top ones (llama.cpp's top-k: a partial sort). Same token, same top logits.
   */
  const sampleWithCheapTop: NativeSampleToken = async (batchLogitIndex, sampler, ...rest) => {
    const split = cheapTopSplitOf(rest, lastConfig);
    if (!split) return sampleToken(batchLogitIndex, sampler, ...rest);
    const topRest = [false, false, [[], false, false, false, split.topCount], false];
    let top: unknown[];
    // A repeat penalty keeps the tokens a sampler took: such a config gets a fresh sampler, as the sampling had.
    if (lastConfig.repeatPenaltyTokens !== undefined)
      top = await drawWith({ batchLogitIndex, config: split.topConfig, rest: topRest });
    else {
      topSampler ??= new native.AddonSampler(native.model);
      topSampler.applyConfig({ ...lastConfig, ...split.topConfig });
      top = await sampleToken(batchLogitIndex, topSampler, ...topRest);
    }
    // The sampling itself reads only the asked-for tokens the top does not hold (a pass over the vocabulary each).
    const main = await sampleToken(batchLogitIndex, sampler, ...withoutTokensIn(split.mainRest, top[3]));
    return withMergedLogits(main, top[3]);
  };
  /**
   * One draw under the grammar's mask: a walk's biases, or the grammar itself where the grammar allows most tokens
   * (a walk would ask about all of them) or when the walk runs out of time. Both give the same token.
   */
  const drawMasked = async (parameters: {
    lazy: LazyGrammar;
    seed: number;
    batchLogitIndex: number;
    rest: unknown[];
    wide: boolean;
  }) => {
    const { lazy } = parameters;
    const allowed = parameters.wide
      ? undefined
      : allowedTokens({
          walker: lazy.walker,
          buckets: lazy.buckets,
          budgetMs: lazyGrammarWalkBudgetMs,
          maxChecks: lazyGrammarWalkMaxChecks,
        });
    const walked = allowed !== undefined && allowed.length > 0;
    const result = await drawWith({
      batchLogitIndex: parameters.batchLogitIndex,
      rest: parameters.rest,
      config: {
        seed: parameters.seed,
        ...(walked
          ? maskedBiases({ allowed, buckets: lazy.buckets, config: lastConfig })
          : { grammarEvaluationState: (lazy.walker.state as { _state: unknown })._state }),
      },
    });
    // llama.cpp's sampler has taken the token into the grammar's state when it applied the grammar.
    if (walked && typeof result[0] === "number" && result[0] >= 0) lazy.walker.accept(result[0]);
    return { result, way: (walked ? "walk" : "grammar") as ConstrainedDrawWay };
  };
  /**
   * One position drawn under the grammar (after `rejected` tokens, which it forbids, were drawn): by exclusion where
   * the grammar allows most tokens and the sampler does not truncate, else (and when exclusion runs out) masked.
   * `earlier` is the position's first draw, whose logits a draw that does not ask for them again reuses.
   */
  const drawConstrained = async (parameters: {
    lazy: LazyGrammar;
    seed: number;
    batchLogitIndex: number;
    rest: unknown[];
    rejected: number[];
    earlier?: unknown[];
  }) => {
    const { lazy, batchLogitIndex, rest } = parameters;
    const wide = allowsMostTokens(lazy);
    if (wide && exclusionIsExact(lastConfig)) {
      const excluded = [...parameters.rejected];
      // The evidence: sampled, the position's own logits (a draw with nothing excluded, as where a token is kept),
      // so later draws need only their token; greedy, the logits of the draw whose token is kept (its top token,
      // the best allowed one, as under a mask).
      const sampled = Number(lastConfig.temperature ?? 0) > 0;
      const tokenOnly = sampled && rest[0] === false && rest[1] === false;
      let evidence = parameters.earlier;
      for (let draw = 0; draw < maxExclusionDraws; draw++) {
        const result = await drawWith({
          batchLogitIndex,
          rest: evidence && tokenOnly ? [false, false, false, false] : rest,
          config: { seed: exclusionSeed(parameters.seed, draw), ...excludedBiases(excluded, lastConfig) },
        });
        evidence ??= result;
        const token = result[0];
        if (typeof token !== "number" || token < 0 || lazy.walker.allows(token)) {
          if (typeof token === "number" && token >= 0) lazy.walker.accept(token);
          return { result: sampled ? [token, ...evidence.slice(1)] : result, way: "exclusion" as const };
        }
        excluded.push(token);
      }
    }
    return drawMasked({ lazy, seed: parameters.seed, batchLogitIndex, rest, wide });
  };
  const lazySampleToken: NativeSampleToken = async (batchLogitIndex, sampler, ...rest) => {
    const lazy = extras?.lazyGrammar;
    if (!lazy) return sampleWithCheapTop(batchLogitIndex, sampler, ...rest);
    const stepSeed = Number(lastConfig.seed ?? 0);
    if (schedule.maskedLeft > 0) {
      schedule.maskedLeft--;
      const { result, way } = await drawConstrained({
        lazy,
        seed: stepSeed,
        batchLogitIndex,
        rest,
        rejected: [],
      });
      lazy.onSample?.("masked", way);
      return result;
    }
    const first = await sampleWithCheapTop(batchLogitIndex, sampler, ...rest);
    const token = first[0];
    if (typeof token !== "number" || token < 0 || lazy.walker.allows(token)) {
      if (typeof token === "number" && token >= 0) lazy.walker.accept(token);
      schedule.backoff = 0;
      lazy.onSample?.("kept", undefined);
      return first;
    }
    schedule.backoff = Math.min(maxMaskedRun, Math.max(1, schedule.backoff * 2));
    schedule.maskedLeft = schedule.backoff;
    const { result, way } = await drawConstrained({
      lazy,
      seed: resampleSeed(stepSeed),
      batchLogitIndex,
      rest,
      rejected: [token],
      earlier: first,
    });
    lazy.onSample?.("resampled", way);
    return result;
  };
  // The native method is read-only on its prototype; an own property of the context object shadows it.
  Object.defineProperty(native.context, "sampleToken", { value: lazySampleToken, configurable: true });
  return (next) => {
    extras = next;
    schedule = { maskedLeft: 0, backoff: 0 };
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

/**
 * How a sampling that asks for its top logits splits in two (undefined: it does not): the arguments of the sampling
 * itself (the same, less the top logits) and the config of the sampler that finds the top logits. Only where the
 * top of the distribution sampled from is the top of a top-k cut of the same chain: no grammar applied by llama.cpp
 * (it would take the second sampler's token), and, sampled, no truncation that depends on the whole distribution
 * (top-p, min-p, XTC, DRY).
 */
export function cheapTopSplitOf(
  rest: readonly unknown[],
  config: Record<string, unknown>,
): { mainRest: unknown[]; topConfig: Record<string, unknown>; topCount: number } | undefined {
  const [probabilities, confidence, logits, totalLogitWeight] = rest;
  if (probabilities || confidence || !Array.isArray(logits)) return undefined;
  const [tokens, includeMax, includeMin, includeSelected, includeTop] = logits as [
    unknown[],
    boolean,
    boolean,
    boolean,
    number,
  ];
  if (!(Number(includeTop) > 0) || includeMin) return undefined;
  if (config.grammarEvaluationState !== undefined || config.dryRepeatPenaltyStrength !== undefined)
    return undefined;
  const temperature = Number(config.temperature ?? 0);
  if (temperature > 0 && !exclusionIsExact({ ...config, topK: 0 })) return undefined;
  const userTopK = temperature > 0 ? Number(config.topK ?? 0) : 0;
  const topCount = userTopK > 0 ? Math.min(userTopK, includeTop) : includeTop;
  const filtered = tokens.length > 0 || includeMax || includeSelected;
  return {
    mainRest: [false, false, filtered ? [tokens, false, false, includeSelected, 0] : false, totalLogitWeight],
    topConfig: { temperature: temperature > 0 ? temperature : 1, topK: topCount, topP: 1, minP: 0 },
    topCount,
  };
}

/** The sampling's arguments without the filtered tokens a top list (flat [token, value, ...]) already holds. */
function withoutTokensIn(rest: unknown[], top: unknown): unknown[] {
  const logits = rest[2];
  if (!Array.isArray(logits) || !Array.isArray(top)) return rest;
  const [tokens, , , includeSelected] = logits as [number[], boolean, boolean, boolean, number];
  const held = new Set<unknown>();
  for (let index = 0; index < top.length; index += 2) held.add(top[index]);
  const missing = tokens.filter((token) => !held.has(token));
  const filtered = missing.length > 0 || includeSelected;
  return [rest[0], rest[1], filtered ? [missing, false, false, includeSelected, 0] : false, rest[3]];
}

/** A sampling's result with the top logits of another (both flat [token, value, ...]) merged in, best first. */
function withMergedLogits(main: unknown[], top: unknown): unknown[] {
  const values = new Map<number, number>();
  for (const list of [top, main[3]]) {
    if (!Array.isArray(list)) continue;
    for (let index = 0; index + 1 < list.length; index += 2)
      if (!values.has(list[index])) values.set(list[index], list[index + 1]);
  }
  const merged = [...values.entries()].sort((a, b) => b[1] - a[1]).flat();
  return [main[0], main[1], main[2], merged, main[4]];
}

/** The seed of a position's second draw: its own stream, so that it does not reuse the rejected draw's randomness. */
function resampleSeed(seed: number): number {
  return (Math.imul(seed ^ 0x2c1b3c6d, 0x297a2d39) + 0x7feb352d) >>> 1;
}

/** The seed of a position's `draw`-th draw by exclusion (the first is the position's own under the grammar). */
function exclusionSeed(seed: number, draw: number): number {
  return draw === 0 ? seed : resampleSeed((seed + Math.imul(draw, 0x9e3779b1)) >>> 0);
}

/**
 * Whether drawing with forbidden tokens excluded one by one gives exactly the grammar-masked distribution: greedy
 * always (the best allowed token), sampled only without truncation (top-k, top-p, min-p and XTC would cut a
 * distribution that still holds forbidden tokens).
 */
function exclusionIsExact(config: Record<string, unknown>): boolean {
  if (Number(config.temperature ?? 0) <= 0) return true;
  const topK = Number(config.topK ?? 0);
  return (
    topK <= 0 &&
    Number(config.topP ?? 1) >= 1 &&
    Number(config.minP ?? 0) <= 0 &&
    config.xtcProbability === undefined
  );
}

/** Whether the grammar allows at least half the tokens of the vocabulary's probe (inside a string it does). */
export function allowsMostTokens(lazy: Pick<LazyGrammar, "walker" | "buckets">): boolean {
  const { probe } = lazy.buckets;
  let allowed = 0;
  for (const token of probe) if (lazy.walker.allows(token)) allowed++;
  return probe.length > 0 && allowed * 2 >= probe.length;
}

/** The request's logit biases plus -Infinity on `excluded`. */
function excludedBiases(excluded: readonly number[], config: Record<string, unknown>) {
  const keys = Array.from((config.tokenBiasKeys as Uint32Array | undefined) ?? []);
  const values = Array.from((config.tokenBiasValues as Float32Array | undefined) ?? []);
  for (const token of excluded) {
    const index = keys.indexOf(token);
    if (index >= 0) values[index] = Number.NEGATIVE_INFINITY;
    else {
      keys.push(token);
      values.push(Number.NEGATIVE_INFINITY);
    }
  }
  return { tokenBiasKeys: Uint32Array.from(keys), tokenBiasValues: Float32Array.from(values) };
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
  /** Up to {@link probeSize} ordinary tokens of two bytes or more, evenly spread: see {@link allowsMostTokens}. */
  probe: Uint32Array;
};

/** How many tokens {@link allowsMostTokens} asks the grammar about. */
export const probeSize = 32;

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
  const long = keys.flatMap((key, token) => (key !== undefined && key.length >= 2 ? [token] : []));
  const step = Math.max(1, long.length / probeSize);
  const probe = Array.from({ length: Math.min(probeSize, long.length) }, (_, index) =>
    Number(long[Math.floor(index * step)]),
  );
  return {
    vocabularySize,
    probe: Uint32Array.from(probe),
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
  /** Most questions the walk may need: it gives up as soon as the tokens it has still to ask about exceed them. */
  maxChecks?: number;
}): number[] | undefined {
  const { walker, buckets } = parameters;
  const maxChecks = parameters.maxChecks ?? Number.POSITIVE_INFINITY;
  const deadline = performance.now() + parameters.budgetMs;
  const allowed: number[] = [];
  for (const token of buckets.always) if (walker.allows(token)) allowed.push(token);
  const pending: Uint32Array[] = [buckets.top];
  let planned = buckets.always.length + buckets.top.length;
  let checks = 0;
  for (let list = pending.pop(); list !== undefined; list = pending.pop()) {
    for (const token of list) {
      // A grammar state can make each question cost 30 times more than another; the clock bounds the walk.
      if (++checks % 64 === 0 && performance.now() > deadline) return undefined;
      if (!walker.allows(token)) continue;
      allowed.push(token);
      const below = buckets.children[token];
      if (!below) continue;
      planned += below.length;
      if (planned > maxChecks) return undefined;
      pending.push(below);
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
