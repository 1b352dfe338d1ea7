/**
 * Ollama's request fields (/api/chat, /api/generate, /api/show): their schemas, and the one table that says, for
 * every field and option Ollama defines, whether Mycel implements it, ignores it by design, or refuses it.
 */
import { z } from "zod";
import { InvalidInputError } from "../errors/index.ts";
import type { ApiSampling } from "./backend.ts";
import { chatCompletionRequestSchema } from "./schemas.ts";

/**
 * What Mycel does with one Ollama field: `mapped` passes it on under its OpenAI-side name; `not_yet` is refused
 * (400) unless it holds its neutral value, until the OpenAI side implements it (then switch it to `mapped`);
 * `refused` likewise, with no plan to implement it; `ignored` changes nothing in the answer (the reason says why).
 */
export type OllamaFieldRule =
  | { status: "mapped"; openAi: string; convert?: (value: unknown) => unknown }
  | {
      status: "not_yet";
      openAi: string;
      neutral: (value: unknown) => boolean;
      /** Ollama's value in the OpenAI side's shape, ready for when the row becomes `mapped`. */
      convert?: (value: unknown) => unknown;
    }
  | { status: "refused"; why: string; neutral?: (value: unknown) => boolean }
  | { status: "ignored"; why: string };

const equals = (neutral: unknown) => (value: unknown) => value === neutral;
const emptyOrAbsent = (value: unknown) =>
  value === "" || value === false || (Array.isArray(value) && value.length === 0);
const runner = "where and how fast the model runs is the server's choice, not the request's";

/**
 * Every field of `options`, by Ollama's name. The `openAi` names are the fields of /v1/chat/completions: switching a
 * `not_yet` row to `mapped` puts it into {@link openAiFieldsOfOllama} (sampling options then go on in {@link samplingOfOllama}).
 */
export const ollamaOptionRules: Record<string, OllamaFieldRule> = {
  temperature: { status: "mapped", openAi: "temperature" },
  top_p: { status: "mapped", openAi: "top_p" },
  top_k: { status: "mapped", openAi: "top_k" },
  // Ollama's -1 is a random seed: Mycel picks one and returns it (`mycel.seed`).
  seed: { status: "mapped", openAi: "seed", convert: (value) => (value === -1 ? undefined : value) },
  // -1 (no limit) and -2 (fill the context): until the context window is full.
  num_predict: {
    status: "mapped",
    openAi: "max_tokens",
    convert: (value) => (value === -1 || value === -2 ? undefined : value),
  },
  stop: { status: "mapped", openAi: "stop" },
  min_p: { status: "not_yet", openAi: "min_p", neutral: equals(0) },
  repeat_penalty: { status: "not_yet", openAi: "repeat_penalty", neutral: equals(1) },
  presence_penalty: { status: "not_yet", openAi: "presence_penalty", neutral: equals(0) },
  frequency_penalty: { status: "not_yet", openAi: "frequency_penalty", neutral: equals(0) },
  repeat_last_n: { status: "not_yet", openAi: "repeat_last_n", neutral: equals(0) },
  typical_p: { status: "refused", why: "typical sampling is not implemented", neutral: equals(1) },
  tfs_z: { status: "refused", why: "tail-free sampling is not implemented", neutral: equals(1) },
  mirostat: { status: "refused", why: "mirostat sampling is not implemented", neutral: equals(0) },
  mirostat_tau: { status: "refused", why: "mirostat sampling is not implemented" },
  mirostat_eta: { status: "refused", why: "mirostat sampling is not implemented" },
  penalize_newline: { status: "refused", why: "repetition penalties are not implemented" },
  num_ctx: {
    status: "ignored",
    why: "the context window is the server's, fixed when the model is loaded (GET /api/show says it); a prompt that does not fit is refused, never truncated",
  },
  num_keep: { status: "ignored", why: "Mycel never truncates or shifts the context, so nothing is kept" },
  num_batch: { status: "ignored", why: runner },
  num_gpu: { status: "ignored", why: runner },
  main_gpu: { status: "ignored", why: runner },
  num_thread: { status: "ignored", why: runner },
  use_mmap: { status: "ignored", why: runner },
  use_mlock: { status: "ignored", why: runner },
  low_vram: { status: "ignored", why: runner },
  numa: { status: "ignored", why: runner },
};

/** The top-level fields of /api/chat and /api/generate that are not plain inputs, by Ollama's name. */
export const ollamaBodyRules: Record<string, OllamaFieldRule> = {
  keep_alive: {
    status: "ignored",
    why: "models stay loaded while the server runs; how long is not the request's choice",
  },
  // Ollama's "json" or a JSON schema: OpenAI's response_format json_object / json_schema.
  format: {
    status: "not_yet",
    openAi: "response_format",
    neutral: emptyOrAbsent,
    convert: (value) =>
      value === "json"
        ? { type: "json_object" }
        : { type: "json_schema", json_schema: { name: "ollama_format", schema: value, strict: true } },
  },
  tools: { status: "not_yet", openAi: "tools", neutral: emptyOrAbsent },
  logprobs: { status: "not_yet", openAi: "logprobs", neutral: emptyOrAbsent },
  top_logprobs: { status: "not_yet", openAi: "top_logprobs", neutral: equals(0) },
  think: {
    status: "refused",
    why: "the models served here do not think apart from their answer",
    neutral: emptyOrAbsent,
  },
  suffix: { status: "refused", why: "fill-in-the-middle is not implemented", neutral: emptyOrAbsent },
  template: {
    status: "refused",
    why: "Mycel applies the model's own chat template (Jinja); send raw: true with a prompt you formatted yourself",
    neutral: emptyOrAbsent,
  },
  context: {
    status: "refused",
    why: "Ollama deprecated it; send the conversation as /api/chat messages",
    neutral: emptyOrAbsent,
  },
  images: { status: "refused", why: "the models served here read text only", neutral: emptyOrAbsent },
};

/** Fields of a chat message besides role and content. */
export const ollamaMessageRules: Record<string, OllamaFieldRule> = {
  images: { status: "refused", why: "the models served here read text only", neutral: emptyOrAbsent },
  tool_calls: { status: "not_yet", openAi: "tool_calls", neutral: emptyOrAbsent },
  tool_name: { status: "not_yet", openAi: "name", neutral: emptyOrAbsent },
  thinking: {
    status: "refused",
    why: "the models served here do not think apart from their answer",
    neutral: emptyOrAbsent,
  },
};

/** Options Mycel does not map are checked by their rule (its neutral value), whatever their type. */
const ruledOption = z.unknown().optional();

const optionsSchema = z.strictObject({
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().gt(0).max(1).nullable().optional(),
  top_k: z.number().int().min(0).nullable().optional(),
  seed: z.number().int().min(-1).max(0xffffffff).nullable().optional(),
  num_predict: z
    .number()
    .int()
    .refine((value) => value >= 1 || value === -1 || value === -2, {
      message: "num_predict must be at least 1, or -1 for no limit",
    })
    .nullable()
    .optional(),
  stop: z.array(z.string().min(1)).max(4).nullable().optional(),
  ...Object.fromEntries(
    Object.entries(ollamaOptionRules)
      .filter(([, rule]) => rule.status !== "mapped")
      .map(([name]) => [name, ruledOption]),
  ),
});

/** Mycel's own request options, as on /v1/chat/completions (`include_evidence`, `audit`, `max_price`). */
const mycelOptions = chatCompletionRequestSchema.shape.mycel;

const ruledFields = {
  keep_alive: z.union([z.string(), z.number()]).nullable().optional(),
  format: z
    .union([z.string(), z.record(z.string(), z.unknown())])
    .nullable()
    .optional(),
  tools: z.array(z.unknown()).nullable().optional(),
  logprobs: z.boolean().nullable().optional(),
  top_logprobs: z.number().int().min(0).nullable().optional(),
  think: z
    .union([z.boolean(), z.enum(["high", "medium", "low"])])
    .nullable()
    .optional(),
};

const messageSchema = z.strictObject({
  role: z.enum(["system", "user", "assistant", "tool"]),
  content: z.string().default(""),
  images: z.array(z.string()).nullable().optional(),
  tool_calls: z.array(z.unknown()).nullable().optional(),
  tool_name: z.string().nullable().optional(),
  thinking: z.string().nullable().optional(),
});

/** POST /api/chat body; a field it does not know is refused (400 naming it). */
export const ollamaChatRequestSchema = z.strictObject({
  model: z.string().min(1),
  messages: z.array(messageSchema).nullable().optional(),
  stream: z.boolean().nullable().optional(),
  options: optionsSchema.nullable().optional(),
  mycel: mycelOptions,
  ...ruledFields,
});

/** POST /api/generate body; a field it does not know is refused (400 naming it). */
export const ollamaGenerateRequestSchema = z.strictObject({
  model: z.string().min(1),
  prompt: z.string().nullable().optional(),
  system: z.string().nullable().optional(),
  raw: z.boolean().nullable().optional(),
  stream: z.boolean().nullable().optional(),
  options: optionsSchema.nullable().optional(),
  mycel: mycelOptions,
  suffix: z.string().nullable().optional(),
  template: z.string().nullable().optional(),
  context: z.array(z.number()).nullable().optional(),
  images: z.array(z.string()).nullable().optional(),
  ...ruledFields,
});

/** POST /api/show body: Ollama's `model`, or `name` as older clients send it. */
export const ollamaShowRequestSchema = z
  .strictObject({
    model: z.string().min(1).optional(),
    name: z.string().min(1).optional(),
    verbose: z.boolean().nullable().optional(),
  })
  .refine((body) => body.model !== undefined || body.name !== undefined, {
    message: "give the model's name as `model`",
    path: ["model"],
  });

export type OllamaChatRequest = z.infer<typeof ollamaChatRequestSchema>;
export type OllamaGenerateRequest = z.infer<typeof ollamaGenerateRequestSchema>;

/** Throws the 400 a field gets when its rule refuses the value it holds (`where` names it, e.g. `options.min_p`). */
function applyRule(rule: OllamaFieldRule | undefined, where: string, value: unknown) {
  if (rule === undefined || value === undefined || value === null) return;
  if (rule.status === "mapped" || rule.status === "ignored") return;
  if (rule.neutral?.(value)) return;
  const reason =
    rule.status === "not_yet"
      ? `'${where}' is not supported yet`
      : `'${where}' is not supported: ${rule.why}`;
  throw new InvalidInputError(
    `unsupported parameter ${reason}; Mycel refuses it rather than ignore it, so remove it (docs/API.md "Ollama API" lists every field)`,
    { code: "unsupported_parameter", param: where },
  );
}

/** Refuses (400) every field and option of a parsed request that Mycel does not implement at the value given. */
export function checkOllamaFields(body: OllamaChatRequest | OllamaGenerateRequest) {
  const fields = body as Record<string, unknown>;
  for (const [name, rule] of Object.entries(ollamaBodyRules)) applyRule(rule, name, fields[name]);
  for (const [name, value] of Object.entries(body.options ?? {}))
    applyRule(ollamaOptionRules[name], `options.${name}`, value);
  const messages = "messages" in body ? (body.messages ?? []) : [];
  messages.forEach((message, index) => {
    for (const [name, rule] of Object.entries(ollamaMessageRules))
      applyRule(rule, `messages.${index}.${name}`, (message as Record<string, unknown>)[name]);
  });
}

/**
 * Ollama's defaults where a request leaves a sampling option out (its Modelfile defaults): temperature 0.8, top_p
 * 0.9, top_k 40, until the context window is full. (Ollama's repeat_penalty default of 1.1 is not applied: Mycel
 * has no repetition penalty yet.)
 */
export const ollamaSamplingDefaults = { temperature: 0.8, top_p: 0.9, top_k: 40 } as const;

/** The `mapped` fields and options of an Ollama request, under their /v1/chat/completions names and shapes. */
export function openAiFieldsOfOllama(
  body: Pick<OllamaChatRequest, "options"> & Record<string, unknown>,
): Record<string, unknown> {
  const openAi: Record<string, unknown> = {};
  const take = (rule: OllamaFieldRule | undefined, value: unknown) => {
    if (rule?.status !== "mapped" || value === null || value === undefined) return;
    openAi[rule.openAi] = rule.convert ? rule.convert(value) : value;
  };
  for (const [name, rule] of Object.entries(ollamaBodyRules)) take(rule, body[name]);
  for (const [name, value] of Object.entries(body.options ?? {})) take(ollamaOptionRules[name], value);
  return openAi;
}

/** The sampling settings of an Ollama request: its `mapped` options under their OpenAI names, Ollama's defaults. */
export function samplingOfOllama(
  body: Pick<OllamaChatRequest, "options"> & Record<string, unknown>,
): ApiSampling {
  const openAi = openAiFieldsOfOllama(body);
  return {
    maxTokens: openAi.max_tokens as number | undefined,
    temperature: (openAi.temperature as number | undefined) ?? ollamaSamplingDefaults.temperature,
    topP: (openAi.top_p as number | undefined) ?? ollamaSamplingDefaults.top_p,
    topK: (openAi.top_k as number | undefined) ?? ollamaSamplingDefaults.top_k,
    seed: openAi.seed as number | undefined,
    stop: (openAi.stop as string[] | undefined) ?? [],
  };
}
