/** Deterministic test models: llama-architecture GGUF files with seeded random weights and a test tokenizer. */
import {
  encodeGguf,
  encodeTensorData,
  type GgmlTensorTypeName,
  type GgufMetadataEntry,
  type GgufTensor,
} from "./gguf.ts";
import { type TestModelTokenizer, testTokenizerSpec } from "./testTokenizers.ts";

/**
 * The sizes of test model: `tiny` (~115k params) for tests, `small` (~27.5M params) for benchmarks, `medium`
 * (~0.5B params with gpt2's vocabulary) for benchmarks of real model sizes.
 */
export type TestModelSize = "tiny" | "small" | "medium";
/** Weight encodings a test model can use. */
export type TestModelQuant = GgmlTensorTypeName;

type Shape = {
  embedding: number;
  layers: number;
  heads: number;
  kvHeads: number;
  feedForward: number;
  contextLength: number;
};

const shapes: Record<TestModelSize, Shape> = {
  tiny: { embedding: 64, layers: 2, heads: 4, kvHeads: 4, feedForward: 128, contextLength: 2048 },
  small: { embedding: 512, layers: 8, heads: 8, kvHeads: 8, feedForward: 1536, contextLength: 2048 },
  medium: { embedding: 1024, layers: 24, heads: 16, kvHeads: 16, feedForward: 4096, contextLength: 4096 },
};

/** The quantization each size uses when none is given. */
export const defaultTestModelQuant: Record<TestModelSize, TestModelQuant> = {
  tiny: "f32",
  small: "q8_0",
  medium: "q8_0",
};

/** The tokenizer each size uses when none is given: `medium` has a real-size vocabulary, as real models do. */
export const defaultTestModelTokenizer: Record<TestModelSize, TestModelTokenizer> = {
  tiny: "bytes",
  small: "bytes",
  medium: "gpt2",
};

/** How many parameters (weights) the test model of this size and tokenizer has, without making it. */
export function testModelParameterCount(parameters: { size: TestModelSize; tokenizer?: TestModelTokenizer }) {
  const shape = shapes[parameters.size];
  const vocabularySize = testTokenizerSpec(parameters.tokenizer ?? defaultTestModelTokenizer[parameters.size])
    .tokens.length;
  const kvDimension = (shape.embedding / shape.heads) * shape.kvHeads;
  const perLayer =
    2 * shape.embedding + // the two norms
    2 * shape.embedding * shape.embedding + // attn_q, attn_output
    2 * shape.embedding * kvDimension + // attn_k, attn_v
    3 * shape.embedding * shape.feedForward; // ffn_gate, ffn_up, ffn_down
  return 2 * vocabularySize * shape.embedding + shape.layers * perLayer + shape.embedding;
}

/**
 * How the output layer shapes a test model's noise. Dimension 0 of the residual stream is a constant "bias
 * channel" (see generateTestModel); its output weights favour text tokens and, in the BPE families, the
 * end-of-turn token.
 */
export type OutputTuning = {
  /** Value of the bias channel in every token embedding. */
  biasChannelValue: number;
  /** Output weight on the bias channel: + for text tokens, - for everything else. */
  printableBias: number;
  /** Output weight on the bias channel of the end-of-turn token. */
  endOfTurnBias: number;
  /** Half width of the end-of-turn token's other output weights, in units of sqrt(3 / embedding) (0: all zero). */
  endOfTurnWidth: number;
  /** Half width of the output weights, in units of sqrt(3 / embedding). */
  outputWidth: number;
  /** Whether the final norm keeps the bias channel exactly (weight 1) rather than scaling it at random. */
  exactOutputNorm: boolean;
};

/** The byte-level models' tuning: fixed forever, since tests pin their bytes. */
const byteLevelTuning: OutputTuning = {
  biasChannelValue: 8,
  printableBias: 0.6,
  endOfTurnBias: 0,
  endOfTurnWidth: 0,
  outputWidth: 3,
  exactOutputNorm: false,
};

/**
 * The BPE families' tuning. A large bias channel holds its share of the final norm nearly constant. The other
 * logits spread widely (outputWidth 12), so that the softmax's mass sits near its most likely tokens and greedy
 * and sampled decoding end at similar rates. The end-of-turn token's row has random weights like a text token's
 * (narrower, endOfTurnWidth 10) plus a bias, so its logit varies with the context: it is the most likely token in
 * a few percent of contexts. Measured over 20 prompts x seeds 1-3 per family (q8_0, the engine, 1 thread):
 * greedy answers all end with text, median ~20 tokens, longest < 200; sampled at temperature 1 (the engine's
 * default), median ~40-60 tokens, ~95% within 400. The bias is sensitive: +0.1 halves the lengths.
 */
export const bpeTuning: OutputTuning = {
  biasChannelValue: 32,
  printableBias: 0.6,
  endOfTurnBias: 1.57,
  endOfTurnWidth: 10,
  outputWidth: 12,
  exactOutputNorm: true,
};

const fileTypeOf: Record<TestModelQuant, number> = { f32: 0, f16: 1, q8_0: 7 };

/** A small, fast, seedable PRNG (sfc32), seeded through splitmix32 so that nearby seeds diverge. */
function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  const splitmix = () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = splitmix();
  let b = splitmix();
  let c = splitmix();
  let d = splitmix();
  return () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
}

/** FNV-1a of a string, to give each tensor its own random stream independent of tensor order. */
function hashName(name: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return hash;
}

function uniformValues(parameters: {
  seed: number;
  name: string;
  count: number;
  center: number;
  halfWidth: number;
}) {
  const random = createRandom((parameters.seed ^ hashName(parameters.name)) >>> 0);
  const values = new Float32Array(parameters.count);
  for (let i = 0; i < parameters.count; i++)
    values[i] = parameters.center + (random() * 2 - 1) * parameters.halfWidth;
  return values;
}

/** Parameters of {@link generateTestModel}. */
export type GenerateTestModelParameters = {
  size?: TestModelSize;
  seed?: number;
  quant?: TestModelQuant;
  /**
   * The tokenizer and chat template family (default: `bytes` for tiny and small, the original test models, names
   * and bytes unchanged; `gpt2` for medium).
   */
  tokenizer?: TestModelTokenizer;
  /** Told after each tensor how many parameters are made, of how many (a medium model takes a minute or so). */
  onProgress?: (progress: { done: number; total: number }) => void;
};

/** Return type of {@link generateTestModel}. */
export type GenerateTestModelReturnType = {
  name: string;
  bytes: Uint8Array;
  parameterCount: number;
  size: TestModelSize;
  seed: number;
  quant: TestModelQuant;
  tokenizer: TestModelTokenizer;
};

/** The store name of the test model made with these arguments. */
export function testModelName(parameters: {
  size: TestModelSize;
  seed: number;
  quant: TestModelQuant;
  tokenizer?: TestModelTokenizer;
}) {
  const family = parameters.tokenizer && parameters.tokenizer !== "bytes" ? `-${parameters.tokenizer}` : "";
  return `mycel-test-${parameters.size}${family}-s${parameters.seed}-${parameters.quant}`;
}

/** Generates a test model: same arguments, same bytes. The weights for a seed are the same in every quant. */
export function generateTestModel(parameters: GenerateTestModelParameters = {}): GenerateTestModelReturnType {
  return generateTunedTestModel(parameters);
}

/** {@link generateTestModel} with another output tuning, to measure one (not exported from the part). */
export function generateTunedTestModel(
  parameters: GenerateTestModelParameters,
  tuningOverride?: OutputTuning,
): GenerateTestModelReturnType {
  const size = parameters.size ?? "tiny";
  const seed = parameters.seed ?? 1;
  const quant = parameters.quant ?? defaultTestModelQuant[size];
  const tokenizer = parameters.tokenizer ?? defaultTestModelTokenizer[size];
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new RangeError("seed must be an integer in [0, 2^32)");
  const shape = shapes[size];
  const name = testModelName({ size, seed, quant, tokenizer });
  const spec = testTokenizerSpec(tokenizer);
  const tuning = tuningOverride ?? (tokenizer === "bytes" ? byteLevelTuning : bpeTuning);
  const vocabularySize = spec.tokens.length;
  const headDimension = shape.embedding / shape.heads;
  const kvDimension = headDimension * shape.kvHeads;

  const tensors: GgufTensor[] = [];
  let parameterCount = 0;
  const total = testModelParameterCount({ size, tokenizer });
  const progressed = () => parameters.onProgress?.({ done: parameterCount, total });
  // Row r, column c of a [columns, rows] tensor lives at r * columns + c; column = input dimension.
  const addMatrix = (
    tensorName: string,
    columns: number,
    rows: number,
    halfWidth: number,
    adjust: (values: Float32Array) => void = () => {},
  ) => {
    const values = uniformValues({ seed, name: tensorName, count: columns * rows, center: 0, halfWidth });
    adjust(values);
    tensors.push({
      name: tensorName,
      dims: [columns, rows],
      type: quant,
      data: encodeTensorData(values, quant),
    });
    parameterCount += values.length;
    progressed();
  };
  const addNorm = (tensorName: string, adjust: (values: Float32Array) => void = () => {}) => {
    const values = uniformValues({
      seed,
      name: tensorName,
      count: shape.embedding,
      center: 1,
      halfWidth: 0.1,
    });
    adjust(values);
    tensors.push({
      name: tensorName,
      dims: [shape.embedding],
      type: "f32",
      data: encodeTensorData(values, "f32"),
    });
    parameterCount += values.length;
  };
  const fanIn = (n: number) => Math.sqrt(3 / n);

  // Dimension 0 of the residual stream is a constant "bias channel": every token embedding holds
  // tuning.biasChannelValue there, no layer reads it (input column 0 is zero) or writes it (output row 0 is
  // zero), and the output layer uses it to favour text tokens (printable ASCII). The noise then reads like text
  // and is valid UTF-8, while every token keeps a non-zero probability.
  const readsNoBiasChannel = (columns: number) => (values: Float32Array) => {
    for (let index = 0; index < values.length; index += columns) values[index] = 0;
  };
  const writesNoBiasChannel = (columns: number) => (values: Float32Array) => values.fill(0, 0, columns);
  const embedding = shape.embedding;
  addMatrix("token_embd.weight", embedding, vocabularySize, Math.sqrt(3), (values) => {
    for (let index = 0; index < values.length; index += embedding) values[index] = tuning.biasChannelValue;
  });
  for (let layer = 0; layer < shape.layers; layer++) {
    const prefix = `blk.${layer}`;
    const inputWidth = fanIn(embedding);
    addNorm(`${prefix}.attn_norm.weight`);
    addMatrix(`${prefix}.attn_q.weight`, embedding, embedding, inputWidth, readsNoBiasChannel(embedding));
    addMatrix(`${prefix}.attn_k.weight`, embedding, kvDimension, inputWidth, readsNoBiasChannel(embedding));
    addMatrix(`${prefix}.attn_v.weight`, embedding, kvDimension, inputWidth, readsNoBiasChannel(embedding));
    addMatrix(
      `${prefix}.attn_output.weight`,
      embedding,
      embedding,
      inputWidth,
      writesNoBiasChannel(embedding),
    );
    addNorm(`${prefix}.ffn_norm.weight`);
    addMatrix(
      `${prefix}.ffn_gate.weight`,
      embedding,
      shape.feedForward,
      inputWidth,
      readsNoBiasChannel(embedding),
    );
    addMatrix(
      `${prefix}.ffn_up.weight`,
      embedding,
      shape.feedForward,
      inputWidth,
      readsNoBiasChannel(embedding),
    );
    addMatrix(
      `${prefix}.ffn_down.weight`,
      shape.feedForward,
      embedding,
      fanIn(shape.feedForward),
      writesNoBiasChannel(shape.feedForward),
    );
  }
  addNorm("output_norm.weight", (values) => {
    if (tuning.exactOutputNorm) values[0] = 1;
  });
  addMatrix("output.weight", embedding, vocabularySize, tuning.outputWidth * fanIn(embedding), (values) => {
    for (let token = 0; token < vocabularySize; token++) {
      values[token * embedding] = spec.isTextToken(token) ? tuning.printableBias : -tuning.printableBias;
    }
    if (spec.endOfTurnId !== undefined) {
      const row = spec.endOfTurnId * embedding;
      // Its random weights, drawn like a text token's, are rescaled to endOfTurnWidth (0: its logit is its bias).
      const scale = tuning.endOfTurnWidth / tuning.outputWidth;
      if (scale === 0) values.fill(0, row, row + embedding);
      for (let column = row + 1; scale !== 0 && column < row + embedding; column++)
        values[column] = (values[column] ?? 0) * scale;
      values[row] = tuning.endOfTurnBias;
    }
  });

  const metadata: GgufMetadataEntry[] = [
    { key: "general.architecture", type: "string", value: "llama" },
    { key: "general.name", type: "string", value: name },
    {
      key: "general.description",
      type: "string",
      value: `Mycel test model: random weights from seed ${seed}; output is noise`,
    },
    { key: "general.license", type: "string", value: "Apache-2.0" },
    { key: "general.file_type", type: "uint32", value: fileTypeOf[quant] },
    { key: "general.quantization_version", type: "uint32", value: 2 },
    { key: "general.alignment", type: "uint32", value: 32 },
    { key: "llama.context_length", type: "uint32", value: shape.contextLength },
    { key: "llama.embedding_length", type: "uint32", value: shape.embedding },
    { key: "llama.block_count", type: "uint32", value: shape.layers },
    { key: "llama.feed_forward_length", type: "uint32", value: shape.feedForward },
    { key: "llama.attention.head_count", type: "uint32", value: shape.heads },
    { key: "llama.attention.head_count_kv", type: "uint32", value: shape.kvHeads },
    { key: "llama.rope.dimension_count", type: "uint32", value: headDimension },
    { key: "llama.rope.freq_base", type: "float32", value: 10000 },
    { key: "llama.attention.layer_norm_rms_epsilon", type: "float32", value: 1e-5 },
    { key: "llama.vocab_size", type: "uint32", value: vocabularySize },
    { key: "tokenizer.ggml.model", type: "string", value: "gpt2" },
    { key: "tokenizer.ggml.pre", type: "string", value: spec.pre },
    { key: "tokenizer.ggml.tokens", type: "array", itemType: "string", value: spec.tokens },
    { key: "tokenizer.ggml.token_type", type: "array", itemType: "int32", value: spec.tokenTypes },
    { key: "tokenizer.ggml.merges", type: "array", itemType: "string", value: spec.merges },
    { key: "tokenizer.ggml.bos_token_id", type: "uint32", value: spec.bosId },
    { key: "tokenizer.ggml.eos_token_id", type: "uint32", value: spec.eosId },
    ...(spec.eotId === undefined
      ? []
      : [{ key: "tokenizer.ggml.eot_token_id", type: "uint32" as const, value: spec.eotId }]),
    ...(spec.paddingId === undefined
      ? []
      : [{ key: "tokenizer.ggml.padding_token_id", type: "uint32" as const, value: spec.paddingId }]),
    { key: "tokenizer.ggml.add_bos_token", type: "bool", value: spec.addBos },
    { key: "tokenizer.chat_template", type: "string", value: spec.chatTemplate },
  ];
  return { name, bytes: encodeGguf({ metadata, tensors }), parameterCount, size, seed, quant, tokenizer };
}
