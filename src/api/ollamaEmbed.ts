/**
 * Ollama's embeddings routes: POST /api/embed (`input`: a string or strings, `{embeddings: [[...]]}`) and its
 * older POST /api/embeddings (`prompt`, `{embedding: [...]}`), over the backend's `embed` as /v1/embeddings (so
 * through a gateway too, with its receipts): the same vectors, limits, prices and API-key accounting.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { InvalidInputError } from "../errors/index.ts";
import type { ApiModelInfo, BackendEmbedResult } from "./backend.ts";
import type { CompletionContext } from "./completions.ts";
import { runEmbeddings } from "./embeddings.ts";
import { readJsonBody, sendJson } from "./http.ts";
import {
  checkOllamaEmbedFields,
  ollamaEmbeddingsRequestSchema,
  ollamaEmbedRequestSchema,
} from "./ollamaFields.ts";
import { findOllamaModel } from "./ollamaModels.ts";
import { parseRequest } from "./schemas.ts";

const nanoseconds = (ms: number) => Math.max(0, Math.round(ms * 1e6));

/** POST /api/embed: one unit-length vector per input, in order; no input answers at once (Ollama's "load"). */
export async function handleOllamaEmbed(
  context: CompletionContext,
  request: IncomingMessage,
  response: ServerResponse,
) {
  const receivedAt = performance.now();
  const body = parseRequest(ollamaEmbedRequestSchema, await readJsonBody(request, context.maxBodyBytes));
  checkOllamaEmbedFields(body);
  const model = await findOllamaModel(context.backend, body.model);
  const input = body.input ?? [];
  const inputs = typeof input === "string" ? (input === "" ? [] : [input]) : input;
  const answer = (result: BackendEmbedResult | undefined) => ({
    model: model.name,
    embeddings: result?.vectors ?? [],
    total_duration: nanoseconds(performance.now() - receivedAt),
    load_duration: 0,
    prompt_eval_count: result?.usage.promptTokens ?? 0,
    ...(result ? { mycel: result.mycel } : {}),
  });
  if (inputs.length === 0) return sendJson(response, 200, answer(undefined));
  const result = await embedForOllama({
    context,
    response,
    model,
    inputs,
    param: "input",
    truncate: body.truncate ?? true,
    dimensions: body.dimensions ?? undefined,
    maxPrice: body.mycel?.max_price ?? undefined,
  });
  if (result) sendJson(response, 200, answer(result));
}

/** POST /api/embeddings (Ollama's older route): the vector of one `prompt`; an empty prompt answers `[]`. */
export async function handleOllamaEmbeddings(
  context: CompletionContext,
  request: IncomingMessage,
  response: ServerResponse,
) {
  const body = parseRequest(ollamaEmbeddingsRequestSchema, await readJsonBody(request, context.maxBodyBytes));
  checkOllamaEmbedFields(body);
  const model = await findOllamaModel(context.backend, body.model);
  if (!body.prompt) return sendJson(response, 200, { embedding: [] });
  const result = await embedForOllama({
    context,
    response,
    model,
    inputs: [body.prompt],
    param: "prompt",
    // Ollama's older route has no `truncate`: it refuses a prompt that does not fit, as Mycel does.
    truncate: false,
    maxPrice: body.mycel?.max_price ?? undefined,
  });
  if (result) sendJson(response, 200, { embedding: result.vectors[0] ?? [], mycel: result.mycel });
}

/** One embeddings request of an Ollama route. */
type OllamaEmbedding = {
  context: CompletionContext;
  response: ServerResponse;
  model: ApiModelInfo;
  inputs: string[];
  /** The request's field that holds the inputs, for errors. */
  param: "input" | "prompt";
  /** What the request said about truncation (Ollama's default true): only the hint of a refusal depends on it. */
  truncate: boolean;
  dimensions?: number;
  maxPrice?: string | number;
};

/**
 * Embeds the inputs as /v1/embeddings does ({@link runEmbeddings}); undefined when the client went away. An input
 * that does not fit is a 400 naming it: Mycel never truncates.
 */
async function embedForOllama(embedding: OllamaEmbedding): Promise<BackendEmbedResult | undefined> {
  try {
    return await runEmbeddings({
      context: embedding.context,
      response: embedding.response,
      model: embedding.model,
      inputs: embedding.inputs,
      dimensions: embedding.dimensions,
      maxPricePerMillion: embedding.maxPrice === undefined ? undefined : BigInt(embedding.maxPrice),
      api: "ollama",
      route: "/api/embed",
    });
  } catch (error) {
    throw refusalWithoutTruncation(error, embedding);
  }
}

/**
 * An input too long for the model, as the Ollama routes say it: named by their field, with a hint that Mycel does
 * not truncate (where Ollama, by default, would cut the input and answer). Other errors pass unchanged.
 */
function refusalWithoutTruncation(error: unknown, embedding: Pick<OllamaEmbedding, "param" | "truncate">) {
  if (!(error instanceof InvalidInputError) || error.code !== "context_length_exceeded") return error;
  const prompt = embedding.param === "prompt";
  return new InvalidInputError(
    prompt ? error.shortMessage.replace(/^input 0\b/, "the prompt") : error.shortMessage,
    {
      code: error.code,
      param: prompt ? "prompt" : (error.param ?? "input"),
      details: error.details,
      hint: embedding.truncate
        ? "shorten or split the input; Mycel never truncates one, where Ollama's truncate: true (its default) would cut it to fit"
        : "shorten or split the input",
      cause: error,
    },
  );
}
