/**
 * Tools on Ollama's /api/chat, mapped onto /v1/'s: the conversation's tool calls (Ollama's arguments are objects
 * and its calls have no ids) and tool turns (`tool_name`) as the engine's messages, and the answer's calls in
 * Ollama's shape, each sent whole in its own chunk once its arguments are complete (as Ollama streams them).
 */
import { hermesToolCallTags, type ToolCallFormat } from "../engine/index.ts";
import type { ApiPrompt } from "./backend.ts";
import type { OllamaChatMessage } from "./ollamaFields.ts";
import { createToolAnswerStream } from "./toolAnswer.ts";

/** One message of a chat prompt, as the engine takes it. */
type ChatMessage = Extract<ApiPrompt, { kind: "chat" }>["messages"][number];

/** A tool call of an answer, as Ollama writes it: `index` counts the answer's calls, `arguments` is an object. */
export type OllamaToolCall = {
  function: { index: number; name: string; arguments: Record<string, unknown> };
};

/**
 * The id Mycel gives call `call` of message `message` (Ollama's calls have none; templates and the wire request
 * want one): deterministic, so the same conversation is the same request (and hash) every time.
 */
export function ollamaToolCallId(message: number, call: number): string {
  return `call_${message}_${call}`;
}

/**
 * An /api/chat conversation as the engine's messages (the same as /v1/'s): an assistant turn's calls with ids
 * ({@link ollamaToolCallId}) and their arguments as JSON text; a tool turn's `tool_name` as `name`, and as
 * `tool_call_id` the id of the call it answers: the first call of the latest assistant turn not yet answered
 * whose function has that name (any, without a name); none when no such call is left.
 */
export function chatMessagesOfOllama(messages: readonly OllamaChatMessage[]): ChatMessage[] {
  let unanswered: { id: string; name: string }[] = [];
  return messages.map((message, messageIndex): ChatMessage => {
    const base = { role: message.role, content: message.content };
    if (message.role === "assistant" && message.tool_calls && message.tool_calls.length > 0) {
      const toolCalls = message.tool_calls.map((call, callIndex) => ({
        id: ollamaToolCallId(messageIndex, callIndex),
        type: "function" as const,
        function: { name: call.function.name, arguments: JSON.stringify(call.function.arguments ?? {}) },
      }));
      unanswered = toolCalls.map((call) => ({ id: call.id, name: call.function.name }));
      return { ...base, tool_calls: toolCalls };
    }
    if (message.role !== "tool") return base;
    const name = message.tool_name || undefined;
    const answered = unanswered.findIndex((call) => name === undefined || call.name === name);
    const call = answered === -1 ? undefined : unanswered.splice(answered, 1)[0];
    return {
      ...base,
      ...(call ? { tool_call_id: call.id } : {}),
      ...(name === undefined ? {} : { name }),
    };
  });
}

/** A call's arguments text as the object it encodes; undefined when it is not one JSON object. */
function argumentsObjectOf(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** A call whose arguments are no object, as text in the model's format (up to where its arguments end). */
function callTextOf(format: ToolCallFormat, name: string, argumentsText: string): string {
  const head = `{"name": ${JSON.stringify(name)}, "${format === "hermes" ? "arguments" : "parameters"}": `;
  return `${format === "hermes" ? `${hermesToolCallTags.open}\n` : ""}${head}${argumentsText}`;
}

/** Parameters of {@link createOllamaToolStream}. */
export type CreateOllamaToolStreamParameters = {
  format: ToolCallFormat;
  /** Content text that became safe to show. */
  onContent: (text: string) => void;
  /** A whole call, once its arguments are complete (content before it has gone to onContent first). */
  onToolCall: (call: OllamaToolCall) => void;
};

/**
 * Streams an answer's text as content and whole tool calls in Ollama's shape. A call whose arguments are not one
 * JSON object (the model wrote something else, or `num_predict` cut it) is no call: it goes to onContent as text,
 * in the model's format. `finish` says how many calls were made.
 */
export function createOllamaToolStream(parameters: CreateOllamaToolStreamParameters) {
  const { format, onContent, onToolCall } = parameters;
  let open: { name: string; text: string } | undefined;
  let calls = 0;
  /** The open call ended without arguments that are an object: it is text. */
  const settle = () => {
    if (open) onContent(callTextOf(format, open.name, open.text));
    open = undefined;
  };
  const stream = createToolAnswerStream({
    format,
    onContent: (text) => {
      settle();
      onContent(text);
    },
    onToolCall: (delta) => {
      if ("id" in delta) {
        settle();
        open = { name: delta.function.name, text: "" };
        return;
      }
      if (!open) return;
      open.text += delta.function.arguments;
      // An object's arguments end with its closing brace: only then can they parse.
      if (!delta.function.arguments.includes("}")) return;
      const value = argumentsObjectOf(open.text);
      if (!value) return;
      onToolCall({ function: { index: calls++, name: open.name, arguments: value } });
      open = undefined;
    },
  });
  return {
    push: (text: string) => stream.push(text),
    finish: () => {
      stream.finish();
      settle();
      return { toolCalls: calls };
    },
  };
}

/** A whole answer's content and tool calls in Ollama's shape (the stream, fed at once: streamed answers add up to it). */
export function ollamaToolAnswerOf(parameters: { format: ToolCallFormat; text: string }): {
  content: string;
  toolCalls: OllamaToolCall[];
} {
  let content = "";
  const toolCalls: OllamaToolCall[] = [];
  const stream = createOllamaToolStream({
    format: parameters.format,
    onContent: (text) => {
      content += text;
    },
    onToolCall: (call) => toolCalls.push(call),
  });
  stream.push(parameters.text);
  stream.finish();
  return { content, toolCalls };
}
