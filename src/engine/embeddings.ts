/**
 * Embeddings of a loaded model: one llama.cpp embedding context per model, made on first use (it costs a context's
 * memory, which a provider that only generates never pays), one thread, its requests in a bounded FIFO queue.
 * Vectors are L2-normalized (unit length, as OpenAI's and llama.cpp's server's are), so cosine similarity is a dot
 * product. The same input always gives the same numbers: each input is evaluated alone, from an empty sequence,
 * in one batch.
 */
import type { LlamaEmbeddingContext, LlamaModel, Token } from "node-llama-cpp";
import { InvalidInputError, MycelError } from "../errors/index.ts";
import { createSlotPool, type SlotPool } from "./slots.ts";
import { toolCallFormatOf } from "./toolCalls.ts";

/** What the API and the network allow per embeddings request. */
export const embeddingLimits = {
  /** Most inputs in one request. */
  maxInputs: 256,
  /** Most tokens of one input (the model's context size may allow fewer). */
  maxTokensPerInput: 8192,
} as const;

/** Parameters of {@link Embedder.embed}. */
export type EmbedParameters = {
  /** The inputs, each as token ids as they are embedded (see {@link Embedder.prepare}). */
  inputs: readonly (readonly number[])[];
  /**
   * The vector length the caller wants: only the model's own is served (a shorter one would need a model trained
   * to be cut, which GGUF does not tell), else InvalidInputError naming `dimensions`.
   */
  dimensions?: number;
  signal?: AbortSignal;
};

/** Return type of {@link Embedder.embed}: one unit-length vector per input, and the tokens evaluated. */
export type EmbedReturnType = {
  vectors: number[][];
  /** Tokens evaluated for each input (the model's BOS/EOS included where it adds them). */
  tokenCounts: number[];
  usage: { promptTokens: number; totalTokens: number };
  timings: { queuedMs: number; totalMs: number };
};

/** The embeddings of one loaded model. */
export type Embedder = {
  /** The tokens of an input (text: tokenized as plain text) as they are embedded, the model's BOS/EOS added where it adds them. */
  prepare(input: string | readonly number[]): number[];
  /** Embeds each input on its own, in order. Throws InvalidInputError naming an input that does not fit. */
  embed(parameters: EmbedParameters): Promise<EmbedReturnType>;
  /** The vectors' length, once known (after the first embedding). */
  dimensions(): number | undefined;
  close(): Promise<void>;
};

/** Parameters of {@link createEmbedder}. */
export type CreateEmbedderParameters = {
  model: LlamaModel;
  contextSize: number;
  threads: number;
  /** Requests that may wait for the embedding context before new ones are refused. */
  maxQueue: number;
};

/** Scales a vector to unit length (a zero vector stays zero). */
export function normalizeVector(vector: readonly number[]): number[] {
  let sum = 0;
  for (const value of vector) sum += value * value;
  const norm = Math.sqrt(sum);
  return norm > 0 ? vector.map((value) => Math.fround(value / norm)) : vector.map(() => 0);
}

/** Whether llama.cpp can make embeddings with this model (encoder-decoder models it cannot). */
export function canEmbed(model: LlamaModel): boolean {
  return !(model.fileInsights.hasEncoder && model.fileInsights.hasDecoder);
}

/** Creates the embedder of a loaded model; its context is made on the first request. */
export function createEmbedder(parameters: CreateEmbedderParameters): Embedder {
  const { model } = parameters;
  let pool: Promise<{ pool: SlotPool<LlamaEmbeddingContext>; context: LlamaEmbeddingContext }> | undefined;
  let dimensions: number | undefined;
  // The usable length: node-llama-cpp refuses inputs of the context size or more, and Mycel caps it.
  const maxTokens = Math.min(parameters.contextSize - 1, embeddingLimits.maxTokensPerInput);

  function contextPool() {
    pool ??= model
      .createEmbeddingContext({
        contextSize: parameters.contextSize,
        // The whole input in one batch: pooled embeddings need every token in the same batch.
        batchSize: parameters.contextSize,
        threads: parameters.threads,
      })
      .then((context) => ({
        context,
        pool: createSlotPool({ slots: [context], maxWaiting: parameters.maxQueue, retryAfterSeconds: 1 }),
      }))
      .catch((cause) => {
        pool = undefined;
        throw new MycelError("cannot create an embedding context", {
          code: "engine_out_of_memory",
          details: cause instanceof Error ? cause.message : String(cause),
          hint: "lower --context-size, or serve embeddings from a machine with more memory",
          cause,
        });
      });
    return pool;
  }

  /** The tokens as node-llama-cpp's embedding context evaluates them: BOS/EOS (SEP) added where the vocabulary adds them. */
  function prepare(input: readonly number[]): number[] {
    const tokens = [...input];
    const type = String(model.vocabularyType);
    const { bos, eos, sep, shouldPrependBosToken, shouldAppendEosToken } = model.tokens;
    const first =
      type === "rwkv" || type === "ugm" ? null : type === "wpm" || shouldPrependBosToken ? bos : null;
    const last =
      type === "rwkv" ? null : type === "wpm" ? sep : type === "ugm" || shouldAppendEosToken ? eos : null;
    if (first !== null && tokens[0] !== first) tokens.unshift(first);
    if (last !== null && tokens.length > 0 && tokens.at(-1) !== last) tokens.push(last);
    return tokens;
  }

  async function embed(input: EmbedParameters): Promise<EmbedReturnType> {
    const vocabularySize = model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? Number.MAX_SAFE_INTEGER;
    input.inputs.forEach((tokens, index) => {
      if (tokens.length === 0)
        throw new InvalidInputError(`input ${index} is empty`, {
          param: `input[${index}]`,
          code: "invalid_value",
          hint: "send non-empty inputs",
        });
      if (tokens.length > maxTokens)
        throw new InvalidInputError(
          `input ${index} has ${tokens.length} tokens; this model embeds at most ${maxTokens} per input`,
          { param: `input[${index}]`, code: "context_length_exceeded", hint: "shorten or split the input" },
        );
      const outside = tokens.find(
        (token) => !Number.isInteger(token) || token < 0 || token >= vocabularySize,
      );
      if (outside !== undefined)
        throw new InvalidInputError(`input ${index}: token ${outside} is outside the vocabulary`, {
          param: `input[${index}]`,
          code: "invalid_value",
        });
    });
    const native = model.embeddingVectorSize;
    if (input.dimensions !== undefined && input.dimensions !== native)
      throw new InvalidInputError(
        `dimensions ${input.dimensions} is not served: this model's embeddings have ${native} dimensions`,
        {
          param: "dimensions",
          code: "invalid_value",
          hint: `leave dimensions out, or give ${native} (vectors are not cut: GGUF does not tell whether a model was trained for it)`,
        },
      );
    const started = performance.now();
    const { pool: slots } = await contextPool();
    const lease = await slots.acquire({ signal: input.signal });
    const queuedMs = performance.now() - started;
    try {
      const vectors: number[][] = [];
      for (const tokens of input.inputs) {
        if (input.signal?.aborted) throw input.signal.reason;
        // A copy: node-llama-cpp adds BOS/EOS in place when they are missing.
        const embedding = await lease.slot.getEmbeddingFor([...tokens] as Token[]);
        const vector = normalizeVector(embedding.vector);
        dimensions ??= vector.length;
        vectors.push(vector);
      }
      const promptTokens = input.inputs.reduce((total, tokens) => total + tokens.length, 0);
      return {
        vectors,
        tokenCounts: input.inputs.map((tokens) => tokens.length),
        usage: { promptTokens, totalTokens: promptTokens },
        timings: { queuedMs, totalMs: performance.now() - started },
      };
    } finally {
      lease.release();
    }
  }

  return {
    prepare: (input) => prepare(typeof input === "string" ? model.tokenize(input, false) : input),
    embed,
    dimensions: () => dimensions ?? (model.embeddingVectorSize || undefined),
    async close() {
      const made = pool;
      pool = undefined;
      if (made) await (await made.catch(() => undefined))?.context.dispose();
    },
  };
}

/** What a model can do, as providers announce it (docs/PROTOCOL.md "capabilities"). */
export type ModelCapability = "chat" | "completion" | "embeddings" | "tools" | "grammar";

/**
 * The capabilities of a loaded model: chat and completion always (a model without a chat template gets ChatML);
 * grammar always (llama.cpp's grammar sampler serves every model of this version); embeddings where llama.cpp can
 * embed with it; tools where its chat template has a tool-call format Mycel parses (toolCalls.ts).
 */
export function modelCapabilities(parameters: {
  chatTemplate: string | undefined;
  embeddings: boolean;
}): ModelCapability[] {
  const capabilities: ModelCapability[] = ["chat", "completion"];
  if (parameters.embeddings) capabilities.push("embeddings");
  if (toolCallFormatOf(parameters.chatTemplate) !== undefined) capabilities.push("tools");
  capabilities.push("grammar");
  return capabilities;
}
