/** The inference engine: node-llama-cpp models loaded by hash, a pool of sequences, streamed generation and evaluation. */
import type {
  ControlledEvaluateInputItem,
  Llama,
  LlamaContext,
  LlamaContextSequence,
  LlamaGrammar,
  LlamaModel,
  Token,
} from "node-llama-cpp";
import { defaultEngineOptions, type EngineOptions } from "../config/index.ts";
import {
  ContextLengthExceededError,
  describeAvailable,
  InvalidInputError,
  ModelNotFoundError,
  MycelError,
} from "../errors/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import {
  type ChatMessage,
  type PromptSegment,
  renderChatPrompt,
  renderLegacyChatPrompt,
  type SpecialToken,
} from "./chatPrompt.ts";
import {
  canEmbed,
  createEmbedder,
  type Embedder,
  type EmbedReturnType,
  type ModelCapability,
  modelCapabilities,
} from "./embeddings.ts";
import { createPieceTable, type PieceTable, type PieceVocabularyType } from "./pieces.ts";
import {
  type ConstrainedDrawWay,
  createTokenBuckets,
  type GrammarWalker,
  installSamplerHook,
  type LazySampleOutcome,
  type SamplerExtras,
  startGrammarWalk,
  type TokenBuckets,
} from "./samplerHook.ts";
import { createSlotPool, type SlotPool } from "./slots.ts";
import {
  createIncrementalDecoder,
  createStopMatcher,
  decodeTokens,
  finishText,
  streamedTextOf,
} from "./textStream.ts";

/** How the engine uses the machine. */
/** What the engine reports about a loaded model. */
export type LoadedModelInfo = {
  hash: string;
  name: string;
  contextSize: number;
  trainContextSize: number;
  chatTemplate: string | undefined;
  vocabularySize: number;
  /** The weights' type from GGUF `general.file_type`: "f32", "f16", "q8_0", or "quantized" for any other. */
  weightType: string;
  /** What the model can do (see modelCapabilities in embeddings.ts). */
  capabilities: ModelCapability[];
};

/** GGUF `general.file_type` values Mycel tells apart (llama.cpp's LLAMA_FTYPE). */
const weightTypes: Record<number, string> = { 0: "f32", 1: "f16", 7: "q8_0" };

/** Why generation ended: an end-of-generation token or stop sequence, max_tokens, or cancellation. */
export type FinishReason = "stop" | "length" | "cancelled";

/** Sampling settings; temperature 0 is greedy. */
export type SamplingParameters = {
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  /** Seed for sampling; a random one is chosen (and returned) when absent. */
  seed?: number;
  stop?: readonly string[];
  /** Tokens below this fraction of the most likely one's probability are left out (0 or absent: off; not at temperature 0). */
  minP?: number;
  /** Penalties on tokens among the last {@link penaltyWindow} output tokens (llama.cpp's; absent: none). */
  penalties?: RepetitionPenalties;
  /** Token id (decimal) -> a number added to its logit before sampling. */
  logitBias?: Readonly<Record<string, number>>;
  /** A grammar (GBNF, root rule `root`) every output token must keep to. */
  grammar?: string;
  /**
   * How the grammar is applied: `lazy` (default) samples a position without it and again, masked, only when it
   * forbids the token drawn (samplerHook.ts LazyGrammar); `eager` has llama.cpp apply it to the whole vocabulary
   * at every position. Both draw from the same masked distribution; greedy, they give the same answer.
   */
  grammarSampling?: "lazy" | "eager";
};

/** llama.cpp's repetition penalties: `repeat` divides (multiplies, for a negative logit) the logit of a token seen, then `frequency` x its count and `presence` are subtracted. */
export type RepetitionPenalties = { repeat?: number; presence?: number; frequency?: number };

/** Output tokens (continuation prefix included) the penalties look back over. */
export const penaltyWindow = 64;

/** Whether penalties change anything. */
export function penaltiesApply(penalties: RepetitionPenalties | undefined): penalties is RepetitionPenalties {
  return (
    penalties !== undefined &&
    ((penalties.repeat ?? 1) !== 1 || (penalties.presence ?? 0) !== 0 || (penalties.frequency ?? 0) !== 0)
  );
}

/** One step of a streamed generation: the token(s) produced and the text that became safe to show. */
export type GenerationDelta = { tokens: number[]; text: string };

/** Parameters of {@link Engine.generate}. */
export type GenerateParameters = SamplingParameters & {
  modelHash: string;
  promptTokens: readonly number[];
  /**
   * Continuation: output tokens already produced for this request (by another provider, before failover).
   * They are evaluated after the prompt, and text and stop sequences carry on from them; only new tokens are
   * returned and counted against maxTokens.
   */
  prefixTokens?: readonly number[];
  signal?: AbortSignal;
  /** Called once a sequence is free and generation is about to start (after any wait in the queue). */
  onStart?: () => void;
  onDelta?: (delta: GenerationDelta) => void;
};

/**
 * The most likely next tokens at one generated position, most likely first, as llama.cpp computed them
 * while generating: `gaps[i]` is how far (in nats of raw logit) `ids[i + 1]` lies below `ids[0]`.
 * Fewer than {@link topLogitsCount} ids when top-k or top-p sampling left fewer candidates.
 */
export type TopLogits = { ids: number[]; gaps: number[] };

/** How many most likely tokens the engine records at each generated position. */
export const topLogitsCount = 4;

/** Return type of {@link Engine.generate}. */
export type GenerateReturnType = {
  /** Every token generated, including a final end-of-generation token when there was one. */
  tokens: number[];
  /** One entry per token of `tokens`: the distribution it was sampled from (see {@link TopLogits}). */
  topLogits: TopLogits[];
  /** The text of the tokens, without an end-of-generation token and cut before a matched stop sequence. */
  text: string;
  finishReason: FinishReason;
  usage: { promptTokens: number; completionTokens: number; totalTokens: number };
  seed: number;
  timings: { queuedMs: number; firstTokenMs: number | undefined; totalMs: number };
  /**
   * With a lazy grammar: how many positions kept their unconstrained token, were drawn again under the grammar, or
   * were drawn under it at once; of the draws under the grammar, how many found their token by exclusion
   * (`excluded`) and how many by a walk's mask (`walked`; the others, by the grammar's own mask).
   */
  grammarSampling?: Record<LazySampleOutcome | "walked" | "excluded", number>;
  /** How the prompt was decoded: in batches of `batchSize` tokens, on `threads` threads (evidence states it). */
  decoding: { batchSize: number; threads: number };
};

/** Parameters of {@link Engine.evaluate}. */
export type EvaluateParameters = {
  modelHash: string;
  promptTokens: readonly number[];
  outputTokens: readonly number[];
  /** How many most likely tokens to return per position (default 5). */
  topK?: number;
  /** More tokens whose log-probabilities to return, per output position (index i: the position of output token i). */
  includeTokens?: readonly (readonly number[])[];
  /**
   * The batches of a provider's prefill, to evaluate its prompt as it did: the first `tokens` prompt tokens in
   * batches of `batchSize` (at most the engine's batch size). Default: none (every token in batches of `batchSize`).
   */
  prefill?: { tokens: number; batchSize: number };
  /** Most tokens per batch after the prefill (default and at most: the engine's batch size). */
  batchSize?: number;
  signal?: AbortSignal;
};

/** A token with its log-probability. */
export type TokenLogprob = { token: number; logprob: number };

/** The model's distribution at one output position (teacher-forced). */
export type PositionLogprobs = {
  /** The output token at this position and its log-probability under the model. */
  token: number;
  logprob: number;
  /** The `topK` most likely tokens, most likely first. */
  top: TokenLogprob[];
  /** Log-probabilities of the tokens asked for in `includeTokens` at this position. */
  included: TokenLogprob[];
  /** log of the sum of exp(logit) over the vocabulary: a token's raw logit is its logprob + this. */
  logNormalizer: number;
};

/** Return type of {@link Engine.evaluate}: one entry per output token, plus the distribution after the last one. */
export type EvaluateReturnType = { positions: PositionLogprobs[]; afterLast: TokenLogprob[] };

/** The engine of one process. */
export type Engine = {
  options: EngineOptions;
  loadModel(parameters: { hash: string; path: string; name?: string }): Promise<LoadedModelInfo>;
  models(): LoadedModelInfo[];
  /** Finds a loaded model by name, hash or unique hash prefix. */
  findModel(nameOrHash: string): LoadedModelInfo;
  /**
   * Renders the model's chat template with the messages (and tools) and tokenizes the whole prompt once, special
   * tokens recognised only where the template put them: content can never inject special tokens.
   */
  tokenizeChat(parameters: {
    modelHash: string;
    messages: readonly ChatMessage[];
    tools?: readonly unknown[];
  }): number[];
  /** The prompt as Mycel tokenized it before whole-prompt tokenization (template text and contents apart); audits accept it. */
  tokenizeChatLegacy(parameters: { modelHash: string; messages: readonly ChatMessage[] }): number[];
  /** Tokenizes plain text (special-token strings stay text). */
  tokenizeText(parameters: { modelHash: string; text: string }): number[];
  /**
   * Tokenizes a text-completion prompt (`/v1/completions`) as llama.cpp's server does: the whole text with its
   * special-token strings recognised (the caller writes the raw prompt, template tokens included), BOS first when
   * the model asks for it (`add_bos_token`) and EOS last when it asks for that.
   */
  tokenizeCompletion(parameters: { modelHash: string; text: string }): number[];
  /** The text of tokens: each token's piece as it is, UTF-8 assembled across tokens (invalid bytes as U+FFFD). */
  detokenize(parameters: { modelHash: string; tokens: readonly number[] }): string;
  /**
   * The text `generate` streams for these output tokens (after a continuation's `prefixTokens`, with the request's
   * stop sequences): the text a receipt's commitment binds, recomputed by audits (see textStream.ts streamedTextOf).
   */
  streamedText(parameters: {
    modelHash: string;
    prefixTokens?: readonly number[];
    outputTokens: readonly number[];
    stop?: readonly string[];
  }): string;
  /** Whether `token` ends generation (an end-of-generation token of the model). */
  isEndOfGeneration(parameters: { modelHash: string; token: number }): boolean;
  /** A token's own bytes (its piece; several tokens may make up one character). */
  tokenBytes(parameters: { modelHash: string; token: number }): Uint8Array;
  /** Starts a walk of a grammar (GBNF) over output tokens: which may come next (audits re-apply grammars with it). */
  walkGrammar(parameters: { modelHash: string; grammar: string }): Promise<GrammarWalker>;
  generate(parameters: GenerateParameters): Promise<GenerateReturnType>;
  /** One teacher-forced batched pass over prompt + output, returning per-position top-k log-probabilities. */
  evaluate(parameters: EvaluateParameters): Promise<EvaluateReturnType>;
  stats(modelHash: string): { total: number; busy: number; waiting: number; maxWaiting: number };
  /** An embeddings input's tokens as they are embedded (see embeddings.ts); throws when the model cannot embed. */
  embeddingTokens(parameters: { modelHash: string; input: string | readonly number[] }): number[];
  /** Embeds each input (token ids from embeddingTokens) into a unit-length vector (see embeddings.ts). */
  embed(parameters: {
    modelHash: string;
    inputs: readonly (readonly number[])[];
    dimensions?: number;
    signal?: AbortSignal;
  }): Promise<EmbedReturnType>;
  close(): Promise<void>;
};

/** A text-completion prompt's tokens, as llama.cpp's server makes them (see Engine.tokenizeCompletion). */
function completionTokens(model: LlamaModel, text: string): number[] {
  const { bos, eos } = model.tokens;
  return [
    ...(model.tokens.shouldPrependBosToken && bos !== null ? [bos] : []),
    ...model.tokenize(text, true),
    ...(model.tokens.shouldAppendEosToken && eos !== null ? [eos] : []),
  ];
}

type LoadedModel = {
  info: LoadedModelInfo;
  model: LlamaModel;
  contexts: LlamaContext[];
  pool: SlotPool<LlamaContextSequence>;
  vocabulary: ModelVocabulary;
  /** Per sequence: sets the grammar and biases its next samplings use (see samplerHook.ts). */
  samplerExtras: Map<LlamaContextSequence, (extras: SamplerExtras | undefined) => void>;
  /** Undefined when llama.cpp cannot embed with the model. */
  embedder: Embedder | undefined;
};

/** What prompts and output text need of a model's vocabulary. */
type ModelVocabulary = {
  /** Control and unknown tokens with text: special only where a template writes them. */
  specialTokens: SpecialToken[];
  pieces: PieceTable;
};

const pieceVocabularyTypes: readonly string[] = ["bpe", "spm", "wpm", "ugm"];

/** Reads the model's special tokens and builds its piece table (from the GGUF vocabulary and llama.cpp's attributes). */
function vocabularyOf(model: LlamaModel): ModelVocabulary {
  const texts: readonly string[] = model.fileInfo.metadata.tokenizer?.ggml?.tokens ?? [];
  const attributesOf = (token: number) => model.getTokenAttributes(token as Token);
  const specialTokens: SpecialToken[] = [];
  for (let id = 0; id < texts.length; id++) {
    const text = texts[id];
    if (!text) continue;
    const attributes = attributesOf(id);
    if (attributes.control || attributes.unknown)
      specialTokens.push({ id, text, lstrip: attributes.lstrip, rstrip: attributes.rstrip });
  }
  const type = String(model.vocabularyType);
  const pieces: PieceTable = pieceVocabularyTypes.includes(type)
    ? createPieceTable({
        vocabularyType: type as PieceVocabularyType,
        tokenText: (token) => texts[token],
        attributes: attributesOf,
      })
    : // A vocabulary Mycel cannot spell (RWKV and others): llama.cpp's text, each token on its own.
      { bytesOf: (token) => new TextEncoder().encode(model.detokenize([token as Token], false)) };
  return { specialTokens, pieces };
}

let sharedLlama: Promise<Llama> | undefined;

/** The one Llama of this process: CPU, never builds or downloads binaries. */
export function getSharedLlama(logger: Logger = silentLogger): Promise<Llama> {
  // node-llama-cpp is imported on first use, so commands that never run a model start fast.
  sharedLlama ??= import("node-llama-cpp")
    .then(({ getLlama, LlamaLogLevel }) =>
      getLlama({
        gpu: false,
        build: "never",
        usePrebuiltBinaries: true,
        progressLogs: false,
        logLevel: LlamaLogLevel.warn,
        logger: (level, message) => {
          const text = message.trim();
          if (!text) return;
          if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal)
            logger.error("llama.cpp", { message: text });
          else logger.debug("llama.cpp", { message: text });
        },
      }),
    )
    .catch((cause) => {
      sharedLlama = undefined;
      throw new MycelError("cannot start llama.cpp", {
        code: "engine_unavailable",
        details: cause instanceof Error ? cause.message : String(cause),
        hint: "reinstall with `npm install` so that node-llama-cpp's prebuilt CPU binary for this platform is present",
        cause,
      });
    });
  return sharedLlama;
}

/** node-llama-cpp brands token ids; Mycel passes plain numbers across its parts. */
function asTokens(tokens: readonly number[]): Token[] {
  return tokens as Token[];
}

/** Continuations with at most this many prefix tokens replay them one by one (exact); longer ones batch. */
export const exactReplayMaxTokens = 256;

/** Lets queued work (such as node-llama-cpp dispatching the next decode) run before continuing. */
function turnEventLoop() {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

/** The seed of generation step `index` of a request seeded with `seed` (31 bits, deterministic). */
function stepSeed(seed: number, index: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) + Math.imul(index + 1, 0x85ebca6b)) >>> 1;
}

/**
 * The top logits llama.cpp returned for a sampled position, as gaps below the most likely one. With a temperature
 * the sampler has divided the logits by it; multiplying back gives raw gaps, the same at any temperature.
 */
function topLogitsOf(logits: ReadonlyMap<Token, number> | undefined, temperature: number): TopLogits {
  // A grammar leaves the tokens it forbids at -Infinity: they were never candidates.
  const entries = [...(logits?.entries() ?? [])]
    .filter(([, logit]) => Number.isFinite(logit))
    .slice(0, topLogitsCount);
  const top = entries[0]?.[1] ?? 0;
  const scale = temperature > 0 ? temperature : 1;
  return {
    ids: entries.map(([token]) => token),
    gaps: entries.slice(1).map(([, logit]) => (top - logit) * scale),
  };
}

/**
 * The batches an evaluation decodes, as [start, end) ranges of its tokens: the prefill's tokens in batches of its
 * size, then the rest in batches of `input.batchSize`, each at most the engine's (one llama.cpp batch per range).
 */
export function evaluationBatches(parameters: {
  input: Pick<EvaluateParameters, "prefill" | "batchSize">;
  total: number;
  engineBatchSize: number;
}): { start: number; end: number }[] {
  const { input, total, engineBatchSize } = parameters;
  const size = (value: number | undefined) =>
    Math.max(1, Math.min(engineBatchSize, value ?? engineBatchSize));
  const prefilled = Math.min(total, Math.max(0, input.prefill?.tokens ?? 0));
  const batches: { start: number; end: number }[] = [];
  const split = (from: number, to: number, batchSize: number) => {
    for (let start = from; start < to; start += batchSize)
      batches.push({ start, end: Math.min(to, start + batchSize) });
  };
  split(0, prefilled, size(input.prefill?.batchSize));
  split(prefilled, total, size(input.batchSize));
  return batches;
}

function randomSeed() {
  return Math.floor(Math.random() * 0x7fffffff);
}

function logSumExpFromWeight(maxLogit: number, totalLogitWeight: number) {
  return maxLogit + Math.log(totalLogitWeight);
}

/** Creates the engine. Models are loaded with {@link Engine.loadModel}. */
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: an engine is one closure over its loaded models and llama.cpp handles; each method (load, tokenize, generate, evaluate) is a short function over that shared state, not a role
export function createEngine(parameters: { options?: Partial<EngineOptions>; logger?: Logger } = {}): Engine {
  const options: EngineOptions = { ...defaultEngineOptions(), ...parameters.options };
  const logger = parameters.logger ?? silentLogger;
  const loaded = new Map<string, LoadedModel>();

  function get(modelHash: string): LoadedModel {
    const entry = loaded.get(modelHash);
    if (!entry)
      throw new ModelNotFoundError(modelHash, { hint: "load it first (mycel serve --model <name|hash>)" });
    return entry;
  }

  function embedderOf(modelHash: string): Embedder {
    const { embedder, info } = get(modelHash);
    if (!embedder)
      throw new InvalidInputError(`model "${info.name}" cannot make embeddings`, {
        param: "model",
        code: "model_not_supported",
        hint: "use a model whose capabilities (GET /v1/models, mycel.capabilities) include embeddings",
      });
    return embedder;
  }

  function findModel(nameOrHash: string): LoadedModelInfo {
    const query = nameOrHash.replace(/^sha256:/i, "");
    for (const entry of loaded.values())
      if (entry.info.name === query || entry.info.hash === query) return entry.info;
    if (/^[0-9a-f]{6,63}$/.test(query)) {
      const matches = [...loaded.values()].filter((entry) => entry.info.hash.startsWith(query));
      if (matches.length === 1 && matches[0]) return matches[0].info;
    }
    throw new ModelNotFoundError(nameOrHash, {
      hint:
        describeAvailable({
          query,
          names: [...loaded.values()].map((entry) => entry.info.name),
          label: "served models",
        }) ?? "no model is loaded",
    });
  }

  async function loadModel(input: { hash: string; path: string; name?: string }): Promise<LoadedModelInfo> {
    const existing = loaded.get(input.hash);
    if (existing) return existing.info;
    const llama = await getSharedLlama(logger);
    const started = performance.now();
    const model = await llama.loadModel({ modelPath: input.path, gpuLayers: 0 });
    const contextSize = Math.min(
      options.contextSize ?? Math.min(model.trainContextSize, 4096),
      model.trainContextSize,
    );
    const contexts: LlamaContext[] = [];
    try {
      for (let index = 0; index < options.parallelism; index++) {
        contexts.push(
          await model.createContext({
            contextSize,
            sequences: 1,
            threads: options.threadsPerSequence,
            batchSize: Math.min(options.batchSize, contextSize),
          }),
        );
      }
    } catch (cause) {
      for (const context of contexts) await context.dispose();
      await model.dispose();
      throw new MycelError(`cannot create ${options.parallelism} contexts of ${contextSize} tokens`, {
        code: "engine_out_of_memory",
        details: cause instanceof Error ? cause.message : String(cause),
        hint: "lower --parallelism or --context-size",
        cause,
      });
    }
    const metadata = model.fileInfo.metadata as {
      tokenizer?: { chat_template?: string };
      general?: { name?: string; file_type?: number };
    };
    const info: LoadedModelInfo = {
      hash: input.hash,
      name: input.name ?? metadata.general?.name ?? input.hash.slice(0, 12),
      contextSize: contexts[0]?.contextSize ?? contextSize,
      trainContextSize: model.trainContextSize,
      chatTemplate: metadata.tokenizer?.chat_template,
      vocabularySize: model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 0,
      weightType: weightTypes[metadata.general?.file_type ?? -1] ?? "quantized",
      capabilities: modelCapabilities({
        chatTemplate: metadata.tokenizer?.chat_template,
        embeddings: canEmbed(model),
      }),
    };
    const sequences = contexts.map((context) => context.getSequence());
    const samplerExtras = new Map(
      sequences.map((sequence) => [sequence, installSamplerHook(sequence)] as const),
    );
    const pool = createSlotPool({
      slots: sequences,
      maxWaiting: options.maxQueue,
      retryAfterSeconds: 1,
    });
    const embedder = canEmbed(model)
      ? createEmbedder({ model, contextSize: info.contextSize, threads: 1, maxQueue: options.maxQueue })
      : undefined;
    loaded.set(input.hash, {
      info,
      model,
      contexts,
      pool,
      vocabulary: vocabularyOf(model),
      samplerExtras,
      embedder,
    });
    logger.info("model loaded", {
      model: info.name,
      hash: info.hash,
      contextSize: info.contextSize,
      sequences: options.parallelism,
      threadsPerSequence: options.threadsPerSequence,
      ms: Math.round(performance.now() - started),
    });
    return info;
  }

  function tokenizeChat(input: {
    modelHash: string;
    messages: readonly ChatMessage[];
    tools?: readonly unknown[];
  }) {
    const { model, info, vocabulary } = get(input.modelHash);
    const { segments } = renderChatPrompt({
      template: info.chatTemplate,
      messages: input.messages,
      tools: input.tools,
      bosToken: model.tokens.bosString ?? "",
      eosToken: model.tokens.eosString ?? "",
      specialTokens: vocabulary.specialTokens,
    });
    // Text between special tokens is tokenized on its own, as llama.cpp tokenizes each fragment of a prompt
    // it has partitioned at special tokens (user-defined tokens are still matched inside, as there).
    return segments.flatMap((segment: PromptSegment) =>
      "token" in segment ? [segment.token] : model.tokenize(segment.text, false),
    );
  }

  function tokenizeChatLegacy(input: { modelHash: string; messages: readonly ChatMessage[] }) {
    const { model, info } = get(input.modelHash);
    return renderLegacyChatPrompt({
      template: info.chatTemplate,
      messages: input.messages,
      bosToken: model.tokens.bosString ?? "",
      eosToken: model.tokens.eosString ?? "",
    }).flatMap((segment) => model.tokenize(segment.text, segment.special));
  }

  const grammars = new Map<string, LlamaGrammar>();
  /** Per model, the prefix tree of its tokens (lazy grammars' masks), made on first use. */
  const tokenBuckets = new WeakMap<LoadedModel, TokenBuckets>();

  function tokenBucketsOf(entry: LoadedModel): TokenBuckets {
    let buckets = tokenBuckets.get(entry);
    if (!buckets) {
      const { model } = entry;
      buckets = createTokenBuckets({
        vocabularySize: entry.info.vocabularySize,
        bytesOf: entry.vocabulary.pieces.bytesOf,
        // Pieces of normal and byte tokens are their bytes to the grammar too; others are always asked about.
        ordinary: (token) => {
          if (model.isEogToken(token as Token)) return false;
          const attributes = model.getTokenAttributes(token as Token);
          return attributes.normal || attributes.byte;
        },
      });
      tokenBuckets.set(entry, buckets);
    }
    return buckets;
  }

  /** The compiled grammar of a GBNF text (the last 64 are kept). */
  async function grammarOf(gbnf: string): Promise<LlamaGrammar> {
    const known = grammars.get(gbnf);
    if (known) return known;
    const llama = await getSharedLlama(logger);
    const { LlamaGrammar } = await import("node-llama-cpp");
    let grammar: LlamaGrammar;
    try {
      grammar = new LlamaGrammar(llama, { grammar: gbnf });
    } catch (cause) {
      throw new InvalidInputError("the grammar cannot be parsed", {
        param: "grammar",
        details: cause instanceof Error ? cause.message : String(cause),
        cause,
      });
    }
    grammars.set(gbnf, grammar);
    for (const oldest of grammars.keys()) {
      if (grammars.size <= 64) break;
      grammars.delete(oldest);
    }
    return grammar;
  }

  async function walkGrammar(entry: LoadedModel, gbnf: string): Promise<GrammarWalker> {
    return startGrammarWalk({
      llama: await getSharedLlama(logger),
      model: entry.model,
      grammar: await grammarOf(gbnf),
    });
  }

  /** A request's logit biases as llama.cpp takes them; token ids outside the vocabulary are the caller's error. */
  function biasArraysOf(entry: LoadedModel, logitBias: Readonly<Record<string, number>> | undefined) {
    const pairs = Object.entries(logitBias ?? {}).filter(([, value]) => value !== 0);
    if (pairs.length === 0) return undefined;
    const tokens = new Uint32Array(pairs.length);
    const values = new Float32Array(pairs.length);
    for (const [index, [token, value]] of pairs.entries()) {
      const id = Number(token);
      if (!Number.isInteger(id) || id < 0 || id >= entry.info.vocabularySize)
        throw new InvalidInputError(
          `logit_bias names token ${token}, outside the vocabulary (size ${entry.info.vocabularySize})`,
          { param: "logit_bias", code: "invalid_value" },
        );
      tokens[index] = id;
      values[index] = value;
    }
    return { biasTokens: tokens, biasValues: values };
  }

  /** What a generation adds to its sequence's samplings: the grammar (lazy or eager) and the biases. */
  function samplerExtrasOf(parameters: {
    entry: LoadedModel;
    walker: GrammarWalker | undefined;
    lazy: boolean;
    bias: Pick<SamplerExtras, "biasTokens" | "biasValues"> | undefined;
    grammarSampling: Record<LazySampleOutcome | "walked" | "excluded", number>;
  }): SamplerExtras | undefined {
    const { walker, bias, grammarSampling } = parameters;
    if (!walker) return bias;
    if (!parameters.lazy) return { grammarState: walker.state, ...bias };
    const lazyGrammar = {
      walker,
      buckets: tokenBucketsOf(parameters.entry),
      onSample: (outcome: LazySampleOutcome, way: ConstrainedDrawWay | undefined) => {
        grammarSampling[outcome]++;
        if (way === "walk") grammarSampling.walked++;
        if (way === "exclusion") grammarSampling.excluded++;
      },
    };
    return { lazyGrammar, ...bias };
  }

  function checkFits(info: LoadedModelInfo, promptTokens: number, maxTokens: number) {
    if (promptTokens + maxTokens > info.contextSize) {
      throw new ContextLengthExceededError({ promptTokens, maxTokens, contextSize: info.contextSize });
    }
  }

  async function generate(input: GenerateParameters): Promise<GenerateReturnType> {
    const entry = get(input.modelHash);
    const { model, info } = entry;
    if (input.promptTokens.length === 0) {
      throw new InvalidInputError("the prompt is empty", {
        param: "messages",
        hint: "send at least one non-empty message",
      });
    }
    const prefixTokens = input.prefixTokens ?? [];
    const evaluatedTokens = [...input.promptTokens, ...prefixTokens];
    const maxTokens = input.maxTokens ?? info.contextSize - evaluatedTokens.length;
    checkFits(info, evaluatedTokens.length, Math.max(1, maxTokens));
    const seed = input.seed ?? randomSeed();
    const bias = biasArraysOf(entry, input.logitBias);
    const walker = input.grammar ? await walkGrammar(entry, input.grammar) : undefined;
    for (const [index, token] of prefixTokens.entries()) {
      if (!walker) break;
      if (!walker.allows(token))
        throw new InvalidInputError(`continuation token ${index} breaks the request's grammar`, {
          param: "prefix_tokens",
        });
      walker.accept(token);
    }
    const started = performance.now();
    const lease = await entry.pool.acquire({ signal: input.signal });
    const queuedMs = performance.now() - started;
    const sequence = lease.slot;
    const setExtras = entry.samplerExtras.get(sequence);
    const lazy = walker !== undefined && input.grammarSampling !== "eager";
    const grammarSampling = { kept: 0, resampled: 0, masked: 0, walked: 0, excluded: 0 };
    setExtras?.(samplerExtrasOf({ entry, walker, lazy, bias, grammarSampling }));
    const tokens: number[] = [];
    const topLogits: TopLogits[] = [];
    let text = "";
    let finishReason: FinishReason = "length";
    let firstTokenMs: number | undefined;
    const decoder = createIncrementalDecoder(entry.vocabulary.pieces.bytesOf);
    const stopMatcher = createStopMatcher(input.stop ?? []);
    // A continuation's text goes on from the prefix: held-back bytes and partial stop matches carry over.
    for (const token of prefixTokens) stopMatcher.push(decoder.push(token));
    const emit = (delta: GenerationDelta) => {
      text += delta.text;
      input.onDelta?.(delta);
    };
    try {
      // Every generation starts from an empty sequence (one batched prefill), so a request always takes
      // the same numeric path. Clearing here rather than after use keeps it off the response's critical path.
      await sequence.clearHistory();
      input.onStart?.();
      if (maxTokens > 0 && !input.signal?.aborted) {
        // A continuation rebuilds the state the interrupted generation had: the prompt in one batch, then each
        // prefix token on its own, as generation decoded them. Batch shape changes llama.cpp's arithmetic, so
        // a batched prefix could flip a near-tie and the continuation would drift from the uninterrupted text.
        // Replaying costs about what generating did, so past exactReplayMaxTokens the prefix is evaluated in
        // one batch: failover stays fast, and greedy output may then differ at a near-tie.
        let firstTokens = evaluatedTokens;
        if (prefixTokens.length > 0 && prefixTokens.length <= exactReplayMaxTokens) {
          await sequence.evaluateWithoutGeneratingNewTokens(asTokens([...input.promptTokens]));
          for (const token of prefixTokens.slice(0, -1)) {
            if (input.signal?.aborted) break;
            await sequence.evaluateWithoutGeneratingNewTokens(asTokens([token]));
          }
          firstTokens = prefixTokens.slice(-1);
        }
        const sampling = {
          temperature: input.temperature ?? 1,
          topK: input.topK ?? 0,
          topP: input.topP ?? 1,
          minP: input.minP ?? 0,
        };
        const penalties = penaltiesApply(input.penalties) ? input.penalties : undefined;
        // Penalties look back over the output so far, continuation prefix included.
        const repeatPenaltyAt = (index: number) =>
          penalties && {
            punishTokens: asTokens([...prefixTokens, ...tokens.slice(0, index)].slice(-penaltyWindow)),
            maxPunishTokens: penaltyWindow,
            penalty: penalties.repeat ?? 1,
            presencePenalty: penalties.presence ?? 0,
            frequencyPenalty: penalties.frequency ?? 0,
          };
        // Each step decodes one batch and samples the next token with the top `topLogitsCount` logits of the
        // distribution it was sampled from (the evidence validators check). Every step has its own sampler,
        // seeded from the request's seed and the step's index, so a seed always gives the same answer.
        const step = (evaluate: readonly number[], index: number) =>
          sequence.controlledEvaluate(
            evaluate.map((token, position) =>
              position < evaluate.length - 1
                ? (token as Token)
                : [
                    token as Token,
                    {
                      generateNext: {
                        token: true,
                        logits: { filter: { tokens: [], includeTop: topLogitsCount } },
                        options: {
                          ...sampling,
                          seed: stepSeed(seed, index),
                          ...(penalties ? { repeatPenalty: repeatPenaltyAt(index) } : {}),
                        },
                      },
                    },
                  ],
            ),
          );
        // Pipelined: the next token is requested before this one is decoded to text and emitted, and the
        // event loop turns once so that llama.cpp decodes on its thread while JavaScript does that work.
        // At a stop, one token may have been decoded in vain; it is never returned.
        let next: Promise<Awaited<ReturnType<typeof step>>> | undefined = step(firstTokens, 0);
        try {
          while (next) {
            const results = await next;
            next = undefined;
            const sampled = results[results.length - 1]?.next;
            const token = sampled?.token;
            if (token === undefined || token === null) {
              finishReason = "stop";
              break;
            }
            if (input.signal?.aborted) {
              finishReason = "cancelled";
              break;
            }
            firstTokenMs ??= performance.now() - started;
            tokens.push(token);
            topLogits.push(topLogitsOf(sampled?.logits, sampling.temperature));
            if (model.isEogToken(token)) {
              emit({ tokens: [token], text: finishText(decoder, stopMatcher).text });
              finishReason = "stop";
              break;
            }
            // The first token goes out at once (time to first token); later ones overlap the next decode.
            const more = tokens.length < maxTokens;
            if (more && tokens.length > 1) {
              next = step([token], tokens.length);
              await turnEventLoop();
            }
            const matched = stopMatcher.push(decoder.push(token));
            emit({ tokens: [token], text: matched.emit });
            if (matched.stopped) {
              finishReason = "stop";
              break;
            }
            if (more && !next) next = step([token], tokens.length);
          }
        } finally {
          if (next) await next.catch(() => undefined);
        }
        if (finishReason === "length" && input.signal?.aborted) finishReason = "cancelled";
        if (finishReason === "length") {
          const tail = finishText(decoder, stopMatcher);
          if (tail.stopped) finishReason = "stop";
          if (tail.text) emit({ tokens: [], text: tail.text });
        }
      }
    } finally {
      setExtras?.(undefined);
      lease.release();
    }
    return {
      tokens,
      topLogits,
      text,
      finishReason,
      usage: {
        promptTokens: evaluatedTokens.length,
        completionTokens: tokens.length,
        totalTokens: evaluatedTokens.length + tokens.length,
      },
      seed,
      timings: { queuedMs, firstTokenMs, totalMs: performance.now() - started },
      ...(lazy ? { grammarSampling } : {}),
      decoding: { batchSize: sequence.context.batchSize, threads: options.threadsPerSequence },
    };
  }

  async function evaluate(input: EvaluateParameters): Promise<EvaluateReturnType> {
    const entry = get(input.modelHash);
    const topK = input.topK ?? 5;
    if (input.promptTokens.length === 0)
      throw new InvalidInputError("promptTokens is empty", { param: "promptTokens" });
    checkFits(entry.info, input.promptTokens.length, input.outputTokens.length);
    const lease = await entry.pool.acquire({ signal: input.signal });
    try {
      const sequence = lease.slot;
      await sequence.clearHistory();
      const all = [...input.promptTokens, ...input.outputTokens];
      const firstScored = input.promptTokens.length - 1;
      const items: ControlledEvaluateInputItem[] = all.map((token, index) => {
        if (index < firstScored) return token as Token;
        const next = input.outputTokens[index - firstScored];
        const extra = input.includeTokens?.[index - firstScored] ?? [];
        return [
          token as Token,
          {
            generateNext: {
              logits: {
                filter: {
                  tokens: asTokens(next === undefined ? [...extra] : [next, ...extra]),
                  includeTop: topK,
                  includeMax: true,
                },
              },
              totalLogitWeight: true,
            },
          },
        ];
      });
      const results: Awaited<ReturnType<typeof sequence.controlledEvaluate>> = [];
      const engineBatchSize = sequence.context.batchSize;
      for (const batch of evaluationBatches({ input, total: items.length, engineBatchSize })) {
        input.signal?.throwIfAborted();
        const part = await sequence.controlledEvaluate(items.slice(batch.start, batch.end));
        for (let offset = 0; offset < batch.end - batch.start; offset++)
          results[batch.start + offset] = part[offset];
      }
      const positions: PositionLogprobs[] = [];
      let afterLast: TokenLogprob[] = [];
      for (let index = firstScored; index < all.length; index++) {
        const next = results[index]?.next;
        if (!next?.logits || next.totalLogitWeight === undefined) {
          throw new MycelError("llama.cpp returned no logits for an evaluated position", {
            code: "engine_error",
          });
        }
        const entries = [...next.logits.entries()];
        const maxLogit = entries[0]?.[1] ?? 0;
        const normalizer = logSumExpFromWeight(maxLogit, next.totalLogitWeight);
        const top = entries.slice(0, topK).map(([token, logit]) => ({ token, logprob: logit - normalizer }));
        const outputToken = input.outputTokens[index - firstScored];
        if (outputToken === undefined) {
          afterLast = top;
          continue;
        }
        const logprobOf = (token: number) => {
          const value = next.logits?.get(token as Token);
          return value === undefined ? Number.NEGATIVE_INFINITY : value - normalizer;
        };
        positions.push({
          logNormalizer: normalizer,
          token: outputToken,
          logprob: logprobOf(outputToken),
          top,
          included: (input.includeTokens?.[index - firstScored] ?? []).map((token) => ({
            token,
            logprob: logprobOf(token),
          })),
        });
      }
      return { positions, afterLast };
    } finally {
      lease.release();
    }
  }

  async function close() {
    for (const entry of loaded.values()) {
      await entry.embedder?.close();
      for (const context of entry.contexts) await context.dispose();
      await entry.model.dispose();
    }
    loaded.clear();
  }

  return {
    options,
    loadModel,
    models: () => [...loaded.values()].map((entry) => entry.info),
    findModel,
    tokenizeChat,
    tokenizeChatLegacy,
    tokenizeText: (input) => get(input.modelHash).model.tokenize(input.text, false),
    tokenizeCompletion: (input) => completionTokens(get(input.modelHash).model, input.text),
    detokenize: (input) => decodeTokens(input.tokens, get(input.modelHash).vocabulary.pieces.bytesOf),
    streamedText: (input) => {
      const entry = get(input.modelHash);
      return streamedTextOf({
        bytesOf: entry.vocabulary.pieces.bytesOf,
        isEndOfGeneration: (token) => entry.model.isEogToken(token as Token),
        prefixTokens: input.prefixTokens ?? [],
        outputTokens: input.outputTokens,
        stops: input.stop ?? [],
      });
    },
    isEndOfGeneration: (input) => get(input.modelHash).model.isEogToken(input.token as Token),
    tokenBytes: (input) => get(input.modelHash).vocabulary.pieces.bytesOf(input.token),
    walkGrammar: (input) => walkGrammar(get(input.modelHash), input.grammar),
    generate,
    evaluate,
    stats: (modelHash) => get(modelHash).pool.stats(),
    embeddingTokens: (input) => embedderOf(input.modelHash).prepare(input.input),
    embed: (input) => embedderOf(input.modelHash).embed(input),
    close,
  };
}
