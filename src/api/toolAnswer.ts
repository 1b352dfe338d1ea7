/**
 * Tool calls in OpenAI's answer shapes: the message of a whole answer (`content`, `tool_calls`), the stream's
 * deltas (content until a call starts, then each call's id and name, then its argument fragments), and the
 * finish reason ("tool_calls" when calls were made and the model ended them itself).
 */
import {
  createToolCallParser,
  parseToolCalls,
  type ToolCall,
  type ToolCallEvent,
  type ToolCallFormat,
} from "../engine/index.ts";

/** One tool call's part of a stream delta (`choices[0].delta.tool_calls[i]`). */
export type ToolCallDelta =
  | { index: number; id: string; type: "function"; function: { name: string; arguments: string } }
  | { index: number; function: { arguments: string } };

/** The stream delta of a parser event that is not content. */
export function toolCallDeltaOf(event: Exclude<ToolCallEvent, { type: "content" }>): ToolCallDelta {
  if (event.type === "call")
    return {
      index: event.index,
      id: event.id,
      type: "function",
      function: { name: event.name, arguments: "" },
    };
  return { index: event.index, function: { arguments: event.text } };
}

/** OpenAI's finish reason: "tool_calls" when the answer made calls and ended by itself, else the engine's. */
export function finishReasonWithTools(finishReason: string, toolCalls: number): string {
  return finishReason === "stop" && toolCalls > 0 ? "tool_calls" : finishReason;
}

/** The assistant message of a whole answer whose tool calls are parsed. */
export function toolAnswerMessage(parameters: { format: ToolCallFormat; text: string }): {
  content: string | null;
  toolCalls: ToolCall[];
} {
  const { content, toolCalls } = parseToolCalls(parameters);
  return { content, toolCalls };
}

/** Parameters of {@link createToolAnswerStream}. */
export type CreateToolAnswerStreamParameters = {
  format: ToolCallFormat;
  /** Content text that became safe to show. */
  onContent: (text: string) => void;
  /** A tool call's delta (content shown before it has gone to onContent first). */
  onToolCall: (delta: ToolCallDelta) => void;
};

/** Streams an answer's text as content and tool-call deltas; `finish` says how many calls were made. */
export function createToolAnswerStream(parameters: CreateToolAnswerStreamParameters) {
  const parser = createToolCallParser({ format: parameters.format });
  let calls = 0;
  const deliver = (events: readonly ToolCallEvent[]) => {
    for (const event of events) {
      if (event.type === "content") parameters.onContent(event.text);
      else {
        if (event.type === "call") calls++;
        parameters.onToolCall(toolCallDeltaOf(event));
      }
    }
  };
  return {
    push: (text: string) => deliver(parser.push(text)),
    finish: () => {
      deliver(parser.finish().events);
      return { toolCalls: calls };
    },
  };
}
