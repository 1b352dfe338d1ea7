/**
 * Ollama's request fields (/api/chat, /api/generate, /api/show, /api/embed, /api/embeddings): their schemas, and the
 * one table that says, for every field and option Ollama defines, whether Mycel implements it, ignores it by design,
 * or refuses it.
 */
import { z } from "zod";
import { embeddingLimits, enforceableJsonSchema } from "../engine/index.ts";
import { InvalidInputError } from "../errors/index.ts";
import {
  maxJsonSchemaBytes,
  maxTools,
  maxTopLogprobs,
  penaltyWindowTokens,
  toolSchema,
} from "../protocol/index.ts";
import type { ApiSampling } from "./backend.ts";
import { embeddingRequestSchema } from "./embeddings.ts";
import { chatCompletionRequestSchema, constraintsOf } from "./schemas.ts";

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

/** The name Ollama's JSON schemas get as OpenAI's `response_format.json_schema.name` (Ollama's have none). */
export const ollamaSchemaName = "ollama_format";

/** Ollama's `format` as OpenAI's `response_format`: "json" is json_object, a schema json_schema (strict); "" none. */
function responseFormatOfOllama(value: unknown) {
  if (value === "") return undefined;
  if (value === "json") return { type: "json_object" };
  return { type: "json_schema", json_schema: { name: ollamaSchemaName, schema: value, strict: true } };
}
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
  min_p: { status: "mapped", openAi: "min_p" },
  repeat_penalty: { status: "mapped", openAi: "repeat_penalty" },
  presence_penalty: { status: "mapped", openAi: "presence_penalty" },
  frequency_penalty: { status: "mapped", openAi: "frequency_penalty" },
  // Ollama's default 64 is Mycel's fixed window; 0 turns the penalties off (samplingOfOllama), as Ollama's 0 does.
  repeat_last_n: {
    status: "refused",
    why: `the penalties look back over a fixed window of the last ${penaltyWindowTokens} output tokens; send ${penaltyWindowTokens} (Ollama's default), 0 (no penalties) or leave it out`,
    neutral: (value) => value === penaltyWindowTokens || value === 0,
  },
  typical_p: { status: "refused", why: "typical sampling is not implemented", neutral: equals(1) },
  tfs_z: { status: "refused", why: "tail-free sampling is not implemented", neutral: equals(1) },
  mirostat: { status: "refused", why: "mirostat sampling is not implemented", neutral: equals(0) },
  mirostat_tau: { status: "refused", why: "mirostat sampling is not implemented" },
  mirostat_eta: { status: "refused", why: "mirostat sampling is not implemented" },
  penalize_newline: {
    status: "refused",
    why: "the repeat penalty applies to every token alike, newlines included (Ollama's current default)",
    neutral: equals(true),
  },
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
  // Ollama's "json" or a JSON schema: OpenAI's response_format json_object / json_schema (strict), grammar-enforced.
  format: { status: "mapped", openAi: "response_format", convert: responseFormatOfOllama },
  // The same tools as /v1/'s, always "auto" (Ollama has no tool_choice): the model decides whether to call.
  tools: { status: "mapped", openAi: "tools" },
  logprobs: { status: "mapped", openAi: "logprobs" },
  top_logprobs: { status: "mapped", openAi: "top_logprobs" },
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
  // Arguments as objects become /v1/'s JSON text, with ids Ollama does not have (ollamaTools.ts).
  tool_calls: { status: "mapped", openAi: "tool_calls" },
  tool_name: { status: "mapped", openAi: "name" },
  thinking: {
    status: "refused",
    why: "the models served here do not think apart from their answer",
    neutral: emptyOrAbsent,
  },
};

/** Options Mycel does not map are checked by their rule (its neutral value), whatever their type. */
const ruledOption = z.unknown().optional();

const penalty = z.number().min(-2).max(2).nullable().optional();

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
  min_p: z.number().min(0).max(1).nullable().optional(),
  repeat_penalty: z.number().gt(0).max(10).nullable().optional(),
  presence_penalty: penalty,
  frequency_penalty: penalty,
  repeat_last_n: ruledOption,
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
    .union(
      [
        z.enum(["json", ""]),
        z
          .record(z.string(), z.unknown())
          .refine((schema) => JSON.stringify(schema).length <= maxJsonSchemaBytes, {
            message: `the schema is larger than ${maxJsonSchemaBytes} bytes of JSON`,
          }),
      ],
      { message: 'format is "json" or a JSON schema (an object)' },
    )
    .nullable()
    .optional(),
  logprobs: z.boolean().nullable().optional(),
  top_logprobs: z.number().int().min(0).max(maxTopLogprobs).nullable().optional(),
  think: z
    .union([z.boolean(), z.enum(["high", "medium", "low"])])
    .nullable()
    .optional(),
};

/**
 * A tool call of an earlier assistant turn, as Ollama writes it: no id, `arguments` an object (absent: none).
 * `index` (which call of the answer it was) is accepted as Ollama's answers carry it, and not used.
 */
const ollamaToolCallSchema = z.strictObject({
  function: z.strictObject({
    index: z.number().int().min(0).optional(),
    name: z.string().min(1).max(64),
    arguments: z.record(z.string(), z.unknown()).nullable().optional(),
  }),
});

const messageSchema = z.strictObject({
  role: z.enum(["system", "user", "assistant", "tool"]),
  content: z.string().default(""),
  images: z.array(z.string()).nullable().optional(),
  tool_calls: z.array(ollamaToolCallSchema).max(maxTools).nullable().optional(),
  tool_name: z.string().max(64).nullable().optional(),
  thinking: z.string().nullable().optional(),
});

/** POST /api/chat body; a field it does not know is refused (400 naming it). */
export const ollamaChatRequestSchema = z.strictObject({
  model: z.string().min(1),
  messages: z.array(messageSchema).nullable().optional(),
  stream: z.boolean().nullable().optional(),
  options: optionsSchema.nullable().optional(),
  mycel: mycelOptions,
  /** Tools as /v1/'s (`{type: "function", function: {name, description, parameters}}`); chat only, as Ollama. */
  tools: z.array(toolSchema).max(maxTools).nullable().optional(),
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

/** Why a sampling option is refused on the embeddings routes. */
const notSampled = "an embedding is not sampled, so it would change nothing; remove it";

/**
 * Every field of `options` on /api/embed and /api/embeddings, by Ollama's name: what says where or how the model
 * runs is ignored by design as on /api/chat; every sampling option is refused (an embedding is not sampled).
 */
export const ollamaEmbedOptionRules: Record<string, OllamaFieldRule> = Object.fromEntries(
  Object.entries(ollamaOptionRules).map(([name, rule]) => [
    name,
    rule.status === "ignored" ? rule : { status: "refused", why: notSampled },
  ]),
);

/** The options of the embeddings routes: Ollama's names only (another is a 400 naming it), checked by their rule. */
const embedOptionsSchema = z.strictObject(
  Object.fromEntries(Object.keys(ollamaEmbedOptionRules).map((name) => [name, ruledOption])),
);

/** Mycel's own options on the embeddings routes, as on /v1/embeddings (`max_price`). */
const mycelEmbedOptions = embeddingRequestSchema.shape.mycel;

/**
 * POST /api/embed body; a field it does not know is refused (400 naming it). No input (absent, `""` or `[]`) is
 * Ollama's "load the model" request. `truncate` is accepted either way: Mycel never truncates (docs/API.md).
 */
export const ollamaEmbedRequestSchema = z.strictObject({
  model: z.string().min(1),
  input: z
    .union([z.string(), z.array(z.string().min(1)).max(embeddingLimits.maxInputs)], {
      message: `input must be a string or an array of at most ${embeddingLimits.maxInputs} non-empty strings`,
    })
    .nullable()
    .optional(),
  truncate: z.boolean().nullable().optional(),
  dimensions: z.number().int().min(1).nullable().optional(),
  options: embedOptionsSchema.nullable().optional(),
  keep_alive: ruledFields.keep_alive,
  mycel: mycelEmbedOptions,
});

/** POST /api/embeddings body (Ollama's older route, one `prompt`); a field it does not know is refused. */
export const ollamaEmbeddingsRequestSchema = z.strictObject({
  model: z.string().min(1),
  prompt: z.string().nullable().optional(),
  options: embedOptionsSchema.nullable().optional(),
  keep_alive: ruledFields.keep_alive,
  mycel: mycelEmbedOptions,
});

export type OllamaChatRequest = z.infer<typeof ollamaChatRequestSchema>;
/** One message of an /api/chat request, as parsed. */
export type OllamaChatMessage = z.infer<typeof messageSchema>;
export type OllamaGenerateRequest = z.infer<typeof ollamaGenerateRequestSchema>;
export type OllamaEmbedRequest = z.infer<typeof ollamaEmbedRequestSchema>;
export type OllamaEmbeddingsRequest = z.infer<typeof ollamaEmbeddingsRequestSchema>;

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

/**
 * Refuses (400) every field and option of a parsed request that Mycel does not implement at the value given, and
 * the combinations that ask for two things at once; a `format` schema no grammar can enforce is refused here too.
 */
export function checkOllamaFields(body: OllamaChatRequest | OllamaGenerateRequest) {
  const fields = body as Record<string, unknown>;
  for (const [name, rule] of Object.entries(ollamaBodyRules)) applyRule(rule, name, fields[name]);
  for (const [name, value] of Object.entries(body.options ?? {}))
    applyRule(ollamaOptionRules[name], `options.${name}`, value);
  const messages = "messages" in body ? (body.messages ?? []) : [];
  messages.forEach((message, index) => {
    for (const [name, rule] of Object.entries(ollamaMessageRules))
      applyRule(rule, `messages.${index}.${name}`, (message as Record<string, unknown>)[name]);
    checkToolFieldsOfMessage(message, index);
  });
  if ("tools" in body && body.tools && body.tools.length > 0 && body.format)
    throw new InvalidInputError(
      "format cannot be combined with tools: Ollama has no tool_choice, so a grammar cannot both force the format and leave the model free to call a tool",
      { param: "format", code: "invalid_value", hint: "send format or tools, not both" },
    );
  if (body.top_logprobs && body.logprobs !== true)
    throw new InvalidInputError("top_logprobs needs logprobs: true", {
      param: "top_logprobs",
      code: "invalid_value",
    });
  const options = body.options ?? {};
  if (options.repeat_last_n === 0) {
    const asked = penaltyOptions.find((name) => {
      const value = options[name];
      return value != null && value !== neutralPenalties[name];
    });
    if (asked)
      throw new InvalidInputError(
        `options.repeat_last_n 0 turns the penalties off, and options.${asked} asks for one; leave one of them out`,
        { param: "options.repeat_last_n", code: "invalid_value" },
      );
  }
  if (body.format && typeof body.format === "object") checkFormatSchema(body.format);
}

/** Refuses (400) every option of an embeddings request that its rule refuses (all sampling options), naming it. */
export function checkOllamaEmbedFields(body: OllamaEmbedRequest | OllamaEmbeddingsRequest) {
  applyRule(ollamaBodyRules.keep_alive, "keep_alive", body.keep_alive);
  for (const [name, value] of Object.entries(body.options ?? {}))
    applyRule(ollamaEmbedOptionRules[name], `options.${name}`, value);
}

/** Tool calls belong to assistant turns and a tool name to tool turns: elsewhere no template shows them. */
function checkToolFieldsOfMessage(message: OllamaChatMessage, index: number) {
  if (message.tool_calls && message.tool_calls.length > 0 && message.role !== "assistant")
    throw new InvalidInputError(
      `messages.${index}.tool_calls belong to an assistant message, not a ${message.role} one`,
      {
        param: `messages.${index}.tool_calls`,
        code: "invalid_value",
      },
    );
  if (message.tool_name && message.role !== "tool")
    throw new InvalidInputError(
      `messages.${index}.tool_name belongs to a tool message, not a ${message.role} one`,
      {
        param: `messages.${index}.tool_name`,
        code: "invalid_value",
      },
    );
}

const neutralPenalties = { repeat_penalty: 1, presence_penalty: 0, frequency_penalty: 0 } as const;
const penaltyOptions = Object.keys(neutralPenalties) as (keyof typeof neutralPenalties)[];

/** A `format` schema no grammar can enforce is a 400 naming `format`, before any provider is asked. */
function checkFormatSchema(schema: Record<string, unknown>) {
  try {
    enforceableJsonSchema(schema);
  } catch (error) {
    if (!(error instanceof InvalidInputError)) throw error;
    throw new InvalidInputError(error.shortMessage.replace("response_format.json_schema.schema", "format"), {
      param: "format",
      code: error.code,
      hint: error.hint,
    });
  }
}

/**
 * Ollama's defaults where a request leaves a sampling option out (its Modelfile defaults): temperature 0.8, top_p
 * 0.9, top_k 40, repeat_penalty 1.1 over the last 64 tokens (`repeat_last_n` 0 turns it off), until the context
 * window is full; min_p, presence and frequency penalties 0 (off).
 */
export const ollamaSamplingDefaults = {
  temperature: 0.8,
  top_p: 0.9,
  top_k: 40,
  repeat_penalty: 1.1,
} as const;

/** The `mapped` fields and options of an Ollama request, under their /v1/chat/completions names and shapes. */
export function openAiFieldsOfOllama(
  body: Pick<OllamaChatRequest, "options"> & Record<string, unknown>,
): Record<string, unknown> {
  const openAi: Record<string, unknown> = {};
  const take = (rule: OllamaFieldRule | undefined, value: unknown) => {
    if (rule?.status !== "mapped" || value === null || value === undefined) return;
    const converted = rule.convert ? rule.convert(value) : value;
    if (converted !== undefined) openAi[rule.openAi] = converted;
  };
  for (const [name, rule] of Object.entries(ollamaBodyRules)) take(rule, body[name]);
  for (const [name, value] of Object.entries(body.options ?? {})) take(ollamaOptionRules[name], value);
  return openAi;
}

/** The sampling settings of an Ollama request: its `mapped` options under their OpenAI names, Ollama's defaults. */
export function samplingOfOllama(
  body: Pick<OllamaChatRequest, "options"> & Record<string, unknown>,
): ApiSampling {
  const openAi = openAiFieldsOfOllama(body) as OpenAiSampling;
  const penaltiesOff = body.options?.repeat_last_n === 0;
  return {
    maxTokens: openAi.max_tokens,
    temperature: openAi.temperature ?? ollamaSamplingDefaults.temperature,
    topP: openAi.top_p ?? ollamaSamplingDefaults.top_p,
    topK: openAi.top_k ?? ollamaSamplingDefaults.top_k,
    seed: openAi.seed,
    stop: openAi.stop ?? [],
    ...constraintsOf({
      min_p: openAi.min_p,
      presence_penalty: openAi.presence_penalty,
      frequency_penalty: openAi.frequency_penalty,
      repeat_penalty:
        openAi.repeat_penalty ?? (penaltiesOff ? undefined : ollamaSamplingDefaults.repeat_penalty),
    }),
    ...(openAi.logprobs === true ? { logprobs: openAi.top_logprobs ?? 0 } : {}),
    ...(openAi.response_format ? { responseFormat: openAi.response_format } : {}),
  };
}

/** What {@link openAiFieldsOfOllama} gives for the sampling fields, typed (the request's schema checked them). */
type OpenAiSampling = {
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  seed?: number;
  stop?: string[];
  min_p?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  repeat_penalty?: number;
  logprobs?: boolean;
  top_logprobs?: number;
  response_format?: ApiSampling["responseFormat"];
};
