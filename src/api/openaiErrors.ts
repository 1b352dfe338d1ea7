/** Maps Mycel errors to OpenAI's error JSON `{"error": {message, type, param, code}}` and an HTTP status. */
import {
  ContextLengthExceededError,
  InvalidInputError,
  ModelNotFoundError,
  MycelError,
  PaymentRequiredError,
  QueueFullError,
  ServiceUnavailableError,
} from "../errors/index.ts";

/** The body OpenAI sends with an error. */
export type OpenAiErrorBody = {
  error: { message: string; type: string; param: string | null; code: string | null };
};

/** An HTTP error response in OpenAI's shape. */
export type OpenAiErrorResponse = { status: number; body: OpenAiErrorBody; headers: Record<string, string> };

/** An error raised by the HTTP layer itself (bad JSON, body too large, unknown route). */
export class HttpError extends MycelError {
  override name = "HttpError";
  readonly status: number;
  readonly type: string;
  /** Headers the response carries (Retry-After, WWW-Authenticate). */
  readonly headers: Record<string, string>;
  constructor(
    status: number,
    message: string,
    parameters: { code: string; type?: string; hint?: string; headers?: Record<string, string> },
  ) {
    super(message, { code: parameters.code, hint: parameters.hint });
    this.status = status;
    this.type = parameters.type ?? "invalid_request_error";
    this.headers = parameters.headers ?? {};
  }
}

function body(
  message: string,
  type: string,
  code: string | null,
  param: string | null = null,
): OpenAiErrorBody {
  return { error: { message, type, param, code } };
}

function withHint(error: MycelError) {
  return error.hint ? `${error.shortMessage} (${error.hint})` : error.shortMessage;
}

/** Turns any thrown value into the OpenAI-shaped response a client should get. */
export function toOpenAiError(error: unknown): OpenAiErrorResponse {
  if (error instanceof HttpError) {
    return {
      status: error.status,
      body: body(withHint(error), error.type, error.code),
      headers: error.headers,
    };
  }
  if (error instanceof ModelNotFoundError) {
    return {
      status: 404,
      body: body(
        `The model '${error.model}' does not exist or is not served here. ${error.hint ?? ""}`.trim(),
        "invalid_request_error",
        "model_not_found",
        "model",
      ),
      headers: {},
    };
  }
  if (error instanceof ContextLengthExceededError) {
    return {
      status: 400,
      body: body(withHint(error), "invalid_request_error", "context_length_exceeded", "messages"),
      headers: {},
    };
  }
  if (error instanceof PaymentRequiredError) {
    return { status: 402, body: body(withHint(error), "payment_required", error.code), headers: {} };
  }
  if (error instanceof QueueFullError) {
    return {
      status: 503,
      body: body(withHint(error), "server_error", "server_overloaded"),
      headers: { "retry-after": String(error.retryAfterSeconds) },
    };
  }
  if (error instanceof ServiceUnavailableError) {
    return {
      status: 503,
      body: body(withHint(error), "server_error", error.code),
      headers: { "retry-after": String(error.retryAfterSeconds) },
    };
  }
  if (error instanceof InvalidInputError) {
    return {
      status: 400,
      body: body(withHint(error), "invalid_request_error", error.code, error.param),
      headers: {},
    };
  }
  if (error instanceof MycelError) {
    return { status: 500, body: body(withHint(error), "server_error", error.code), headers: {} };
  }
  return { status: 500, body: body("internal server error", "server_error", "internal_error"), headers: {} };
}
