/** Requests and model views the verification benches (`npm run calibrate`, `npm run bench:verify`) share. */
import type { Engine } from "../../src/engine/index.ts";
import {
  defaultTestModelTokenizer,
  type TestModelSize,
  type TestModelTokenizer,
  testModelName,
  testModelTokenizers,
} from "../../src/model/index.ts";
import type { InferenceRequest } from "../../src/protocol/index.ts";
import {
  type CheatModelShape,
  type CheatModels,
  fixtureRequest,
  honestAnswer,
  seededRandom,
} from "../../test/fixtures/cheats.ts";

const modelSizes: readonly TestModelSize[] = ["tiny", "small", "medium"];

/**
 * The test model the verification benches' answers claim (`MYCEL_BENCH_VERIFY_MODEL`: a size, optionally with a
 * tokenizer, e.g. "small", "small:gpt2", "medium"; default "small", byte-level), and its name for the reports.
 */
export function verifyBenchModel(): CheatModelShape & { label: string } {
  const value = process.env.MYCEL_BENCH_VERIFY_MODEL ?? "small";
  const [size, tokenizer, ...rest] = value.split(":");
  if (
    rest.length > 0 ||
    !modelSizes.includes(size as TestModelSize) ||
    (tokenizer !== undefined && !testModelTokenizers.includes(tokenizer as TestModelTokenizer))
  )
    throw new Error(
      `MYCEL_BENCH_VERIFY_MODEL: expected <size>[:<tokenizer>] with a size of ${modelSizes.join(", ")} and a tokenizer of ${testModelTokenizers.join(", ")} (e.g. "small:gpt2"), got "${value}"`,
    );
  const shape = { size: size as TestModelSize, tokenizer: tokenizer as TestModelTokenizer | undefined };
  const label = testModelName({
    size: shape.size,
    tokenizer: shape.tokenizer ?? defaultTestModelTokenizer[shape.size],
    seed: 1,
    quant: "f16",
  });
  return { ...shape, label };
}

const fillerSentences = [
  "Start from the basics and explain each term before you use it.",
  "Compare it with something most people have seen at home.",
  "Mention one common mistake and how to avoid it.",
  "Give the numbers where they matter, with their units.",
  "Say what changed over the last hundred years.",
  "End with a short summary of the three most important points.",
  "Keep the tone friendly, but do not leave out the details.",
  "If there is a debate about it, describe both sides fairly.",
];

/**
 * A fixture request whose user message is padded to at most `promptBytes` bytes (and within a sentence of it): the
 * test models' tokenizer is byte-level, so the prompt has about that many tokens, plus the system prompt and chat
 * template's (at most ~130).
 */
export function longPromptRequest(parameters: {
  models: CheatModels;
  index: number;
  promptBytes: number;
  maxTokens?: number;
  temperature?: number;
}): InferenceRequest {
  const request = fixtureRequest(parameters);
  const messages = [...(request.messages ?? [])];
  const last = messages[messages.length - 1];
  if (!last) return request;
  const random = seededRandom(parameters.index * 104_729 + 3);
  let content = last.content;
  for (;;) {
    const next = ` ${fillerSentences[Math.floor(random() * fillerSentences.length)]}`;
    if (content.length + next.length > parameters.promptBytes) break;
    content += next;
  }
  messages[messages.length - 1] = { ...last, content };
  return { ...request, messages };
}

/**
 * The fixture's models with the q8_0 file as the claimed model: honest q8_0 answers claimed as q8_0, and cheats
 * against a q8_0 claim. Its `lowerQuant` is then the f16 file (serving f16 for a q8_0 claim).
 */
export function claimingQ8(models: CheatModels): CheatModels {
  return { claimed: models.lowerQuant, other: models.other, lowerQuant: models.claimed };
}

/** A request (temperature 1) whose prompt has at least `tokens` tokens in this model's chat template (filler-padded). */
export function paddedRequest(parameters: {
  engine: Engine;
  models: CheatModels;
  tokens: number;
  maxTokens: number;
  index?: number;
}) {
  const { engine, models, tokens, maxTokens } = parameters;
  let promptBytes = tokens;
  for (let attempt = 0; attempt < 12; attempt++) {
    const request = longPromptRequest({
      models,
      index: parameters.index ?? 0,
      promptBytes,
      maxTokens,
      temperature: 1,
    });
    const count = engine.tokenizeChat({ modelHash: models.claimed, messages: request.messages ?? [] }).length;
    if (count >= tokens) return { request, promptTokens: count };
    promptBytes = Math.ceil(promptBytes * (tokens / count) * 1.05) + 16;
  }
  throw new Error(`could not pad a prompt to ${tokens} tokens`);
}

/** The first seed from 1 whose answer to `base` has exactly max_tokens tokens (random weights rarely stop early). */
export async function exactLengthAnswer(parameters: {
  engine: Engine;
  models: CheatModels;
  base: InferenceRequest;
}) {
  const { engine, models, base } = parameters;
  for (let seed = 1; seed <= 20; seed++) {
    const request = { ...base, seed };
    const answer = await honestAnswer({ engine, models, request });
    if (answer.outputTokens.length === base.max_tokens) return { request, answer };
  }
  throw new Error(`no seed in 1..20 gives an answer of ${base.max_tokens} tokens`);
}
