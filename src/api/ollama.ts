/**
 * Ollama's API on the same port as the OpenAI one: /api/version, /api/tags, /api/ps, /api/show, /api/chat,
 * /api/generate, /api/embed and /api/embeddings (ollamaEmbed.ts), with Ollama's field names, its NDJSON streaming and its error shape `{"error": "..."}`, over the
 * same backend (so through a gateway too). What each field does is in ollamaFields.ts and docs/API.md.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  createDeltaBatcher,
  type OutputLogprob,
  streamBatchIntervalMs,
  type ToolCallFormat,
} from "../engine/index.ts";
import { InvalidInputError, ModelNotFoundError } from "../errors/index.ts";
import type { ModelCapability } from "../protocol/index.ts";
import type { ApiModelInfo, ApiPrompt, ApiSampling, BackendGenerateResult } from "./backend.ts";
import type { CompletionContext } from "./completions.ts";
import { readJsonBody, sendJson } from "./http.ts";
import { handleOllamaEmbed, handleOllamaEmbeddings } from "./ollamaEmbed.ts";
import {
  checkOllamaFields,
  type OllamaChatRequest,
  type OllamaGenerateRequest,
  ollamaChatRequestSchema,
  ollamaGenerateRequestSchema,
  ollamaShowRequestSchema,
  samplingOfOllama,
} from "./ollamaFields.ts";
import {
  findOllamaModel,
  ollamaApiVersion,
  ollamaRunningOf,
  ollamaShowOf,
  ollamaTagOf,
} from "./ollamaModels.ts";
import {
  chatMessagesOfOllama,
  createOllamaToolStream,
  type OllamaToolCall,
  ollamaToolAnswerOf,
} from "./ollamaTools.ts";
import { HttpError, type OpenAiErrorResponse, toOpenAiError } from "./openaiErrors.ts";
import { parseRequest } from "./schemas.ts";
import { toolRequestOf } from "./toolAnswer.ts";

/** What an Ollama route gets. */
export type OllamaRouteParameters = {
  context: CompletionContext;
  method: string;
  path: string;
  request: IncomingMessage;
  response: ServerResponse;
};

type OllamaRoute = { methods: string[]; handle: (parameters: OllamaRouteParameters) => Promise<void> | void };

/** The Ollama routes, by path. */
const ollamaRoutes: Record<string, OllamaRoute> = {
  "/api/version": {
    methods: ["GET", "HEAD"],
    handle: ({ response }) => sendJson(response, 200, { version: ollamaApiVersion }),
  },
  "/api/tags": {
    methods: ["GET", "HEAD"],
    handle: ({ context, response }) =>
      sendJson(response, 200, { models: context.backend.listModels().map(ollamaTagOf) }),
  },
  "/api/ps": {
    methods: ["GET", "HEAD"],
    handle: ({ context, response }) =>
      sendJson(response, 200, { models: context.backend.listModels().map(ollamaRunningOf) }),
  },
  "/api/show": {
    methods: ["POST"],
    async handle({ context, request, response }) {
      const body = parseRequest(ollamaShowRequestSchema, await readJsonBody(request, context.maxBodyBytes));
      const name = body.model ?? body.name ?? "";
      sendJson(response, 200, ollamaShowOf(await findOllamaModel(context.backend, name)));
    },
  },
  "/api/chat": { methods: ["POST"], handle: handleOllamaChat },
  "/api/generate": { methods: ["POST"], handle: handleOllamaGenerate },
  "/api/embed": {
    methods: ["POST"],
    handle: ({ context, request, response }) => handleOllamaEmbed(context, request, response),
  },
  "/api/embeddings": {
    methods: ["POST"],
    handle: ({ context, request, response }) => handleOllamaEmbeddings(context, request, response),
  },
};

/** The Ollama paths that spend (generate text or embeddings): an API key's rate and budget apply to them. */
export const ollamaSpendingPaths: ReadonlySet<string> = new Set([
  "/api/chat",
  "/api/generate",
  "/api/embed",
  "/api/embeddings",
]);

/** Serves a path under /api/ (404 in Ollama's shape for one it does not know). */
export async function handleOllamaRoute(parameters: OllamaRouteParameters): Promise<void> {
  const { method, path } = parameters;
  const route = ollamaRoutes[path];
  if (!route)
    throw new HttpError(404, `no route ${method} ${path}`, {
      code: "not_found",
      hint: `Mycel's Ollama API serves ${Object.keys(ollamaRoutes).join(", ")}`,
    });
  if (!route.methods.includes(method))
    throw new HttpError(405, `${method} is not allowed on ${path}; use ${route.methods.join(" or ")}`, {
      code: "method_not_allowed",
    });
  await route.handle(parameters);
}

/**
 * An error as Ollama answers it: `{"error": "<message>"}` with the status Mycel gives it (an unknown model is
 * Ollama's 404 "model '<name>' not found", followed by what is served).
 */
export function toOllamaError(error: unknown): OllamaErrorResponse {
  const { status, headers, body } = toOpenAiError(error);
  if (error instanceof ModelNotFoundError)
    return {
      status,
      headers,
      body: { error: `model '${error.model}' not found${error.hint ? `: ${error.hint}` : ""}` },
    };
  return { status, headers, body: { error: body.error.message } };
}

/** An HTTP error response in Ollama's shape. */
export type OllamaErrorResponse = Omit<OpenAiErrorResponse, "body"> & { body: { error: string } };

async function handleOllamaChat({ context, request, response }: OllamaRouteParameters) {
  const receivedAt = performance.now();
  const body = parseRequest(ollamaChatRequestSchema, await readJsonBody(request, context.maxBodyBytes));
  checkOllamaFields(body);
  const model = await findOllamaModel(context.backend, body.model);
  const messages = chatMessagesOfOllama(body.messages ?? []);
  // No messages: Ollama loads the model and says so; here every served model is loaded already.
  if (messages.length === 0)
    return sendLoaded(response, model, { message: { role: "assistant", content: "" } });
  // Tools are always "auto" (Ollama has no tool_choice); a model without a tool-call format is a 400.
  const tools = toolRequestOf({ body: { tools: body.tools }, model });
  await runOllamaGeneration(context, {
    kind: "chat",
    request,
    response,
    body,
    model,
    prompt: { kind: "chat", messages },
    receivedAt,
    constraints: tools.constraints,
    ...(tools.format ? { toolFormat: tools.format } : {}),
  });
}

async function handleOllamaGenerate({ context, request, response }: OllamaRouteParameters) {
  const receivedAt = performance.now();
  const body = parseRequest(ollamaGenerateRequestSchema, await readJsonBody(request, context.maxBodyBytes));
  checkOllamaFields(body);
  const model = await findOllamaModel(context.backend, body.model);
  const prompt = body.prompt ?? "";
  if (prompt === "") return sendLoaded(response, model, { response: "" });
  if (body.raw === true && body.system)
    throw new InvalidInputError(
      "'system' needs the chat template, and raw: true skips it; put the system text into your prompt",
      { code: "invalid_value", param: "system" },
    );
  // raw: the prompt is the caller's own template, completed as text; otherwise a user turn in the chat template.
  const apiPrompt: ApiPrompt =
    body.raw === true
      ? { kind: "text", prompt }
      : {
          kind: "chat",
          messages: [
            ...(body.system ? [{ role: "system", content: body.system }] : []),
            { role: "user", content: prompt },
          ],
        };
  await runOllamaGeneration(context, {
    kind: "generate",
    request,
    response,
    body,
    model,
    prompt: apiPrompt,
    receivedAt,
  });
}

/** Ollama's answer to a request without a prompt: the model is loaded (done_reason "load"). */
function sendLoaded(response: ServerResponse, model: ApiModelInfo, content: Record<string, unknown>) {
  sendJson(response, 200, {
    model: model.name,
    created_at: new Date().toISOString(),
    ...content,
    done: true,
    done_reason: "load",
  });
}

/** One chat or generate request to run and write. */
type OllamaGeneration = {
  kind: "chat" | "generate";
  request: IncomingMessage;
  response: ServerResponse;
  body: OllamaChatRequest | OllamaGenerateRequest;
  model: ApiModelInfo;
  prompt: ApiPrompt;
  /** performance.now() when the request came in: total_duration counts from it. */
  receivedAt: number;
  /** The tools shown to the model (chat). */
  constraints?: Pick<ApiSampling, "tools" | "toolChoice" | "parallelToolCalls">;
  /** Tools in play: the answer's tool calls are parsed from this format (absent: the answer is text). */
  toolFormat?: ToolCallFormat;
};

/** The content fields of one object: `message` for chat (with its tool calls, if any), `response` for generate. */
function contentOf(kind: OllamaGeneration["kind"], text: string, toolCalls?: readonly OllamaToolCall[]) {
  if (kind !== "chat") return { response: text };
  return {
    message: {
      role: "assistant",
      content: text,
      ...(toolCalls && toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
    },
  };
}

/** The capabilities a provider must announce to serve this generation: grammars for `format`, tools for tools. */
function requiredCapabilitiesOf(
  generation: OllamaGeneration,
  sampling: ApiSampling,
): { requiredCapabilities?: ModelCapability[] } {
  const required: ModelCapability[] = [];
  if (generation.toolFormat) required.push("tools");
  if (sampling.responseFormat) required.push("grammar");
  return required.length > 0 ? { requiredCapabilities: required } : {};
}

/** Writes NDJSON lines: `done: false` objects with the text as it comes, batched as the OpenAI side does. */
function ndjsonWriter(generation: OllamaGeneration) {
  const { response, model, kind } = generation;
  const writeLine = (payload: unknown) => {
    if (!response.writableEnded) response.write(`${JSON.stringify(payload)}\n`);
  };
  const start = () => {
    if (response.headersSent) return;
    response.writeHead(200, {
      "content-type": "application/x-ndjson",
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
    });
  };
  const writeObject = (content: ReturnType<typeof contentOf>) =>
    writeLine({ model: model.name, created_at: new Date().toISOString(), ...content, done: false });
  const texts = createDeltaBatcher<string>({
    intervalMs: streamBatchIntervalMs,
    maxItems: 64,
    onBatch: (pieces) => writeObject(contentOf(kind, pieces.join(""))),
  });
  /** A tool call goes out whole in an object of its own (empty content), after the text before it. */
  const writeToolCall = (call: OllamaToolCall) => {
    texts.flush();
    writeObject(contentOf(kind, "", [call]));
  };
  return { start, texts, writeLine, writeToolCall };
}

/** Counts an answer against the request's API key; a failure to count is logged, the answer still goes out. */
function recordAnswer(context: CompletionContext, result: BackendGenerateResult) {
  if (!context.access || !context.caller) return;
  try {
    context.access.recordAnswer({ caller: context.caller, result });
  } catch (error) {
    context.logger.error("an answer could not be counted against its API key", {
      key: context.caller.keyId,
      error: error instanceof Error ? error.message : String(error),
    });
  }
}

/** When generation started and its first text came, as this server saw them (performance.now()). */
type Moments = { receivedAt: number; startedAt?: number; firstTextAt?: number; endedAt: number };

/** Ollama's final statistics, in nanoseconds (load_duration 0: every served model is loaded before requests). */
function statisticsOf(result: BackendGenerateResult, moments: Moments) {
  const nanoseconds = (ms: number) => Math.max(0, Math.round(ms * 1e6));
  const timings = result.timings;
  const generationMs =
    moments.startedAt !== undefined
      ? moments.endedAt - moments.startedAt
      : timings
        ? timings.totalMs - timings.queuedMs
        : 0;
  // Prompt evaluation: from the start to the first text (streamed) or the first token (the engine's own timing).
  const promptMs =
    moments.startedAt !== undefined && moments.firstTextAt !== undefined
      ? moments.firstTextAt - moments.startedAt
      : timings?.firstTokenMs !== undefined
        ? timings.firstTokenMs - timings.queuedMs
        : 0;
  return {
    total_duration: nanoseconds(moments.endedAt - moments.receivedAt),
    load_duration: 0,
    prompt_eval_count: result.usage.promptTokens,
    prompt_eval_duration: nanoseconds(promptMs),
    eval_count: result.usage.completionTokens,
    eval_duration: nanoseconds(generationMs - promptMs),
  };
}

const utf8 = new TextDecoder("utf-8", { fatal: false });

/**
 * Ollama's `logprobs`: per output token its text, log-probability, bytes and the `top_logprobs` most likely tokens
 * at its position (Ollama's shape; the values are those of `/v1/`'s logprobs).
 */
function ollamaLogprobsOf(logprobs: readonly OutputLogprob[]) {
  const entry = (item: { bytes: number[]; logprob: number }) => ({
    token: utf8.decode(Uint8Array.from(item.bytes)),
    logprob: item.logprob,
    bytes: item.bytes,
  });
  return logprobs.map((item) => ({ ...entry(item), top_logprobs: item.top.map(entry) }));
}

/** Runs one generation, as one JSON object or as NDJSON, and stops it if the client goes away. */
async function runOllamaGeneration(context: CompletionContext, generation: OllamaGeneration) {
  const { response, body, model, kind } = generation;
  const stream = body.stream !== false;
  const controller = new AbortController();
  const onClose = () => {
    if (!response.writableFinished) controller.abort(new Error("client disconnected"));
  };
  response.on("close", onClose);
  const writer = ndjsonWriter(generation);
  const moments: Omit<Moments, "endedAt"> = { receivedAt: generation.receivedAt };
  const sampling: ApiSampling = { ...samplingOfOllama(body), ...generation.constraints };
  // With tools in play, streamed text goes through the tool-call parser: content, then each call whole.
  const toolStream =
    stream && generation.toolFormat
      ? createOllamaToolStream({
          format: generation.toolFormat,
          onContent: (text) => writer.texts.push(text),
          onToolCall: writer.writeToolCall,
        })
      : undefined;
  let result: BackendGenerateResult;
  try {
    result = await context.backend.generate({
      model,
      prompt: generation.prompt,
      sampling,
      // Gateways route only to providers that announce what the request needs (tools, grammars).
      ...requiredCapabilitiesOf(generation, sampling),
      includeEvidence: body.mycel?.include_evidence === true,
      requestAudit: body.mycel?.audit === true,
      ...(body.mycel?.max_price == null ? {} : { maxPricePerMillion: BigInt(body.mycel.max_price) }),
      signal: controller.signal,
      onStart: () => {
        moments.startedAt ??= performance.now();
        if (stream) writer.start();
      },
      onText: stream
        ? (text) => {
            if (!text) return;
            moments.firstTextAt ??= performance.now();
            if (toolStream) toolStream.push(text);
            else writer.texts.push(text);
          }
        : undefined,
    });
  } catch (error) {
    response.off("close", onClose);
    if (controller.signal.aborted) return writer.texts.cancel();
    if (!response.headersSent) throw error;
    writer.texts.flush();
    writer.writeLine(toOllamaError(error).body);
    response.end();
    context.logger.error("generation failed mid-stream", {
      error: error instanceof Error ? error.message : String(error),
    });
    return;
  }
  response.off("close", onClose);
  recordAnswer(context, result);
  writer.texts.flush();
  if (result.finishReason === "cancelled") {
    context.logger.info("generation cancelled: client disconnected", {
      completionTokens: result.usage.completionTokens,
    });
    if (!response.writableEnded) response.end();
    return;
  }
  toolStream?.finish();
  writer.texts.flush();
  const answer =
    !stream && generation.toolFormat
      ? ollamaToolAnswerOf({ format: generation.toolFormat, text: result.text })
      : { content: stream ? "" : result.text, toolCalls: [] };
  const final = {
    model: model.name,
    created_at: new Date().toISOString(),
    ...contentOf(kind, answer.content, answer.toolCalls),
    done: true,
    done_reason: result.finishReason,
    ...statisticsOf(result, { ...moments, endedAt: performance.now() }),
    // Streamed too, all of them come in the final object: the engine computes them once the answer is complete.
    ...(result.logprobs ? { logprobs: ollamaLogprobsOf(result.logprobs) } : {}),
    mycel: result.mycel,
  };
  if (stream) {
    writer.start();
    writer.writeLine(final);
    response.end();
  } else sendJson(response, 200, final);
  context.logger.info("completion", {
    api: "ollama",
    model: model.name,
    stream,
    promptTokens: result.usage.promptTokens,
    completionTokens: result.usage.completionTokens,
    finishReason: result.finishReason,
  });
}
