/** HTTP plumbing of the API: JSON bodies in and out, and the checks that keep other web pages and names out. */
import type { IncomingMessage, ServerResponse } from "node:http";
import { HttpError } from "./openaiErrors.ts";

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

/** Reads a JSON request body of at most `maxBodyBytes`; 413 beyond it, 400 when it is empty or not JSON. */
export async function readJsonBody(request: IncomingMessage, maxBodyBytes: number): Promise<unknown> {
  const tooLarge = () =>
    new HttpError(413, `the request body is larger than ${maxBodyBytes} bytes`, {
      code: "request_too_large",
      hint: "send a smaller request, or start the server with a larger --max-body",
    });
  const declared = Number(request.headers["content-length"]);
  if (Number.isFinite(declared) && declared > maxBodyBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of request) {
      size += (chunk as Buffer).length;
      if (size > maxBodyBytes) throw tooLarge();
      chunks.push(chunk as Buffer);
    }
  } catch (error) {
    if (error instanceof HttpError) throw error;
    // The client went away, or the server cut a body that took longer than its body timeout: the client's doing.
    throw new HttpError(408, "the request body did not arrive in full (the connection closed or timed out)", {
      code: "request_timeout",
      hint: "send the whole request at once, within the server's body timeout",
    });
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

/** Whether a host to listen on is this machine's loopback only. */
export function isLoopbackHost(host: string): boolean {
  return ["localhost", "::1"].includes(host) || /^127(\.\d{1,3}){3}$/.test(host);
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

/**
 * Refuses what no request may do: a server on loopback answers only names of loopback (a web page cannot reach it
 * through DNS rebinding), and state-changing requests must come from this origin or from no browser at all (a web
 * page of another origin could otherwise make the server spend with a simple POST; curl and SDKs send no Origin).
 */
export function guardRequest(
  request: IncomingMessage,
  parameters: { loopbackOnly: boolean; method: string },
) {
  if (parameters.loopbackOnly && !isLoopbackHostHeader(request.headers.host))
    throw new HttpError(
      421,
      `this server answers requests for localhost only, not ${request.headers.host ?? "no host"}`,
      {
        code: "misdirected_request",
        hint: "use http://127.0.0.1:<port> or http://localhost:<port>, or start the server with --host to serve other names",
      },
    );
  const { method } = parameters;
  if (method !== "GET" && method !== "HEAD") refuseForeignPages(request);
}

/**
 * Refuses a request a web page of another origin made (403): its Origin header names another origin, or the
 * browser's Sec-Fetch-Site says it came from another site (also sent where no Origin is, as by `fetch` in
 * no-cors mode). Programs (curl, SDKs) send neither, and pages this server serves are same-origin.
 */
export function refuseForeignPages(request: IncomingMessage) {
  const fetchSite = request.headers["sec-fetch-site"];
  const foreign =
    !isSameOrigin(request.headers.origin, request.headers.host) ||
    fetchSite === "cross-site" ||
    fetchSite === "same-site";
  if (foreign)
    throw new HttpError(
      403,
      `requests from the web page at ${request.headers.origin ?? `another ${fetchSite}`} are refused`,
      {
        code: "cross_origin_refused",
        hint: "call the API from a program, or from the explorer this server serves; other web pages may not use it",
      },
    );
}

/** The path of a request's URL, percent-decoded; 400 when it cannot be (`%`, `%zz`, an unclosed `[` host). */
export function requestPath(request: IncomingMessage): { path: string; query: URLSearchParams } {
  const malformed = (what: string) =>
    new HttpError(400, `the request URL is malformed (${what}): ${JSON.stringify(request.url ?? "")}`, {
      code: "invalid_url",
      hint: "send a path such as /v1/models, with any %-escapes complete (%25 for a literal %)",
    });
  let url: URL;
  try {
    url = new URL(request.url ?? "/", "http://localhost");
  } catch {
    throw malformed("not a URL");
  }
  const path = url.pathname.replace(/\/+$/, "") || "/";
  try {
    decodeURIComponent(path);
  } catch {
    throw malformed("a broken %-escape");
  }
  return { path, query: url.searchParams };
}
