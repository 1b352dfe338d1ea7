/** Frames of the inference protocol (`/mycel/infer/1.0.0`): schemas and parsing. Pure: no I/O. */
import { z } from "zod";
import { MycelError } from "../errors/index.ts";
import { streamLimits, wireVersion } from "./constants.ts";
import { signedReceiptSchema } from "./receipt.ts";
import type { WireErrorCode } from "./wireErrors.ts";

/** A frame that breaks the protocol: wrong version, wrong shape, out of limits. */
export class ProtocolError extends MycelError {
  override name = "ProtocolError";
}

const bytes32 = z.string().regex(/^0x[0-9a-f]{64}$/, "must be 32 bytes of lowercase hex");
const address = z.string().regex(/^0x[0-9a-fA-F]{40}$/, "must be an address");
const tokenId = z.number().int().min(0).max(0xffffffff);
/** An amount in the payment token's smallest unit, as a decimal string (uint256). */
const amount = z.string().regex(/^(0|[1-9][0-9]{0,77})$/, "must be a decimal integer string");
const signature = z.string().regex(/^0x[0-9a-fA-F]{130}$/, "must be a 65-byte signature");
const version = z.literal(wireVersion, { message: `only protocol version ${wireVersion} is spoken here` });

/** Field schemas every frame family shares (inference, evidence, audit samples). */
export const wireFieldSchemas = { bytes32, address, tokenId, amount, signature, version } as const;

/** The most `logit_bias` entries a request may carry (OpenAI's limit). */
export const maxLogitBiasEntries = 300;
/** The largest JSON schema (`response_format.json_schema.schema`) a request may carry, in bytes of JSON. */
export const maxJsonSchemaBytes = 64 * 1024;
/** The most alternatives a request may ask `logprobs` for, per position (OpenAI's limit). */
export const maxTopLogprobs = 20;

/** A JSON object (a schema), bounded in size. */
const jsonSchemaObject = z
  .record(z.string(), z.unknown())
  .refine((schema) => JSON.stringify(schema).length <= maxJsonSchemaBytes, {
    message: `the schema is larger than ${maxJsonSchemaBytes} bytes of JSON`,
  });

/** `response_format` as OpenAI defines it, but "text" (the default) is written as no field at all. */
export const responseFormatSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("json_object") }).strict(),
  z
    .object({
      type: z.literal("json_schema"),
      json_schema: z
        .object({
          name: z.string().min(1).max(64),
          description: z.string().max(4096).optional(),
          schema: jsonSchemaObject,
          strict: z.boolean().optional(),
        })
        .strict(),
    })
    .strict(),
]);

/** An output format a request asks for (see {@link responseFormatSchema}). */
export type ResponseFormat = z.infer<typeof responseFormatSchema>;

/**
 * Sampling and output constraints beyond temperature, top_p and top_k. Every one is optional and absent when
 * neutral, so that a request without them hashes as before. Penalties count the last {@link penaltyWindowTokens}
 * output tokens (continuation prefix included).
 */
export const constraintFieldSchemas = {
  min_p: z.number().gt(0).max(1).optional(),
  presence_penalty: z.number().min(-2).max(2).optional(),
  frequency_penalty: z.number().min(-2).max(2).optional(),
  /** llama.cpp's multiplicative repeat penalty (1 is off). */
  repeat_penalty: z.number().gt(0).max(10).optional(),
  /** Token id (decimal string) -> a number added to its logit before sampling. */
  logit_bias: z
    .record(z.string().regex(/^(0|[1-9][0-9]{0,9})$/, "must be a token id"), z.number().min(-100).max(100))
    .refine((bias) => Object.keys(bias).length <= maxLogitBiasEntries, {
      message: `at most ${maxLogitBiasEntries} entries`,
    })
    .optional(),
  /** Return log-probabilities of the output tokens, with this many alternatives per position. */
  logprobs: z.number().int().min(0).max(maxTopLogprobs).optional(),
  response_format: responseFormatSchema.optional(),
} as const;

/** The most tools a request may carry (OpenAI's limit). */
export const maxTools = 128;

/** A function's name, as OpenAI allows them. */
const functionName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1 to 64 letters, digits, _ or -");

/** A tool as OpenAI defines it (only functions). */
export const toolSchema = z
  .object({
    type: z.literal("function"),
    function: z
      .object({
        name: functionName,
        description: z.string().max(4096).optional(),
        /** The JSON schema of its arguments; absent: none. */
        parameters: jsonSchemaObject.optional(),
        strict: z.boolean().optional(),
      })
      .strict(),
  })
  .strict();

/** OpenAI's `tool_choice`: "auto" (the default with tools) is written as no field at all. */
export const toolChoiceSchema = z.union([
  z.enum(["none", "required"]),
  z.object({ type: z.literal("function"), function: z.object({ name: functionName }).strict() }).strict(),
]);

/** A tool call of an earlier assistant turn (its arguments: the JSON text the model wrote). */
const toolCallSchema = z
  .object({
    id: z.string().min(1).max(128),
    type: z.literal("function"),
    function: z.object({ name: z.string().min(1).max(64), arguments: z.string() }).strict(),
  })
  .strict();

/** One chat message: an assistant turn may carry its tool calls, a tool turn the call it answers and its name. */
export const wireMessageSchema = z
  .object({
    role: z.string().min(1).max(64),
    content: z.string(),
    tool_calls: z.array(toolCallSchema).min(1).max(maxTools).optional(),
    tool_call_id: z.string().min(1).max(128).optional(),
    name: z.string().min(1).max(64).optional(),
  })
  .strict();

/**
 * Tools (chat only): shown to the model through its chat template; `tool_choice` "required" or a named function
 * is enforced by a grammar of the model's tool-call format. Absent when neutral: no tools, "auto", parallel calls.
 */
export const toolFieldSchemas = {
  tools: z.array(toolSchema).min(1).max(maxTools).optional(),
  tool_choice: toolChoiceSchema.optional(),
  /** Only `false` (one call at most) is written; absent: any number of calls. */
  parallel_tool_calls: z.literal(false).optional(),
} as const;

/** Characters of a chat request's prompt: contents, earlier calls' arguments, and the tools' JSON. */
function promptCharacters(request: {
  messages?: readonly z.infer<typeof wireMessageSchema>[];
  prompt?: string | readonly number[];
  tools?: readonly unknown[];
}): number {
  let total = typeof request.prompt === "string" ? request.prompt.length : 0;
  for (const message of request.messages ?? []) {
    total += message.content.length;
    for (const call of message.tool_calls ?? []) total += call.function.arguments.length;
  }
  return total + (request.tools ? JSON.stringify(request.tools).length : 0);
}

/** Output tokens the presence, frequency and repeat penalties look back over. */
export const penaltyWindowTokens = 64;

/** What one embeddings request may carry on the wire (docs/PROTOCOL.md "Embeddings"). */
export const embedLimits = {
  /** Most inputs in one request. */
  maxInputs: 256,
  /** Most tokens of one token-id input. */
  maxTokensPerInput: 8192,
  /** Longest vector a provider may send (float32 values). */
  maxDimensions: 65_536,
} as const;

/** One embeddings input on the wire: text, or token ids. */
const embedInput = z.union([z.string().min(1), z.array(tokenId).min(1).max(embedLimits.maxTokensPerInput)]);

/** What a gateway asks a provider to generate; its canonical JSON hash is the receipt's requestHash. */
export const inferenceRequestSchema = z
  .object({
    model_hash: bytes32,
    kind: z.enum(["chat", "text", "embed"]),
    messages: z.array(wireMessageSchema).min(1).max(streamLimits.maxMessages).optional(),
    prompt: z.union([z.string().min(1), z.array(tokenId).min(1)]).optional(),
    /** Absent: until the context window is full (as OpenAI does). */
    max_tokens: z.number().int().min(1).max(1_000_000).optional(),
    temperature: z.number().min(0).max(2),
    top_p: z.number().gt(0).max(1),
    top_k: z.number().int().min(0),
    seed: z.number().int().min(0).max(0xffffffff),
    stop: z.array(z.string().min(1)).max(4),
    /** Continuation after failover: output tokens another provider already produced for this request. */
    prefix_tokens: z.array(tokenId).max(streamLimits.maxPromptTokens).optional(),
    ...constraintFieldSchemas,
    ...toolFieldSchemas,
    /** Embed requests: the inputs, one vector each, in order (the sampling fields are then fixed, see below). */
    inputs: z.array(embedInput).min(1).max(embedLimits.maxInputs).optional(),
    /** Embed requests: the vector length asked for (only the model's own is served). */
    dimensions: z.number().int().min(1).max(embedLimits.maxDimensions).optional(),
  })
  .strict()
  .refine((request) => (request.kind === "chat") === (request.messages !== undefined), {
    message: "chat requests carry messages, text requests do not",
  })
  .refine((request) => (request.kind === "text") === (request.prompt !== undefined), {
    message: "text requests carry a prompt, chat requests do not",
  })
  .refine((request) => request.tools === undefined || request.kind === "chat", {
    message: "only chat requests carry tools",
  })
  .refine((request) => (request.kind === "embed") === (request.inputs !== undefined), {
    message: "embed requests carry inputs, other requests do not",
  })
  .refine((request) => request.kind === "embed" || request.dimensions === undefined, {
    message: "only embed requests carry dimensions",
  })
  .refine(
    (request) =>
      request.kind !== "embed" ||
      (request.temperature === 0 &&
        request.top_p === 1 &&
        request.top_k === 0 &&
        request.seed === 0 &&
        request.stop.length === 0 &&
        request.max_tokens === undefined &&
        request.prefix_tokens === undefined),
    {
      message:
        "embed requests carry temperature 0, top_p 1, top_k 0, seed 0, no stop, no max_tokens or prefix",
    },
  )
  .refine(
    (request) =>
      (request.inputs?.reduce((total, input) => total + (typeof input === "string" ? input.length : 0), 0) ??
        0) <= streamLimits.maxPromptCharacters,
    { message: `the inputs are longer than ${streamLimits.maxPromptCharacters} characters` },
  )
  .refine(
    (request) =>
      request.tools !== undefined ||
      (request.tool_choice === undefined && request.parallel_tool_calls === undefined),
    { message: "tool_choice and parallel_tool_calls need tools" },
  )
  .refine(
    (request) =>
      typeof request.tool_choice !== "object" ||
      (request.tools ?? []).some(
        (tool) =>
          tool.function.name === (request.tool_choice as { function: { name: string } }).function.name,
      ),
    { message: "tool_choice names a function that is not among the tools" },
  )
  .refine(
    (request) =>
      new Set(request.tools?.map((tool) => tool.function.name)).size === (request.tools?.length ?? 0),
    { message: "two tools have the same name" },
  )
  .refine((request) => promptCharacters(request) <= streamLimits.maxPromptCharacters, {
    message: `the prompt is longer than ${streamLimits.maxPromptCharacters} characters`,
  });

/** The request a provider generates for (see {@link inferenceRequestSchema}). */
export type InferenceRequest = z.infer<typeof inferenceRequestSchema>;

/** Builds the wire request of an API request: what gateways send and what receipts' requestHash hashes. */
export function buildInferenceRequest(parameters: {
  modelHash: string;
  prompt:
    | { kind: "chat"; messages: readonly WireMessage[] }
    | { kind: "text"; prompt: string | readonly number[] };
  maxTokens?: number;
  temperature: number;
  topP: number;
  topK: number;
  seed: number;
  stop: readonly string[];
  constraints?: RequestConstraints;
}): InferenceRequest {
  const { prompt } = parameters;
  return {
    model_hash: parameters.modelHash,
    kind: prompt.kind,
    ...(prompt.kind === "chat"
      ? { messages: prompt.messages.map(wireMessageOf) }
      : { prompt: typeof prompt.prompt === "string" ? prompt.prompt : [...prompt.prompt] }),
    ...(parameters.maxTokens === undefined ? {} : { max_tokens: parameters.maxTokens }),
    temperature: parameters.temperature,
    top_p: parameters.topP,
    top_k: parameters.topK,
    seed: parameters.seed,
    stop: [...parameters.stop],
    ...wireConstraintsOf(parameters.constraints ?? {}),
  };
}

/** A chat message on the wire (see {@link wireMessageSchema}). */
export type WireMessage = z.infer<typeof wireMessageSchema>;

/** A message with only the fields the wire carries (tool fields only when present). */
function wireMessageOf(message: WireMessage): WireMessage {
  return {
    role: message.role,
    content: message.content,
    ...(message.tool_calls && message.tool_calls.length > 0
      ? {
          tool_calls: message.tool_calls.map((call) => ({
            id: call.id,
            type: call.type,
            function: { name: call.function.name, arguments: call.function.arguments },
          })),
        }
      : {}),
    ...(message.tool_call_id === undefined ? {} : { tool_call_id: message.tool_call_id }),
    ...(message.name === undefined ? {} : { name: message.name }),
  };
}

/** A tool of a request (see {@link toolSchema}). */
export type WireTool = z.infer<typeof toolSchema>;
/** `tool_choice` as the API takes it ("auto" included). */
export type RequestToolChoice = z.infer<typeof toolChoiceSchema> | "auto";

/** The constraints of a request as the API and the engine name them (absent or neutral: off). */
export type RequestConstraints = {
  minP?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  repeatPenalty?: number;
  /** Token id -> bias added to its logit. */
  logitBias?: Readonly<Record<string, number>>;
  /** Log-probabilities with this many alternatives per position (absent: none). */
  logprobs?: number;
  responseFormat?: ResponseFormat;
  /** Tools shown to the model (chat), and how it must use them. */
  tools?: readonly WireTool[];
  toolChoice?: RequestToolChoice;
  parallelToolCalls?: boolean;
};

/** The wire fields of constraints: neutral values are left out, so that they hash like no constraint. */
export function wireConstraintsOf(constraints: RequestConstraints): Partial<InferenceRequest> {
  const bias = Object.entries(constraints.logitBias ?? {}).filter(([, value]) => value !== 0);
  return {
    ...(constraints.minP ? { min_p: constraints.minP } : {}),
    ...(constraints.presencePenalty ? { presence_penalty: constraints.presencePenalty } : {}),
    ...(constraints.frequencyPenalty ? { frequency_penalty: constraints.frequencyPenalty } : {}),
    ...(constraints.repeatPenalty !== undefined && constraints.repeatPenalty !== 1
      ? { repeat_penalty: constraints.repeatPenalty }
      : {}),
    ...(bias.length > 0 ? { logit_bias: Object.fromEntries(bias) } : {}),
    ...(constraints.logprobs === undefined ? {} : { logprobs: constraints.logprobs }),
    ...(constraints.responseFormat ? { response_format: constraints.responseFormat } : {}),
    ...wireToolFieldsOf(constraints),
  };
}

/** The wire fields of tools: none without tools; "auto" and parallel calls (the defaults) left out. */
function wireToolFieldsOf(constraints: RequestConstraints): Partial<InferenceRequest> {
  if (!constraints.tools || constraints.tools.length === 0) return {};
  const choice = constraints.toolChoice;
  return {
    tools: constraints.tools.map((tool) => ({
      type: tool.type,
      function: {
        name: tool.function.name,
        ...(tool.function.description === undefined ? {} : { description: tool.function.description }),
        ...(tool.function.parameters === undefined ? {} : { parameters: tool.function.parameters }),
        ...(tool.function.strict === undefined ? {} : { strict: tool.function.strict }),
      },
    })),
    ...(choice === undefined || choice === "auto"
      ? {}
      : {
          tool_choice:
            typeof choice === "string"
              ? choice
              : { type: "function", function: { name: choice.function.name } },
        }),
    ...(constraints.parallelToolCalls === false ? { parallel_tool_calls: false } : {}),
  };
}

/** The constraints a wire request carries (the inverse of {@link wireConstraintsOf}). */
export function constraintsOfRequest(request: InferenceRequest): RequestConstraints {
  return {
    minP: request.min_p,
    presencePenalty: request.presence_penalty,
    frequencyPenalty: request.frequency_penalty,
    repeatPenalty: request.repeat_penalty,
    logitBias: request.logit_bias,
    logprobs: request.logprobs,
    responseFormat: request.response_format,
    tools: request.tools,
    toolChoice: request.tool_choice,
    parallelToolCalls: request.parallel_tool_calls,
  };
}

/** Builds the wire request of an embeddings request (sampling fields at their fixed values). */
export function buildEmbedRequest(parameters: {
  modelHash: string;
  inputs: readonly (string | readonly number[])[];
  dimensions?: number;
}): InferenceRequest {
  return {
    model_hash: parameters.modelHash,
    kind: "embed",
    inputs: parameters.inputs.map((input) => (typeof input === "string" ? input : [...input])),
    ...(parameters.dimensions === undefined ? {} : { dimensions: parameters.dimensions }),
    temperature: 0,
    top_p: 1,
    top_k: 0,
    seed: 0,
    stop: [],
  };
}

/** Gateway -> provider: the first frame of a stream. */
export const requestFrameSchema = z
  .object({
    v: version,
    type: z.literal("request"),
    id: bytes32,
    client: address,
    request: inferenceRequestSchema,
    /** The payment channel (client -> this provider) that pays for this request; required by paid providers. */
    payment: z.object({ channel_id: bytes32 }).strict().optional(),
  })
  .strict();

/** Gateway -> provider: stop generating (the client went away). */
export const cancelFrameSchema = z.object({ v: version, type: z.literal("cancel") }).strict();

/** Gateway -> provider: a cumulative payment voucher for a channel (EIP-712, see voucher.ts), at any point of a stream. */
export const voucherFrameSchema = z
  .object({
    v: version,
    type: z.literal("voucher"),
    channel_id: bytes32,
    cumulative_amount: amount,
    signature,
  })
  .strict();

/** Provider -> gateway: a voucher was checked and stored durably; the channel is paid up to this amount. */
export const paidFrameSchema = z
  .object({ v: version, type: z.literal("paid"), channel_id: bytes32, cumulative_amount: amount })
  .strict();

/** Provider -> gateway: tokens and the text they completed. */
export const chunkFrameSchema = z
  .object({
    v: version,
    type: z.literal("chunk"),
    tokens: z.array(tokenId).max(64),
    // Engines stream decoded UTF-8, never a lone surrogate; one would hash like U+FFFD (hashStreamedText).
    text: z.string().refine((text) => !/\p{Cs}/u.test(text), { message: "must be well-formed Unicode" }),
  })
  .strict();

/** The most log-probability entries in one `logprobs` frame. */
export const maxLogprobsPerFrame = 64;

const logprobEntrySchema = z
  .object({
    token: tokenId,
    /** The token's own bytes (a piece of a character, for some tokens). */
    bytes: z.array(z.number().int().min(0).max(255)).max(256),
    logprob: z.number().min(-9999).max(0),
  })
  .strict();

/** One output token's log-probability and the most likely alternatives at its position. */
export const outputLogprobSchema = logprobEntrySchema
  .extend({ top: z.array(logprobEntrySchema).max(maxTopLogprobs) })
  .strict();

/**
 * Provider -> gateway, after the last chunk and before the end frame of a request that asked for `logprobs`: the
 * log-probabilities of the output tokens in order, continuation prefix first (so that the last segment's cover the
 * whole answer), a final end-of-generation token left out.
 */
export const logprobsFrameSchema = z
  .object({
    v: version,
    type: z.literal("logprobs"),
    entries: z.array(outputLogprobSchema).min(1).max(maxLogprobsPerFrame),
  })
  .strict();

/**
 * Provider -> gateway (embed requests): the vector of input `index`, as base64 of its float32 values little-endian
 * (OpenAI's base64 encoding). One frame per input, in order, before the end frame.
 */
export const embeddingFrameSchema = z
  .object({
    v: version,
    type: z.literal("embedding"),
    index: z
      .number()
      .int()
      .min(0)
      .max(embedLimits.maxInputs - 1),
    data: z
      .string()
      .max(Math.ceil((embedLimits.maxDimensions * 4) / 3) * 4)
      .regex(/^[A-Za-z0-9+/]*={0,2}$/, "must be base64"),
  })
  .strict();

/** Provider -> gateway: the last frame of a successful answer, with its signed receipt. */
export const endFrameSchema = z
  .object({
    v: version,
    type: z.literal("end"),
    finish_reason: z.enum(["stop", "length"]),
    prompt_token_ids: z.array(tokenId).max(streamLimits.maxPromptTokens),
    /**
     * Generation: keccak256 of the canonical JSON of the answer's fingerprints, so that the gateway can check that the
     * receipt's commitment binds the text it relayed (textBoundCommitment). Embeddings leave it out.
     */
    fingerprints_hash: bytes32.optional(),
    receipt: signedReceiptSchema,
  })
  .strict();

/**
 * Any peer -> the asker: the request failed; `retry_after_ms` when it is worth trying again later. `code` is a
 * {@link WireErrorCode} (wireErrors.ts); a code this version does not know is read as the peer's failure.
 */
export const errorFrameSchema = z
  .object({
    v: version,
    type: z.literal("error"),
    code: z.string().min(1).max(64),
    message: z.string().max(2000),
    retry_after_ms: z.number().int().min(0).optional(),
  })
  .strict();

/** Any frame a provider sends. */
export const providerFrameSchema = z.discriminatedUnion("type", [
  chunkFrameSchema,
  embeddingFrameSchema,
  endFrameSchema,
  errorFrameSchema,
  paidFrameSchema,
  logprobsFrameSchema,
]);
/** Any frame a gateway sends. */
export const gatewayFrameSchema = z.discriminatedUnion("type", [
  requestFrameSchema,
  cancelFrameSchema,
  voucherFrameSchema,
]);

export type RequestFrame = z.infer<typeof requestFrameSchema>;
export type CancelFrame = z.infer<typeof cancelFrameSchema>;
export type ChunkFrame = z.infer<typeof chunkFrameSchema>;
export type EndFrame = z.infer<typeof endFrameSchema>;
export type EmbeddingFrame = z.infer<typeof embeddingFrameSchema>;
export type ErrorFrame = z.infer<typeof errorFrameSchema>;
export type VoucherFrame = z.infer<typeof voucherFrameSchema>;
export type PaidFrame = z.infer<typeof paidFrameSchema>;
export type LogprobsFrame = z.infer<typeof logprobsFrameSchema>;
export type OutputLogprobEntry = z.infer<typeof outputLogprobSchema>;
export type ProviderFrame = z.infer<typeof providerFrameSchema>;
export type GatewayFrame = z.infer<typeof gatewayFrameSchema>;

/** Builds an error frame: the message is cut to the 2,000 characters the schema allows. */
export function buildErrorFrame(parameters: {
  code: WireErrorCode;
  message: string;
  retryAfterMs?: number;
}): ErrorFrame {
  return {
    v: wireVersion,
    type: "error",
    code: parameters.code,
    message: parameters.message.slice(0, 2000),
    ...(parameters.retryAfterMs === undefined
      ? {}
      : { retry_after_ms: Math.max(0, Math.round(parameters.retryAfterMs)) }),
  };
}

/** Validates a decoded frame against a schema; throws {@link ProtocolError} naming the first bad field. */
export function parseFrame<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const where = issue && issue.path.length > 0 ? issue.path.map(String).join(".") : "frame";
  throw new ProtocolError(`malformed frame: ${where} ${issue?.message ?? "is invalid"}`, {
    code: "malformed_frame",
    hint: `speak ${"/mycel/infer/1.0.0"} as docs/PROTOCOL.md specifies`,
  });
}
