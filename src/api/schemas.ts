/** Request schemas of the OpenAI-compatible API (zod), and their conversion to engine parameters. */
import { z } from "zod";
import { InvalidInputError } from "../errors/index.ts";
import {
  maxLogitBiasEntries,
  maxTools,
  maxTopLogprobs,
  type RequestConstraints,
  responseFormatSchema,
  toolChoiceSchema,
  toolSchema,
} from "../protocol/index.ts";

/** The most choices (`n`) one request may ask for. */
export const maxChoices = 4;

const textPart = z.object({ type: z.literal("text"), text: z.string() });

const toolCallSchema = z.object({
  id: z.string().min(1).max(128),
  type: z.literal("function"),
  function: z.object({ name: z.string().min(1).max(64), arguments: z.string() }),
});

const messageSchema = z.object({
  role: z.enum(["system", "developer", "user", "assistant", "tool"]),
  content: z.union([z.string(), z.array(textPart), z.null()]).optional(),
  name: z.string().optional(),
  /** An assistant turn's tool calls (its content may then be null). */
  tool_calls: z.array(toolCallSchema).max(maxTools).nullable().optional(),
  /** A tool turn: the id of the call it answers. */
  tool_call_id: z.string().min(1).max(128).optional(),
  // An assistant turn's refusal (the SDK echoes answers back whole): nothing to show the model.
  refusal: z.string().nullable().optional(),
});

const stopSchema = z
  .union([z.string().min(1), z.array(z.string().min(1)).max(4)])
  .nullable()
  .optional();

const penalty = z.number().min(-2).max(2).nullable().optional();

const samplingFields = {
  model: z.string().min(1),
  stream: z.boolean().nullable().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullable().optional(),
  max_tokens: z.number().int().min(1).nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().gt(0).max(1).nullable().optional(),
  top_k: z.number().int().min(0).nullable().optional(),
  seed: z.number().int().min(0).max(0xffffffff).nullable().optional(),
  stop: stopSchema,
  /** Choices, each a generation of its own (one after the other), at most {@link maxChoices}. */
  n: z.number().int().min(1).max(maxChoices).nullable().optional(),
  presence_penalty: penalty,
  frequency_penalty: penalty,
  /** llama.cpp's extensions. */
  min_p: z.number().min(0).max(1).nullable().optional(),
  repeat_penalty: z.number().gt(0).max(10).nullable().optional(),
  logit_bias: z
    .record(
      z.string().regex(/^(0|[1-9][0-9]{0,9})$/, "keys must be token ids"),
      z.number().min(-100).max(100),
    )
    .refine((bias) => Object.keys(bias).length <= maxLogitBiasEntries, {
      message: `at most ${maxLogitBiasEntries} entries`,
    })
    .nullable()
    .optional(),
  // Safe to ignore: they change nothing in the answer (docs/API.md "Request fields").
  user: z.string().optional(),
  store: z.boolean().nullable().optional(),
  metadata: z.record(z.string(), z.string()).nullable().optional(),
  /** Mycel's own request options. */
  mycel: z
    .object({
      /** Return the answer's evidence (tokens and fingerprints) under `mycel.evidence`, for `mycel audit`. */
      include_evidence: z.boolean().optional(),
      /** Gateways: send this answer to a validator for audit (besides the random sample); `mycel.audit` says to whom. */
      audit: z.boolean().optional(),
      /**
       * Gateways: the most this request pays per 1M tokens, input or output, in the token's smallest unit (a decimal
       * string, or a safe integer); it can only lower the gateway's --max-price.
       */
      max_price: z
        .union([
          z.string().regex(/^(0|[1-9][0-9]{0,77})$/, { message: "must be a decimal integer string" }),
          z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
        ])
        .nullable()
        .optional(),
    })
    .strict()
    .nullable()
    .optional(),
};

/**
 * POST /v1/chat/completions body. A field it does not know is refused (400 naming it), never silently ignored:
 * a client that asks for something Mycel does not do learns so.
 */
export const chatCompletionRequestSchema = z.strictObject({
  ...samplingFields,
  messages: z.array(messageSchema).min(1),
  max_completion_tokens: z.number().int().min(1).nullable().optional(),
  logprobs: z.boolean().nullable().optional(),
  response_format: z
    .union([z.object({ type: z.literal("text") }).strict(), responseFormatSchema], {
      message:
        'response_format is {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}',
    })
    .nullable()
    .optional(),
  tools: z.array(toolSchema).max(maxTools).nullable().optional(),
  top_logprobs: z.number().int().min(0).max(maxTopLogprobs).nullable().optional(),
  tool_choice: z
    .union([z.literal("auto"), toolChoiceSchema], {
      message: 'tool_choice is "none", "auto", "required" or {"type": "function", "function": {"name": ...}}',
    })
    .nullable()
    .optional(),
  parallel_tool_calls: z.boolean().nullable().optional(),
});

/** POST /v1/completions body (a field it does not know is refused, as for chat). */
export const completionRequestSchema = z.strictObject({
  ...samplingFields,
  prompt: z.union([z.string(), z.array(z.string()).length(1), z.array(z.number().int().min(0)).min(1)]),
  echo: z
    .boolean()
    .refine((value) => value === false, { message: "echo is not supported yet" })
    .nullable()
    .optional(),
  logprobs: z.number().int().min(0).max(maxTopLogprobs).nullable().optional(),
  best_of: z
    .number()
    .int()
    .refine((value) => value === 1, { message: "only best_of=1 is supported" })
    .nullable()
    .optional(),
  suffix: z
    .string()
    .refine((value) => value === "", { message: "suffix is not supported yet; leave it out" })
    .nullable()
    .optional(),
});

export type ChatCompletionRequest = z.infer<typeof chatCompletionRequestSchema>;
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

function valueAt(body: unknown, path: readonly PropertyKey[]): unknown {
  let current: unknown = body;
  for (const key of path) {
    if (current === null || typeof current !== "object") return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

function describeIssue(
  issue: z.core.$ZodIssue,
  body: unknown,
): { message: string; param: string | null; code: string } {
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0] ?? "";
    const param = [...issue.path.map(String), key].join(".");
    return {
      message:
        `unsupported parameter '${param}': Mycel does not implement it, so it is refused rather than ignored; ` +
        "remove it (docs/API.md lists the supported fields)",
      param,
      code: "unsupported_parameter",
    };
  }
  const param = issue.path.length > 0 ? issue.path.map(String).join(".") : null;
  const where = param ? `'${param}'` : "the request body";
  if (issue.code === "invalid_type") {
    if (valueAt(body, issue.path) === undefined) {
      return { message: `missing required parameter ${where}`, param, code: "missing_required_parameter" };
    }
    return { message: `invalid type for ${where}: ${issue.message}`, param, code: "invalid_type" };
  }
  return { message: `invalid value for ${where}: ${issue.message}`, param, code: "invalid_value" };
}

/** Validates a parsed JSON body; throws {@link InvalidInputError} naming the first bad field. */
export function parseRequest<T>(schema: z.ZodType<T>, body: unknown): T {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new InvalidInputError("the request body must be a JSON object", { code: "invalid_type" });
  }
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (!issue) throw new InvalidInputError("invalid request", { code: "invalid_value" });
  const described = describeIssue(issue, body);
  throw new InvalidInputError(described.message, { code: described.code, param: described.param });
}

/** Flattens OpenAI message content (string, text parts or null) to text. */
export function messageText(content: ChatCompletionRequest["messages"][number]["content"]): string {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  return content.map((part) => part.text).join("");
}

/** The sampling constraints of a chat or completion request (neutral values left out). */
export function constraintsOf(
  body: Pick<
    ChatCompletionRequest,
    "min_p" | "presence_penalty" | "frequency_penalty" | "repeat_penalty" | "logit_bias"
  >,
): RequestConstraints {
  return {
    ...(body.min_p ? { minP: body.min_p } : {}),
    ...(body.presence_penalty ? { presencePenalty: body.presence_penalty } : {}),
    ...(body.frequency_penalty ? { frequencyPenalty: body.frequency_penalty } : {}),
    ...(body.repeat_penalty != null && body.repeat_penalty !== 1
      ? { repeatPenalty: body.repeat_penalty }
      : {}),
    ...(body.logit_bias && Object.keys(body.logit_bias).length > 0 ? { logitBias: body.logit_bias } : {}),
  };
}

/** The stop sequences of a request as a list. */
export function stopList(stop: string | string[] | null | undefined): string[] {
  if (stop === null || stop === undefined) return [];
  return typeof stop === "string" ? [stop] : stop;
}
