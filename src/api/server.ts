/** The OpenAI-compatible HTTP API over a backend: /v1/models, /v1/chat/completions, /v1/completions, /health. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Engine } from "../engine/index.ts";
import { MycelError } from "../errors/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import { type ApiAccess, type ApiModelInfo, createEngineBackend, type InferenceBackend } from "./backend.ts";
import { type CompletionContext, handleChatCompletion, handleCompletion } from "./completions.ts";
import { handleEmbeddings } from "./embeddings.ts";
import { guardRequest, isLoopbackHost, requestPath, sendJson } from "./http.ts";
import { handleOllamaRoute, ollamaSpendingPaths, toOllamaError } from "./ollama.ts";
import { HttpError, toOpenAiError } from "./openaiErrors.ts";

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
  /** Timeouts and the connection cap (defaults: {@link defaultHttpLimits}). */
  limits?: Partial<HttpLimits>;
  /** Checks API keys on /v1/, /api/ and /mycel/ (absent: every request is let in, as on loopback without keys). */
  access?: ApiAccess;
  logger?: Logger;
};

/** What one client may hold of the server: time to send a request, idle keep-alive, and open connections. */
export type HttpLimits = {
  /** The request line and headers must arrive within this (else 408 and the connection is closed). */
  headerTimeoutMs: number;
  /**
   * The whole request, headers and body, must arrive within this (else 408 and the connection is closed): a body
   * sent a byte at a time cannot hold a connection. Answers (streams included) may take as long as they need.
   */
  bodyTimeoutMs: number;
  /** An idle kept-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** Connections open at once; beyond it a new one is closed at once. */
  maxConnections: number;
};

/** Defaults of {@link HttpLimits}: headers in 10 s, the whole request in 30 s, 5 s idle, 512 connections. */
export const defaultHttpLimits: HttpLimits = {
  headerTimeoutMs: 10_000,
  bodyTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 512,
};

/** How often the server looks for requests past their header or body timeout. */
const timeoutCheckIntervalMs = 1_000;

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

/** The routes of the API, each with the methods it allows. */
function createRouter(context: CompletionContext & { loopbackOnly: boolean }) {
  const { backend } = context;
  const started = Math.floor(Date.now() / 1000);
  const modelObject = (info: ApiModelInfo) => ({
    id: info.name,
    object: "model",
    created: started,
    owned_by: "mycel",
    mycel: { hash: info.hash, context_length: info.contextLength, ...info.extra },
  });
  return async (request: IncomingMessage, response: ServerResponse) => {
    const method = request.method ?? "GET";
    guardRequest(request, { loopbackOnly: context.loopbackOnly, method });
    const { path, query } = requestPath(request);
    // The API (OpenAI's and Ollama's) and the explorer's views need a key when the server checks keys; /health and
    // the web app's files not.
    const spends =
      path === "/v1/chat/completions" ||
      path === "/v1/completions" ||
      path === "/v1/embeddings" ||
      ollamaSpendingPaths.has(path);
    const caller =
      context.access && (path.startsWith("/v1/") || path.startsWith("/api/") || path.startsWith("/mycel/"))
        ? context.access.admit({ request, spends: spends && method === "POST" })
        : undefined;
    const completion = { ...context, caller };
    const allow = (methods: string[]) => {
      if (!methods.includes(method))
        throw new HttpError(405, `${method} is not allowed on ${path}; use ${methods.join(" or ")}`, {
          code: "method_not_allowed",
        });
    };
    if (path === "/health") {
      allow(["GET", "HEAD"]);
      return sendJson(response, 200, backend.health());
    }
    if (path === "/v1/models") {
      allow(["GET"]);
      return sendJson(response, 200, { object: "list", data: backend.listModels().map(modelObject) });
    }
    if (path.startsWith("/v1/models/")) {
      allow(["GET"]);
      return sendJson(
        response,
        200,
        modelObject(await backend.findModel(decodeURIComponent(path.slice("/v1/models/".length)))),
      );
    }
    if (path === "/v1/chat/completions") {
      allow(["POST"]);
      return handleChatCompletion(completion, request, response);
    }
    if (path === "/v1/completions") {
      allow(["POST"]);
      return handleCompletion(completion, request, response);
    }
    if (path === "/v1/embeddings") {
      allow(["POST"]);
      return handleEmbeddings(completion, request, response);
    }
    // Ollama's API (docs/API.md "Ollama API").
    if (path.startsWith("/api/"))
      return handleOllamaRoute({ context: completion, method, path, request, response });
    if (await backend.route?.({ method, path, query, request, response, caller })) return;
    throw new HttpError(404, `no route ${method} ${path}`, {
      code: "not_found",
      hint: "the API serves /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings, Ollama's /api/ routes and /health",
    });
  };
}

/**
 * Answers a request that failed with the OpenAI-shaped error, or Ollama's `{"error": "..."}` under /api/ (or ends a
 * response already under way).
 */
function answerFailure(parameters: {
  error: unknown;
  request: IncomingMessage;
  response: ServerResponse;
  logger: Logger;
}) {
  const { error, request, response, logger } = parameters;
  const failure = toOpenAiError(error);
  const ollama = (request.url ?? "").startsWith("/api/");
  if (failure.status >= 500 && !(error instanceof MycelError && failure.status === 503))
    logger.error("request failed", {
      path: request.url,
      error: error instanceof Error ? error.message : String(error),
    });
  else
    logger.debug("request refused", {
      path: request.url,
      status: failure.status,
      code: failure.body.error.code,
    });
  if (response.headersSent) {
    response.end();
    return;
  }
  const closeAfter = failure.status === 413;
  sendJson(
    response,
    failure.status,
    ollama ? toOllamaError(error).body : failure.body,
    closeAfter ? { ...failure.headers, connection: "close" } : failure.headers,
  );
  if (closeAfter) request.resume();
}

/** Starts the OpenAI-compatible API on host:port and resolves once it listens. */
export async function startApiServer(parameters: StartApiServerParameters): Promise<ApiServer> {
  const backend =
    parameters.backend ?? (parameters.engine ? createEngineBackend(parameters.engine) : undefined);
  if (!backend)
    throw new MycelError("startApiServer needs a backend or an engine", { code: "invalid_setup" });
  const host = parameters.host ?? "127.0.0.1";
  const logger = parameters.logger ?? silentLogger;
  const route = createRouter({
    backend,
    maxBodyBytes: parameters.maxBodyBytes ?? defaultMaxBodyBytes,
    logger,
    access: parameters.access,
    loopbackOnly: isLoopbackHost(host),
  });
  const given = Object.entries(parameters.limits ?? {}).filter(([, value]) => value !== undefined);
  const limits: HttpLimits = { ...defaultHttpLimits, ...Object.fromEntries(given) };
  if (limits.bodyTimeoutMs < limits.headerTimeoutMs)
    throw new MycelError(
      `the body timeout (${limits.bodyTimeoutMs} ms) is shorter than the header timeout (${limits.headerTimeoutMs} ms)`,
      { code: "invalid_setup", hint: "give a body timeout at least as long as the header timeout" },
    );
  const server = createServer(
    {
      headersTimeout: limits.headerTimeoutMs,
      requestTimeout: limits.bodyTimeoutMs,
      connectionsCheckingInterval: timeoutCheckIntervalMs,
    },
    (request, response) => {
      route(request, response).catch((error: unknown) => answerFailure({ error, request, response, logger }));
    },
  );
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  server.maxConnections = limits.maxConnections;
  let droppedSinceLog = 0;
  let lastDropLog = 0;
  server.on("drop", () => {
    droppedSinceLog += 1;
    if (Date.now() - lastDropLog < 10_000) return;
    logger.warn("connections refused: the server holds its most connections", {
      maxConnections: limits.maxConnections,
      refused: droppedSinceLog,
    });
    lastDropLog = Date.now();
    droppedSinceLog = 0;
  });
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
