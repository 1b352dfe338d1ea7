/**
 * Tool calls in OpenAI's answer shapes: the message of a whole answer (`content`, `tool_calls`), the stream's
 * deltas (content until a call starts, then each call's id and name, then its argument fragments), and the
 * finish reason ("tool_calls" when calls were made and the model ended them itself).
 */
import {
  createToolCallParser,
  enforceableTools,
  parseToolCalls,
  type ToolCall,
  type ToolCallEvent,
  type ToolCallFormat,
  toolsOfChoice,
} from "../engine/index.ts";
import { InvalidInputError } from "../errors/index.ts";
import type { RequestConstraints, WireTool } from "../protocol/index.ts";
import type { ApiModelInfo } from "./backend.ts";

/** The tool fields of a chat request, as the API schema reads them. */
export type ToolRequestFields = {
  tools?: WireTool[] | null;
  tool_choice?: RequestConstraints["toolChoice"] | null;
  parallel_tool_calls?: boolean | null;
  response_format?: { type: string } | null;
};

/**
 * A chat request's tools checked against the model (400 naming what is wrong): the constraints to send, and the
 * format the answer's tool calls are parsed from (undefined: no tools in play, the answer is text).
 * With tool_choice "none" the tools are still shown to the model (as llama.cpp's server does) but nothing is
 * parsed; "required" and a named function are enforced by a grammar.
 */
export function toolRequestOf(parameters: { body: ToolRequestFields; model: ApiModelInfo }): {
  constraints: Pick<RequestConstraints, "tools" | "toolChoice" | "parallelToolCalls">;
  format: ToolCallFormat | undefined;
} {
  const { body, model } = parameters;
  const tools = body.tools ?? [];
  const choice = body.tool_choice ?? undefined;
  if (tools.length === 0) {
    if (choice !== undefined && choice !== "none" && choice !== "auto")
      throw new InvalidInputError("tool_choice asks for a tool call, but the request has no tools", {
        param: "tool_choice",
        code: "invalid_value",
        hint: 'send the tools, or leave tool_choice out ("auto")',
      });
    return { constraints: {}, format: undefined };
  }
  if (choice === "none") return { constraints: { tools, toolChoice: "none" }, format: undefined };
  const format = model.toolCallFormat;
  if (!format)
    throw new InvalidInputError(
      `model '${model.name}' cannot call tools: its chat template has no known tool-call format`,
      {
        param: "tools",
        code: "invalid_value",
        hint: "use a model whose template writes <tool_call> blocks (ChatML/Hermes/Qwen) or Llama 3.1's JSON calls, or leave tools out",
      },
    );
  toolsOfChoice(tools, choice);
  if (body.response_format && body.response_format.type !== "text")
    throw new InvalidInputError(
      'response_format cannot be combined with tools unless tool_choice is "none"',
      {
        param: "response_format",
        code: "invalid_value",
        hint: 'drop response_format, or set tool_choice to "none"',
      },
    );
  // A schema no grammar enforces is refused here, before any provider is asked.
  if (choice !== undefined && choice !== "auto") enforceableTools(tools);
  return {
    constraints: {
      tools,
      ...(choice === undefined ? {} : { toolChoice: choice }),
      ...(body.parallel_tool_calls === false ? { parallelToolCalls: false } : {}),
    },
    format,
  };
}

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
