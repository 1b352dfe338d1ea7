/**
 * Tool calls (OpenAI function calling) in a model's own format: which format a chat template uses, and a parser,
 * whole or streamed, from generated text to OpenAI's `tool_calls` and the text around them. Pure: no I/O.
 *
 * Formats:
 * - `hermes` (ChatML, Hermes 2/3, Qwen 2.5): each call a `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`
 *   block, any number of them, with text before and after;
 * - `llama3-json` (Llama 3.1/3.2 with custom tools): the whole answer is one bare JSON object
 *   `{"name": ..., "parameters": {...}}`.
 *
 * A block is a call once its text begins `{"name": "<a JSON string>", "arguments": ` (or `"parameters"`); from
 * there the arguments are the raw text of the JSON value that follows, as generated (OpenAI's `arguments` is a
 * string the model wrote, not always valid JSON). A block that does not begin so stays text. Streamed and whole
 * parsing are one state machine, so a streamed answer always adds up to the whole one.
 */
import { randomBytes } from "node:crypto";

/** A chat template's tool-call format (see the file comment), or none known. */
export type ToolCallFormat = "hermes" | "llama3-json";

/** An OpenAI tool definition (`tools[i]` of a chat request). */
export type ToolDefinition = {
  type: "function";
  function: {
    name: string;
    description?: string;
    parameters?: Record<string, unknown>;
    strict?: boolean | null;
  };
};

/** An OpenAI tool call of an answer (`message.tool_calls[i]`). */
export type ToolCall = { id: string; type: "function"; function: { name: string; arguments: string } };

/** What the stream parser found in the text pushed so far, in order. */
export type ToolCallEvent =
  | { type: "content"; text: string }
  | { type: "call"; index: number; id: string; name: string }
  | { type: "arguments"; index: number; text: string };

/** The opening and closing tags of the `hermes` format. */
export const hermesToolCallTags = { open: "<tool_call>", close: "</tool_call>" } as const;

/** The tool-call format a chat template uses, from its text; undefined when Mycel knows none in it. */
export function toolCallFormatOf(template: string | undefined): ToolCallFormat | undefined {
  if (!template) return undefined;
  if (template.includes(hermesToolCallTags.open)) return "hermes";
  // Llama 3.1/3.2/3.3's templates ask for custom tool calls in these words.
  if (template.includes('"parameters": dictionary of argument name and its value')) return "llama3-json";
  return undefined;
}

/** A new tool call id, as OpenAI spells them: `call_` and 24 random characters. */
export function newToolCallId(): string {
  return `call_${randomBytes(12).toString("hex")}`;
}

const isSpace = (character: string) =>
  character === " " || character === "\n" || character === "\t" || character === "\r";

/**
 * Matches `{ "name" : "<string>" , "arguments"|"parameters" :` (whitespace anywhere between) one character at a
 * time: "more" while it may still match, "failed" once it cannot, "matched" at the colon (the name decoded).
 */
function createCallHeadMatcher() {
  const steps = ["{", '"name"', ":", "string", ",", "key", ":"] as const;
  const keys = ['"arguments"', '"parameters"'];
  let step = 0;
  /** The characters of the current step's token so far (whitespace is allowed only between tokens). */
  let partial = "";
  let escaped = false;
  let name = "";
  const advance = () => {
    partial = "";
    step++;
    return step === steps.length ? { matched: name } : ("more" as const);
  };
  return {
    push(character: string): "more" | "failed" | { matched: string } {
      const want = steps[step];
      if (want === undefined) return "failed";
      if (partial === "" && isSpace(character)) return "more";
      partial += character;
      if (want === "string") {
        if (partial === '"') return "more";
        if (!partial.startsWith('"') || character < " ") return "failed";
        if (escaped) escaped = false;
        else if (character === "\\") escaped = true;
        else if (character === '"') {
          try {
            name = JSON.parse(partial) as string;
          } catch {
            return "failed";
          }
          return advance();
        }
        return "more";
      }
      const candidates = want === "key" ? keys : [want];
      if (candidates.includes(partial)) return advance();
      return candidates.some((candidate) => candidate.startsWith(partial)) ? "more" : "failed";
    },
  };
}

/**
 * Scans one JSON value one character at a time (strings, nesting): "in" while the character belongs to it, "end"
 * when the value ended just before this character (a number or literal), "last" when this character ends it.
 */
function createJsonValueScanner() {
  let started = false;
  let depth = 0;
  let inString = false;
  let escaped = false;
  let primitive = false;
  return {
    /** Whether the value's first character has come (whitespace before it is not part of it). */
    started: () => started,
    /** Whether `<` here is outside any string (so it cannot be part of valid JSON). */
    outsideString: () => !inString,
    push(character: string): "in" | "end" | "last" {
      if (!started) {
        started = true;
        if (character === '"') inString = true;
        else if (character === "{" || character === "[") depth = 1;
        else primitive = true;
        return "in";
      }
      if (primitive) return /[\s,}\]]/.test(character) ? "end" : "in";
      if (inString) {
        if (escaped) escaped = false;
        else if (character === "\\") escaped = true;
        else if (character === '"') {
          inString = false;
          if (depth === 0) return "last";
        }
        return "in";
      }
      if (character === '"') inString = true;
      else if (character === "{" || character === "[") depth++;
      else if (character === "}" || character === "]") {
        depth--;
        if (depth === 0) return "last";
      }
      return "in";
    },
  };
}

/** The longest end of `text` that is a proper beginning of `tag` (held back: a tag may be starting). */
function partialTagAtEnd(text: string, tag: string): number {
  for (let length = Math.min(tag.length - 1, text.length); length > 0; length--)
    if (tag.startsWith(text.slice(text.length - length))) return length;
  return 0;
}

/** Parameters of {@link createToolCallParser}. */
export type CreateToolCallParserParameters = {
  format: ToolCallFormat;
  /** Makes each call's id (default {@link newToolCallId}). */
  newId?: () => string;
};

/** A streaming tool-call parser: push text as it comes, then finish. */
export type ToolCallParser = {
  /** The events the new text completes (content is held back while it may start a call). */
  push(text: string): ToolCallEvent[];
  /** The events of what was held back; whether the last call was cut before its arguments ended. */
  finish(): { events: ToolCallEvent[]; truncated: boolean };
};

/**
 * Creates a streaming parser of a model's tool calls. Whitespace right before and after a call block is dropped
 * (it separates blocks); a partial `<tool_call>` at the end of the text so far is held back until it is decided.
 */
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: one state machine (content, call head, arguments, after the arguments) over shared buffers
export function createToolCallParser(parameters: CreateToolCallParserParameters): ToolCallParser {
  const newId = parameters.newId ?? newToolCallId;
  const wrapped = parameters.format === "hermes";
  const { open, close } = hermesToolCallTags;
  type State =
    | { phase: "content" }
    | { phase: "head"; text: string; space: string; matcher: ReturnType<typeof createCallHeadMatcher> }
    | { phase: "arguments"; scanner: ReturnType<typeof createJsonValueScanner>; index: number }
    | { phase: "after"; text: string };
  let state: State = { phase: "content" };
  /** Text not yet decided (content that may begin a tag, or arguments text waiting for lookahead). */
  let pending = "";
  /** Whitespace after content, emitted only if more content follows (dropped before a call). */
  let heldSpace = "";
  let afterBlock = false;
  let calls = 0;
  let sawContent = false;
  let events: ToolCallEvent[] = [];

  const emitContent = (text: string) => {
    if (!text) return;
    const last = events.at(-1);
    if (last?.type === "content") last.text += text;
    else events.push({ type: "content", text });
  };
  const emitArguments = (index: number, text: string) => {
    if (!text) return;
    const last = events.at(-1);
    if (last?.type === "arguments" && last.index === index) last.text += text;
    else events.push({ type: "arguments", index, text });
  };
  /** Content text, its trailing whitespace held, whitespace right after a block dropped. */
  const addContent = (text: string) => {
    let rest = text;
    if (afterBlock) {
      rest = rest.replace(/^\s+/, "");
      if (!rest) return;
      afterBlock = false;
    }
    const trimmed = rest.replace(/\s+$/, "");
    if (trimmed) {
      emitContent(heldSpace + trimmed);
      heldSpace = "";
      sawContent = true;
    }
    heldSpace += rest.slice(trimmed.length);
  };
  /** A block begins; the whitespace before it is kept aside, in case the block turns out to be text. */
  const startBlock = () => {
    state = { phase: "head", text: "", space: heldSpace, matcher: createCallHeadMatcher() };
    heldSpace = "";
    afterBlock = false;
  };

  /** Runs the state machine over `pending` as far as it can; false when it needs more text. */
  const step = (final: boolean): boolean => {
    if (state.phase === "content") {
      if (!wrapped) {
        // llama3-json: the answer is a call only if its first non-space character opens an object.
        if (!sawContent && calls === 0) {
          const start = pending.search(/\S/);
          if (start === -1) return false;
          if (pending[start] === "{") {
            pending = pending.slice(start);
            startBlock();
            return true;
          }
        }
        addContent(pending);
        pending = "";
        return false;
      }
      const at = pending.indexOf(open);
      if (at !== -1) {
        addContent(pending.slice(0, at));
        pending = pending.slice(at + open.length);
        startBlock();
        return true;
      }
      const held = final ? 0 : partialTagAtEnd(pending, open);
      addContent(pending.slice(0, pending.length - held));
      pending = pending.slice(pending.length - held);
      return false;
    }
    if (state.phase === "head") {
      for (let position = 0; position < pending.length; position++) {
        const character = pending[position] as string;
        const result = state.matcher.push(character);
        state.text += character;
        if (result === "failed") {
          // Not a call: the block is text, from its tag on (the rest is read again, as content).
          emitContent(state.space + (wrapped ? open : ""));
          sawContent = true;
          pending = state.text + pending.slice(position + 1);
          state = { phase: "content" };
          return true;
        }
        if (result !== "more") {
          const index = calls++;
          events.push({ type: "call", index, id: newId(), name: result.matched });
          pending = pending.slice(position + 1).replace(/^\s+/, "");
          state = { phase: "arguments", scanner: createJsonValueScanner(), index };
          if (!pending && !final) return false;
          return true;
        }
      }
      pending = "";
      return false;
    }
    if (state.phase === "arguments") {
      let taken = 0;
      const { scanner, index } = state;
      if (!scanner.started()) pending = pending.replace(/^\s+/, "");
      while (taken < pending.length) {
        const character = pending[taken] as string;
        // A closing tag outside any string ends arguments the model never closed.
        if (wrapped && character === "<" && scanner.outsideString()) {
          const rest = pending.slice(taken);
          if (rest.startsWith(close)) {
            emitArguments(index, pending.slice(0, taken));
            pending = rest;
            state = { phase: "after", text: "" };
            return true;
          }
          if (close.startsWith(rest) && !final) break;
        }
        const result = scanner.push(character);
        if (result === "end") {
          emitArguments(index, pending.slice(0, taken));
          pending = pending.slice(taken);
          state = { phase: "after", text: "" };
          return true;
        }
        taken++;
        if (result === "last") {
          emitArguments(index, pending.slice(0, taken));
          pending = pending.slice(taken);
          state = { phase: "after", text: "" };
          return true;
        }
      }
      emitArguments(index, pending.slice(0, taken));
      pending = pending.slice(taken);
      return false;
    }
    // After the arguments: the rest of the block (the object's closing brace) up to the closing tag is not shown.
    if (!wrapped) {
      pending = "";
      return false;
    }
    const at = pending.indexOf(close);
    if (at === -1) {
      const held = partialTagAtEnd(pending, close);
      pending = pending.slice(pending.length - held);
      return false;
    }
    pending = pending.slice(at + close.length);
    state = { phase: "content" };
    afterBlock = true;
    return true;
  };

  const run = (final: boolean) => {
    while (step(final)) {
      // each step consumes text or changes state
    }
  };

  return {
    push(text) {
      pending += text;
      run(false);
      const out = events;
      events = [];
      return out;
    },
    finish() {
      run(true);
      let truncated = false;
      if (state.phase === "head") {
        // Cut before the call's head was complete: what was generated is text.
        emitContent(state.space + (wrapped ? open : "") + state.text + pending);
      } else if (state.phase === "arguments") {
        emitArguments(state.index, pending);
        truncated = true;
      } else if (state.phase === "content") {
        addContent(pending);
        if (!afterBlock) emitContent(heldSpace);
      }
      pending = "";
      heldSpace = "";
      state = { phase: "content" };
      const out = events;
      events = [];
      return { events: out, truncated };
    },
  };
}

/** Return type of {@link parseToolCalls}. */
export type ParseToolCallsReturnType = {
  /** The text outside the calls; null when there is none. */
  content: string | null;
  toolCalls: ToolCall[];
  /** The last call was cut before its arguments ended (the answer hit max_tokens). */
  truncated: boolean;
};

/** Folds parser events into OpenAI's message fields. */
export function collectToolCallEvents(events: readonly ToolCallEvent[]): {
  content: string | null;
  toolCalls: ToolCall[];
} {
  let content = "";
  const toolCalls: ToolCall[] = [];
  for (const event of events) {
    if (event.type === "content") content += event.text;
    else if (event.type === "call")
      toolCalls[event.index] = {
        id: event.id,
        type: "function",
        function: { name: event.name, arguments: "" },
      };
    else {
      const call = toolCalls[event.index];
      if (call) call.function.arguments += event.text;
    }
  }
  return { content: content === "" ? null : content, toolCalls };
}

/** Parses a whole answer's text into content and tool calls (the stream parser, fed at once). */
export function parseToolCalls(
  parameters: CreateToolCallParserParameters & { text: string },
): ParseToolCallsReturnType {
  const parser = createToolCallParser(parameters);
  const events = parser.push(parameters.text);
  const finished = parser.finish();
  return { ...collectToolCallEvents([...events, ...finished.events]), truncated: finished.truncated };
}
