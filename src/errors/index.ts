/** Parameters of {@link MycelError}: what went wrong underneath and what the user should do. */
export type MycelErrorParameters = {
  /** A stable machine-readable code, e.g. `model_not_found`. */
  code?: string;
  /** More detail for people and logs (never a secret). */
  details?: string;
  /** What the user should do next, e.g. "run `mycel model list`". */
  hint?: string;
  /** The underlying error, if any. */
  cause?: unknown;
};

/** The one error base of Mycel: a short message for people, with details and a hint that names the fix. */
export class MycelError extends Error {
  override name = "MycelError";
  readonly shortMessage: string;
  readonly code: string;
  readonly details: string | undefined;
  readonly hint: string | undefined;

  constructor(shortMessage: string, parameters: MycelErrorParameters = {}) {
    const lines = [shortMessage];
    if (parameters.details) lines.push(`Details: ${parameters.details}`);
    if (parameters.hint) lines.push(`Hint: ${parameters.hint}`);
    super(lines.join("\n"), parameters.cause === undefined ? undefined : { cause: parameters.cause });
    this.shortMessage = shortMessage;
    this.code = parameters.code ?? "mycel_error";
    this.details = parameters.details;
    this.hint = parameters.hint;
  }
}

/** A request or argument that is malformed or out of range; nothing was changed. */
export class InvalidInputError extends MycelError {
  override name = "InvalidInputError";
  /** The offending field, when there is one (OpenAI's `param`). */
  readonly param: string | null;
  constructor(shortMessage: string, parameters: MycelErrorParameters & { param?: string | null } = {}) {
    super(shortMessage, { code: "invalid_request", ...parameters });
    this.param = parameters.param ?? null;
  }
}

/** A model name or hash that is not in the store or not served here. */
export class ModelNotFoundError extends MycelError {
  override name = "ModelNotFoundError";
  readonly model: string;
  constructor(model: string, parameters: MycelErrorParameters = {}) {
    super(`model "${model}" not found`, {
      code: "model_not_found",
      hint: "list the models with `mycel model list`, or add one with `mycel model add <path|url|hf:owner/repo/file.gguf>`",
      ...parameters,
    });
    this.model = model;
  }
}

/** A prompt (plus the requested completion) that does not fit the model's context window. */
export class ContextLengthExceededError extends MycelError {
  override name = "ContextLengthExceededError";
  constructor(parameters: { promptTokens: number; maxTokens: number; contextSize: number }) {
    super(
      `this model's maximum context length is ${parameters.contextSize} tokens, but the request needs ${parameters.promptTokens} prompt tokens plus ${parameters.maxTokens} completion tokens`,
      {
        code: "context_length_exceeded",
        hint: "shorten the messages or lower max_tokens",
      },
    );
  }
}

/** All inference slots are busy and the wait queue is full. */
export class QueueFullError extends MycelError {
  override name = "QueueFullError";
  readonly retryAfterSeconds: number;
  constructor(parameters: { queueLimit: number; retryAfterSeconds: number }) {
    super(`the server is busy: ${parameters.queueLimit} requests are already waiting`, {
      code: "queue_full",
      hint: `retry after ${parameters.retryAfterSeconds} s, or start the server with a larger --max-queue`,
    });
    this.retryAfterSeconds = parameters.retryAfterSeconds;
  }
}

/** A network download could not be started or finished. */
export class DownloadError extends MycelError {
  override name = "DownloadError";
}

/** A file that is not a valid GGUF model. */
export class InvalidModelFileError extends MycelError {
  override name = "InvalidModelFileError";
}

/** Returns a one-line description of any thrown value, for logs and the CLI. */
export function describeError(error: unknown): string {
  if (error instanceof MycelError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

/** Nothing can serve the request right now (e.g. every provider of a model failed); worth retrying later. */
export class ServiceUnavailableError extends MycelError {
  override name = "ServiceUnavailableError";
  readonly retryAfterSeconds: number;
  constructor(shortMessage: string, parameters: MycelErrorParameters & { retryAfterSeconds?: number } = {}) {
    super(shortMessage, { code: "service_unavailable", ...parameters });
    this.retryAfterSeconds = parameters.retryAfterSeconds ?? 1;
  }
}

/** A request that is not (or no longer) paid for: no channel, an exhausted budget, or unpaid tokens beyond the credit window. */
export class PaymentRequiredError extends MycelError {
  override name = "PaymentRequiredError";
  constructor(shortMessage: string, parameters: MycelErrorParameters = {}) {
    super(shortMessage, { code: "payment_required", ...parameters });
  }
}

export { closestName, describeAvailable } from "./suggestions.ts";
