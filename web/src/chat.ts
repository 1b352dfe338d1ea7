/**
 * The playground's client for POST /v1/chat/completions with `stream: true`: reads the server-sent events with
 * fetch and a stream reader, hands each piece of text on as it arrives, and returns the `mycel` trailer (request
 * id, providers, receipts, audit) that rides on the last event before `[DONE]`.
 */

import { ApiError, errorOf, responseError, type SignedReceiptJson } from "./api.ts";
import { authHeaders } from "./apiKey.ts";

/** One message of a conversation. */
export type ChatMessage = { role: "system" | "user" | "assistant"; content: string };

/** What Mycel adds to the last chunk of an answer. */
export type ChatTrailer = {
  request_id: string;
  model_hash: string;
  seed?: number | string;
  /** The addresses of the providers that answered, one per segment (more than one after a failover). */
  providers: string[];
  failovers: number;
  receipts: SignedReceiptJson[];
  /** Present when the answer was sent to a validator for audit. */
  audit?: { validator: string };
};

/** Token counts, when the server sends them (stream_options.include_usage). */
export type ChatUsage = { prompt_tokens: number; completion_tokens: number; total_tokens: number };

/** Parameters of {@link streamChat}. */
export type StreamChatParameters = {
  model: string;
  messages: ChatMessage[];
  maxTokens: number;
  temperature: number;
  /** Ask the gateway to send this answer to a validator. */
  audit: boolean;
  signal: AbortSignal;
  /** Called with each piece of text as it arrives. */
  onText: (text: string) => void;
};

/** What {@link streamChat} returns once the answer is complete. */
export type StreamChatReturnType = {
  text: string;
  finishReason: string | null;
  mycel: ChatTrailer | null;
  usage: ChatUsage | null;
};

/**
 * A parser of a text/event-stream: feed it decoded text in any pieces; it calls `onData` with each event's data
 * (multi-line data joined with "\n"). Comments and other fields are skipped.
 */
export function createSseParser(onData: (data: string) => void): { push(text: string): void; end(): void } {
  let buffer = "";
  let data: string[] = [];
  const dispatch = () => {
    if (data.length) onData(data.join("\n"));
    data = [];
  };
  const line = (text: string) => {
    if (text === "") return dispatch();
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
  };
  return {
    push(text) {
      buffer += text;
      let index = buffer.search(/\r\n|\r|\n/);
      while (index !== -1) {
        const newline = buffer[index] === "\r" && buffer[index + 1] === "\n" ? 2 : 1;
        // A lone "\r" at the end may be the first half of "\r\n": wait for more.
        if (buffer[index] === "\r" && index === buffer.length - 1) break;
        line(buffer.slice(0, index));
        buffer = buffer.slice(index + newline);
        index = buffer.search(/\r\n|\r|\n/);
      }
    },
    end() {
      if (buffer) line(buffer.replace(/\r$/, ""));
      buffer = "";
      dispatch();
    },
  };
}

type Chunk = {
  choices?: {
    delta?: { content?: string | null };
    message?: { content?: string | null };
    finish_reason?: string | null;
  }[];
  usage?: ChatUsage | null;
  mycel?: ChatTrailer;
};

/** Streams a chat completion; throws an ApiError with the server's message on failure (an AbortError when stopped). */
export async function streamChat(parameters: StreamChatParameters): Promise<StreamChatReturnType> {
  let response: Response;
  try {
    response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream", ...authHeaders() },
      body: JSON.stringify({
        model: parameters.model,
        messages: parameters.messages,
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: parameters.maxTokens,
        temperature: parameters.temperature,
        mycel: { audit: parameters.audit },
      }),
      signal: parameters.signal,
    });
  } catch (cause) {
    if (parameters.signal.aborted) throw cause;
    throw new ApiError(
      `cannot reach the gateway (${cause instanceof Error ? cause.message : String(cause)})`,
      {
        status: 0,
      },
    );
  }
  if (!response.ok) throw await responseError(response);

  const result: StreamChatReturnType = { text: "", finishReason: null, mycel: null, usage: null };
  const take = (chunk: Chunk) => {
    const error = errorOf(chunk);
    if (error) throw new ApiError(error.message, { status: response.status, code: error.code });
    const choice = chunk.choices?.[0];
    const text = choice?.delta?.content ?? choice?.message?.content;
    if (text) {
      result.text += text;
      parameters.onText(text);
    }
    if (choice?.finish_reason) result.finishReason = choice.finish_reason;
    if (chunk.usage) result.usage = chunk.usage;
    if (chunk.mycel) result.mycel = chunk.mycel;
  };

  // A server that ignores `stream` answers with one JSON completion.
  if (!(response.headers.get("content-type") ?? "").includes("text/event-stream")) {
    take((await response.json()) as Chunk);
    return result;
  }
  if (!response.body) throw new ApiError("the gateway sent an empty stream", { status: response.status });

  let done = false;
  const parser = createSseParser((data) => {
    if (done) return;
    if (data.trim() === "[DONE]") {
      done = true;
      return;
    }
    let chunk: Chunk;
    try {
      chunk = JSON.parse(data) as Chunk;
    } catch {
      return;
    }
    take(chunk);
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    while (!done) {
      const { value, done: ended } = await reader.read();
      if (ended) break;
      parser.push(value);
    }
    parser.end();
  } finally {
    reader.cancel().catch(() => undefined);
  }
  if (!done && !result.mycel)
    throw new ApiError("the answer stream ended early, without [DONE]", { status: response.status });
  return result;
}
