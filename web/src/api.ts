/** Talking to the gateway: one JSON fetch helper and the shapes of the responses types.ts does not cover. */
import { announceKeyNeeded, authHeaders } from "./apiKey.ts";

/** A request to the gateway failed: `message` is the server's own error message when it sent one. */
export class ApiError extends Error {
  override name = "ApiError";
  readonly status: number;
  readonly code: string | null;
  constructor(message: string, parameters: { status: number; code?: string | null }) {
    super(message);
    this.status = parameters.status;
    this.code = parameters.code ?? null;
  }
}

/** Reads `{error: {message, code}}` out of an error body; undefined when the body is not that shape. */
export function errorOf(body: unknown): { message: string; code: string | null } | undefined {
  if (typeof body !== "object" || body === null || !("error" in body)) return undefined;
  const error = (body as { error: unknown }).error;
  if (typeof error === "string") return { message: error, code: null };
  if (typeof error !== "object" || error === null) return undefined;
  const { message, code } = error as { message?: unknown; code?: unknown };
  return {
    message: typeof message === "string" ? message : "unknown error",
    code: typeof code === "string" ? code : null,
  };
}

/** Turns a failed response into an {@link ApiError} with the server's message (or the HTTP status). */
export async function responseError(response: Response): Promise<ApiError> {
  if (response.status === 401) announceKeyNeeded();
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    body = undefined;
  }
  const error = errorOf(body);
  return new ApiError(
    error?.message ?? `${response.status} ${response.statusText || "request failed"}`.trim(),
    {
      status: response.status,
      code: error?.code,
    },
  );
}

/** GETs same-origin JSON; throws an {@link ApiError} carrying the server's `error.message` on failure. */
export async function getJson<T>(path: string, parameters: { signal?: AbortSignal } = {}): Promise<T> {
  let response: Response;
  try {
    response = await fetch(path, {
      headers: { accept: "application/json", ...authHeaders() },
      signal: parameters.signal,
    });
  } catch (cause) {
    if (cause instanceof DOMException && cause.name === "AbortError") throw cause;
    throw new ApiError(
      `cannot reach the gateway (${cause instanceof Error ? cause.message : String(cause)})`,
      {
        status: 0,
      },
    );
  }
  if (!response.ok) throw await responseError(response);
  const body = (await response.json()) as unknown;
  const error = errorOf(body);
  if (error) throw new ApiError(error.message, { status: response.status, code: error.code });
  return body as T;
}

/** Whether two hex ids (request ids, addresses) are the same, whatever their letter case. */
export function sameHex(a: string | null | undefined, b: string | null | undefined): boolean {
  return typeof a === "string" && typeof b === "string" && a.toLowerCase() === b.toLowerCase();
}

/** The message to show for anything thrown. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** One provider segment's evidence, from GET /mycel/v1/receipts/<id>/evidence. */
export type SegmentEvidence = {
  /** The provider segment this evidence is of (0 unless the request failed over). */
  segment?: number;
  provider: string;
  modelHash?: string;
  promptTokens: number[];
  outputTokens: number[];
  fingerprints: { ids: number[][]; gaps: number[][] }[];
  finishReason: string;
};

/** GET /mycel/v1/receipts/<id>/evidence. */
export type EvidenceResponse = { request_id: string; evidence: SegmentEvidence[] };

/** A signed receipt as JSON (what ReceiptDetail.receipts and the chat trailer hold). */
export type SignedReceiptJson = {
  domain?: { name?: string; version?: string; chainId?: number; verifyingContract?: string };
  message: {
    requestId: string;
    client: string;
    provider: string;
    modelHash: string;
    requestHash: string;
    promptHash: string;
    outputHash: string;
    commitment: string;
    promptTokens: number;
    completionTokens: number;
    price: string;
    timestamp: string;
  };
  signature: string;
};

/** Whether a value looks like a signed receipt (so a malformed entry is shown raw instead of crashing). */
export function isSignedReceipt(value: unknown): value is SignedReceiptJson {
  if (typeof value !== "object" || value === null) return false;
  const { message, signature } = value as { message?: unknown; signature?: unknown };
  return typeof message === "object" && message !== null && typeof signature === "string";
}

/** GET /v1/models (OpenAI-compatible), with Mycel's model hash. */
export type ModelList = { data: { id: string; mycel?: { hash?: string } }[] };
