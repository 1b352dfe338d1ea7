/** The OpenAI-compatible HTTP API over the engine: /v1/models, /v1/chat/completions, /v1/completions, /health. */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createDeltaBatcher, type Engine, streamBatchIntervalMs } from "../engine/index.ts";
import { MycelError } from "../errors/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import {
  type ApiModelInfo,
  type ApiPrompt,
  type BackendGenerateResult,
  createEngineBackend,
  type InferenceBackend,
} from "./backend.ts";
import { HttpError, toOpenAiError } from "./openaiErrors.ts";
import {
  type ChatCompletionRequest,
  type CompletionRequest,
  chatCompletionRequestSchema,
  completionRequestSchema,
  messageText,
  parseRequest,
  stopList,
} from "./schemas.ts";

/** Parameters of {@link startApiServer}. */
export type StartApiServerParameters = {
  /** What answers requests; or give `engine` to serve this process's engine. */
  backend?: InferenceBackend;
  engine?: Engine;
  /** Defaults to 127.0.0.1: nothing is exposed beyond this machine unless asked. */
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Largest accepted request body, in bytes (default 1 MiB). */
  maxBodyBytes?: number;
  logger?: Logger;
};

/** A running API server. */
export type ApiServer = {
  url: string;
  host: string;
  port: number;
  server: Server;
  close(): Promise<void>;
};

/** Default largest request body: 1 MiB. */
export const defaultMaxBodyBytes = 1024 * 1024;

type SamplingRequest = Pick<
  ChatCompletionRequest,
  "max_tokens" | "temperature" | "top_p" | "top_k" | "seed" | "stop" | "stream" | "stream_options" | "mycel"
>;

function completionId(prefix: string) {
  return `${prefix}-${randomBytes(12).toString("hex")}`;
}

/** Writes `payload` as a JSON response with its length, plus any extra headers. */
export function sendJson(
  response: ServerResponse,
  status: number,
  payload: unknown,
  headers: Record<string, string> = {},
) {
  const text = JSON.stringify(payload);
  response.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  response.end(text);
}

async function readJsonBody(request: IncomingMessage, maxBodyBytes: number): Promise<unknown> {
  const tooLarge = () =>
    new HttpError(413, `the request body is larger than ${maxBodyBytes} bytes`, {
      code: "request_too_large",
      hint: "send a smaller request, or start the server with a larger --max-body",
    });
  const declared = Number(request.headers["content-length"]);
  if (Number.isFinite(declared) && declared > maxBodyBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > maxBodyBytes) throw tooLarge();
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (!text.trim())
    throw new HttpError(400, "the request body is empty: send a JSON object", { code: "invalid_json" });
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new HttpError(
      400,
      `the request body is not valid JSON (${cause instanceof Error ? cause.message : cause})`,
      {
        code: "invalid_json",
      },
    );
  }
}

/** Whether a Host header names this machine's loopback (localhost, 127.x.x.x, [::1]), with any port. */
export function isLoopbackHostHeader(header: string | undefined): boolean {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::\d{1,5})?$/.exec(header ?? "");
  const name = (match?.[1] ?? match?.[2] ?? "").toLowerCase();
  return name === "localhost" || name === "::1" || /^127(\.\d{1,3}){3}$/.test(name);
}

/** Whether a request's Origin (if a browser sent one) is this server itself, as its Host header names it. */
export function isSameOrigin(origin: string | undefined, host: string | undefined): boolean {
  if (origin === undefined) return true;
  try {
    const url = new URL(origin);
    return (url.protocol === "http:" || url.protocol === "https:") && url.host === (host ?? "").toLowerCase();
  } catch {
    return false;
  }
}

/** Starts the OpenAI-compatible API on host:port and resolves once it listens. */
export async function startApiServer(parameters: StartApiServerParameters): Promise<ApiServer> {
  const chosenBackend =
    parameters.backend ?? (parameters.engine ? createEngineBackend(parameters.engine) : undefined);
  if (!chosenBackend)
    throw new MycelError("startApiServer needs a backend or an engine", { code: "invalid_setup" });
  const backend: InferenceBackend = chosenBackend;
  const host = parameters.host ?? "127.0.0.1";
  const loopbackOnly = ["localhost", "::1"].includes(host) || /^127(\.\d{1,3}){3}$/.test(host);
  const maxBodyBytes = parameters.maxBodyBytes ?? defaultMaxBodyBytes;
  const logger = parameters.logger ?? silentLogger;
  const started = Math.floor(Date.now() / 1000);

  const modelObject = (info: ApiModelInfo) => ({
    id: info.name,
    object: "model",
    created: started,
    owned_by: "mycel",
    mycel: { hash: info.hash, context_length: info.contextLength, ...info.extra },
  });

  function samplingOf(body: SamplingRequest, maxTokensDefault: number | undefined) {
    return {
      maxTokens: body.max_tokens ?? maxTokensDefault,
      temperature: body.temperature ?? 1,
      topP: body.top_p ?? 1,
      topK: body.top_k ?? 0,
      seed: body.seed ?? undefined,
      stop: stopList(body.stop),
    };
  }

  /** Runs one generation, as JSON or as SSE, and stops it if the client goes away. */
  async function runGeneration(parameters: {
    request: IncomingMessage;
    response: ServerResponse;
    body: SamplingRequest;
    model: ApiModelInfo;
    prompt: ApiPrompt;
    maxTokensDefault: number | undefined;
    kind: "chat" | "text";
  }) {
    const { response, body, model, kind } = parameters;
    const id = completionId(kind === "chat" ? "chatcmpl" : "cmpl");
    const created = Math.floor(Date.now() / 1000);
    const controller = new AbortController();
    const onClose = () => {
      if (!response.writableFinished) controller.abort(new Error("client disconnected"));
    };
    response.on("close", onClose);
    const object = kind === "chat" ? "chat.completion" : "text_completion";
    const fingerprint = `mycel-${model.hash.slice(0, 12)}`;
    const stream = body.stream === true;
    const includeUsage = stream && body.stream_options?.include_usage === true;
    const chunkBase = () => ({
      id,
      object: kind === "chat" ? "chat.completion.chunk" : "text_completion",
      created,
      model: model.name,
      system_fingerprint: fingerprint,
      ...(includeUsage ? { usage: null } : {}),
    });
    const writeEvent = (payload: unknown) => {
      if (!response.writableEnded) response.write(`data: ${JSON.stringify(payload)}\n\n`);
    };
    // Token chunks differ only in their text: serialize the rest once (this is the hot path of streaming).
    const [deltaPrefix, deltaSuffix] = JSON.stringify({
      ...chunkBase(),
      choices: [
        kind === "chat"
          ? { index: 0, delta: { content: "\u0000" }, logprobs: null, finish_reason: null }
          : { index: 0, text: "\u0000", logprobs: null, finish_reason: null },
      ],
    }).split('"\\u0000"');
    const startStream = () => {
      if (response.headersSent) return;
      response.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        connection: "keep-alive",
        "x-accel-buffering": "no",
      });
      if (kind === "chat") {
        writeEvent({
          ...chunkBase(),
          choices: [
            { index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null },
          ],
        });
      }
    };
    // One event per token while tokens come slower than streamBatchIntervalMs; faster ones share an event.
    const texts = createDeltaBatcher<string>({
      intervalMs: streamBatchIntervalMs,
      maxItems: 64,
      onBatch: (pieces) => {
        if (response.writableEnded) return;
        response.write(`data: ${deltaPrefix}${JSON.stringify(pieces.join(""))}${deltaSuffix}\n\n`);
      },
    });
    const onText = (text: string) => {
      if (text) texts.push(text);
    };

    let result: BackendGenerateResult;
    try {
      result = await backend.generate({
        model,
        prompt: parameters.prompt,
        sampling: samplingOf(body, parameters.maxTokensDefault),
        includeEvidence: body.mycel?.include_evidence === true,
        requestAudit: body.mycel?.audit === true,
        signal: controller.signal,
        // Headers and the role chunk go out as soon as a sequence is free, before the prompt is evaluated.
        onStart: stream ? startStream : undefined,
        onText: stream ? onText : undefined,
      });
    } catch (error) {
      response.off("close", onClose);
      if (controller.signal.aborted) {
        texts.cancel();
        return;
      }
      if (!response.headersSent) throw error;
      texts.flush();
      const failure = toOpenAiError(error);
      writeEvent(failure.body);
      response.end();
      logger.error("generation failed mid-stream", {
        id,
        error: error instanceof Error ? error.message : String(error),
      });
      return;
    }
    response.off("close", onClose);
    texts.flush();
    const mycel = result.mycel;
    if (result.finishReason === "cancelled") {
      logger.info("generation cancelled: client disconnected", {
        id,
        completionTokens: result.usage.completionTokens,
      });
      if (!response.writableEnded) response.end();
      return;
    }
    const usage = {
      prompt_tokens: result.usage.promptTokens,
      completion_tokens: result.usage.completionTokens,
      total_tokens: result.usage.totalTokens,
    };
    logger.info("completion", {
      id,
      model: model.name,
      stream,
      promptTokens: usage.prompt_tokens,
      completionTokens: usage.completion_tokens,
      finishReason: result.finishReason,
      queuedMs: result.timings && Math.round(result.timings.queuedMs),
      ms: result.timings && Math.round(result.timings.totalMs),
    });
    if (!stream) {
      const choice =
        kind === "chat"
          ? {
              index: 0,
              message: { role: "assistant", content: result.text, refusal: null },
              logprobs: null,
              finish_reason: result.finishReason,
            }
          : { index: 0, text: result.text, logprobs: null, finish_reason: result.finishReason };
      sendJson(response, 200, {
        id,
        object,
        created,
        model: model.name,
        system_fingerprint: fingerprint,
        choices: [choice],
        usage,
        mycel,
      });
      return;
    }
    startStream();
    const finalChoice =
      kind === "chat"
        ? { index: 0, delta: {}, logprobs: null, finish_reason: result.finishReason }
        : { index: 0, text: "", logprobs: null, finish_reason: result.finishReason };
    // `mycel` (hash, seed, receipts) rides on the last event before [DONE].
    writeEvent({ ...chunkBase(), choices: [finalChoice], ...(includeUsage ? {} : { mycel }) });
    if (includeUsage) writeEvent({ ...chunkBase(), choices: [], usage, mycel });
    response.write("data: [DONE]\n\n");
    response.end();
  }

  async function handleChat(request: IncomingMessage, response: ServerResponse) {
    const body = parseRequest(chatCompletionRequestSchema, await readJsonBody(request, maxBodyBytes));
    const model = backend.findModel(body.model);
    const messages = body.messages.map((message) => ({
      role: message.role === "developer" ? "system" : message.role,
      content: messageText(message.content),
    }));
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? undefined;
    await runGeneration({
      request,
      response,
      body: { ...body, max_tokens: maxTokens },
      model,
      prompt: { kind: "chat", messages },
      maxTokensDefault: undefined,
      kind: "chat",
    });
  }

  async function handleCompletion(request: IncomingMessage, response: ServerResponse) {
    const body: CompletionRequest = parseRequest(
      completionRequestSchema,
      await readJsonBody(request, maxBodyBytes),
    );
    const model = backend.findModel(body.model);
    const prompt =
      typeof body.prompt === "string" || typeof body.prompt[0] === "string"
        ? typeof body.prompt === "string"
          ? body.prompt
          : String(body.prompt[0])
        : (body.prompt as number[]);
    // OpenAI's /v1/completions default is 16 tokens.
    await runGeneration({
      request,
      response,
      body,
      model,
      prompt: { kind: "text", prompt },
      maxTokensDefault: 16,
      kind: "text",
    });
  }

  async function route(request: IncomingMessage, response: ServerResponse) {
    const url = new URL(request.url ?? "/", "http://localhost");
    const path = url.pathname.replace(/\/+$/, "") || "/";
    const method = request.method ?? "GET";
    // A server on loopback answers only names of loopback: a web page cannot reach it through DNS rebinding.
    if (loopbackOnly && !isLoopbackHostHeader(request.headers.host))
      throw new HttpError(
        421,
        `this server answers requests for localhost only, not ${request.headers.host ?? "no host"}`,
        {
          code: "misdirected_request",
          hint: "use http://127.0.0.1:<port> or http://localhost:<port>, or start the server with --host to serve other names",
        },
      );
    // A web page of another origin can send a simple POST to this server (no preflight) and make it spend:
    // browsers name the page's origin, so anything that changes state must come from this origin or from no
    // browser at all (curl, SDKs send no Origin).
    if (method !== "GET" && method !== "HEAD" && !isSameOrigin(request.headers.origin, request.headers.host))
      throw new HttpError(403, `requests from the web page at ${request.headers.origin} are refused`, {
        code: "cross_origin_refused",
        hint: "call the API from a program, or from the explorer this server serves; other web pages may not use it",
      });
    const allow = (methods: string[]) => {
      if (!methods.includes(method)) {
        throw new HttpError(405, `${method} is not allowed on ${path}; use ${methods.join(" or ")}`, {
          code: "method_not_allowed",
        });
      }
    };
    if (path === "/health") {
      allow(["GET", "HEAD"]);
      sendJson(response, 200, backend.health());
      return;
    }
    if (path === "/v1/models") {
      allow(["GET"]);
      sendJson(response, 200, { object: "list", data: backend.listModels().map(modelObject) });
      return;
    }
    if (path.startsWith("/v1/models/")) {
      allow(["GET"]);
      sendJson(
        response,
        200,
        modelObject(backend.findModel(decodeURIComponent(path.slice("/v1/models/".length)))),
      );
      return;
    }
    if (path === "/v1/chat/completions") {
      allow(["POST"]);
      await handleChat(request, response);
      return;
    }
    if (path === "/v1/completions") {
      allow(["POST"]);
      await handleCompletion(request, response);
      return;
    }
    if (await backend.route?.({ method, path, query: url.searchParams, request, response })) return;
    throw new HttpError(404, `no route ${method} ${path}`, {
      code: "not_found",
      hint: "the API serves /v1/models, /v1/chat/completions, /v1/completions and /health",
    });
  }

  const server = createServer((request, response) => {
    route(request, response).catch((error: unknown) => {
      const failure = toOpenAiError(error);
      if (failure.status >= 500 && !(error instanceof MycelError && failure.status === 503)) {
        logger.error("request failed", {
          path: request.url,
          error: error instanceof Error ? error.message : String(error),
        });
      } else {
        logger.debug("request refused", {
          path: request.url,
          status: failure.status,
          code: failure.body.error.code,
        });
      }
      if (response.headersSent) {
        response.end();
        return;
      }
      const closeAfter = failure.status === 413;
      sendJson(
        response,
        failure.status,
        failure.body,
        closeAfter ? { ...failure.headers, connection: "close" } : failure.headers,
      );
      if (closeAfter) request.resume();
    });
  });
  server.requestTimeout = 0;
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      reject(
        new MycelError(`cannot listen on ${host}:${parameters.port ?? 0}`, {
          code: "listen_failed",
          details: error.message,
          hint:
            error.code === "EADDRINUSE"
              ? "the port is in use: pick another with --port"
              : "check --host and --port",
          cause: error,
        }),
      );
    });
    server.listen(parameters.port ?? 0, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const urlHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${urlHost}:${address.port}`,
    host: address.address,
    port: address.port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
