/**
 * POST /v1/embeddings in OpenAI's shape: the request checked (a field Mycel does not implement is refused, naming
 * it), the vectors made by the backend (this engine, or the network through a gateway), and written as float
 * arrays or as base64 of little-endian float32, as OpenAI writes them.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { z } from "zod";
import { embeddingLimits } from "../engine/index.ts";
import { InvalidInputError } from "../errors/index.ts";
import type { ApiModelInfo, BackendEmbedResult } from "./backend.ts";
import type { CompletionContext } from "./completions.ts";
import { readJsonBody, sendJson } from "./http.ts";
import { parseRequest } from "./schemas.ts";

const tokenIds = z
  .array(z.number().int().min(0).max(0xffffffff))
  .min(1)
  .max(embeddingLimits.maxTokensPerInput);
const inputsMessage = `input must be a non-empty string, an array of at most ${embeddingLimits.maxInputs} non-empty strings, an array of token ids, or an array of at most ${embeddingLimits.maxInputs} arrays of token ids (each at most ${embeddingLimits.maxTokensPerInput} tokens)`;

/** POST /v1/embeddings body (a field it does not know is refused, as for chat). */
export const embeddingRequestSchema = z.strictObject({
  model: z.string().min(1),
  input: z.union(
    [
      z.string().min(1),
      z.array(z.string().min(1)).min(1).max(embeddingLimits.maxInputs),
      tokenIds,
      z.array(tokenIds).min(1).max(embeddingLimits.maxInputs),
    ],
    { message: inputsMessage },
  ),
  encoding_format: z.enum(["float", "base64"]).optional(),
  /** Only the model's own vector length is served (checked where the model is). */
  dimensions: z.number().int().min(1).optional(),
  // Safe to ignore: it changes nothing in the answer (docs/API.md "Request fields").
  user: z.string().optional(),
  /** Mycel's own request options. */
  mycel: z
    .strictObject({
      /** Gateways: the most this request pays per 1M input tokens (as for completions). */
      max_price: z
        .union([
          z.string().regex(/^(0|[1-9][0-9]{0,77})$/, { message: "must be a decimal integer string" }),
          z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
        ])
        .nullable()
        .optional(),
    })
    .nullable()
    .optional(),
});

/** A POST /v1/embeddings body. */
export type EmbeddingRequest = z.infer<typeof embeddingRequestSchema>;

/** The request's inputs as a list: each a text or token ids. */
export function embeddingInputsOf(input: EmbeddingRequest["input"]): (string | number[])[] {
  if (typeof input === "string") return [input];
  if (input.every((item) => typeof item === "number")) return [input as number[]];
  return input as (string | number[])[];
}

/** A vector as OpenAI's base64: its float32 values, little-endian, base64-encoded. */
export function encodeVectorBase64(vector: readonly number[]): string {
  const bytes = Buffer.alloc(vector.length * 4);
  vector.forEach((value, index) => {
    bytes.writeFloatLE(value, index * 4);
  });
  return bytes.toString("base64");
}

/** One embeddings request of an API route: the inputs, the model, and what the request said. */
export type RunEmbeddingsParameters = {
  context: CompletionContext;
  response: ServerResponse;
  model: ApiModelInfo;
  inputs: (string | number[])[];
  dimensions?: number;
  maxPricePerMillion?: bigint;
  /** Which API asked (logs), and its route (the hint when the server serves no embeddings). */
  api: "openai" | "ollama";
  route: string;
};

/**
 * Embeds the inputs through the backend (this engine, or the network), counts the answer against the request's API
 * key, logs it, and returns it (undefined when the client went away meanwhile). Shared by /v1/embeddings and
 * Ollama's routes, so that they give the same vectors, limits, prices and accounting.
 */
export async function runEmbeddings(
  parameters: RunEmbeddingsParameters,
): Promise<BackendEmbedResult | undefined> {
  const { context, response, model } = parameters;
  const embed = context.backend.embed;
  if (!embed)
    throw new InvalidInputError("this server does not serve embeddings", {
      code: "unsupported_endpoint",
      hint: `ask \`mycel serve\` or a gateway for ${parameters.route}`,
    });
  const controller = new AbortController();
  const onClose = () => {
    if (!response.writableFinished) controller.abort(new Error("client disconnected"));
  };
  response.on("close", onClose);
  let result: BackendEmbedResult;
  try {
    result = await embed.call(context.backend, {
      model,
      inputs: parameters.inputs,
      ...(parameters.dimensions === undefined ? {} : { dimensions: parameters.dimensions }),
      ...(parameters.maxPricePerMillion === undefined
        ? {}
        : { maxPricePerMillion: parameters.maxPricePerMillion }),
      signal: controller.signal,
    });
  } finally {
    response.off("close", onClose);
  }
  if (context.access && context.caller) {
    try {
      context.access.recordAnswer({ caller: context.caller, result });
    } catch (error) {
      // A failure to count is logged; the answer still goes out.
      context.logger.error("embeddings could not be counted against their API key", {
        key: context.caller.keyId,
        error: error instanceof Error ? error.message : String(error),
      });
    }
  }
  context.logger.info("embeddings", {
    api: parameters.api,
    model: model.name,
    inputs: result.vectors.length,
    promptTokens: result.usage.promptTokens,
    queuedMs: result.timings && Math.round(result.timings.queuedMs),
    ms: result.timings && Math.round(result.timings.totalMs),
  });
  return controller.signal.aborted ? undefined : result;
}

/** POST /v1/embeddings. */
export async function handleEmbeddings(
  context: CompletionContext,
  request: IncomingMessage,
  response: ServerResponse,
) {
  const body = parseRequest(embeddingRequestSchema, await readJsonBody(request, context.maxBodyBytes));
  if (!context.backend.embed)
    throw new InvalidInputError("this server does not serve embeddings", {
      code: "unsupported_endpoint",
      hint: "ask `mycel serve` or a gateway for /v1/embeddings",
    });
  const model = await context.backend.findModel(body.model);
  const result = await runEmbeddings({
    context,
    response,
    model,
    inputs: embeddingInputsOf(body.input),
    dimensions: body.dimensions,
    maxPricePerMillion: body.mycel?.max_price == null ? undefined : BigInt(body.mycel.max_price),
    api: "openai",
    route: "/v1/embeddings",
  });
  if (!result) return;
  const base64 = body.encoding_format === "base64";
  sendJson(response, 200, {
    object: "list",
    data: result.vectors.map((vector, index) => ({
      object: "embedding",
      index,
      embedding: base64 ? encodeVectorBase64(vector) : vector,
    })),
    model: model.name,
    usage: { prompt_tokens: result.usage.promptTokens, total_tokens: result.usage.totalTokens },
    mycel: result.mycel,
  });
}
