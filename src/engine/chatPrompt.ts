/**
 * Chat prompts: the model's Jinja chat template rendered with the real OpenAI-style messages (as Hugging Face
 * renders it), split at the special tokens the template placed, so that the whole prompt tokenizes as llama.cpp
 * tokenizes a string with special tokens, while special-token strings a user typed stay text.
 */
import { Template } from "@huggingface/jinja";
import { InvalidInputError } from "../errors/index.ts";

/** A tool call of an earlier assistant turn, as OpenAI writes it (`arguments`: the JSON text the model wrote). */
export type ChatToolCall = { id: string; type: "function"; function: { name: string; arguments: string } };

/**
 * One chat message as the engine takes it (content already flattened to text): an assistant turn may carry the
 * tool calls it made, a `tool` turn the id of the call it answers (`tool_call_id`) and the function's `name`.
 */
export type ChatMessage = {
  role: string;
  content: string;
  tool_calls?: ChatToolCall[];
  tool_call_id?: string;
  name?: string;
};

/**
 * A message as templates see it: tool calls' arguments as the object they encode when they are JSON (as
 * Hugging Face and llama.cpp hand them to templates, which write them with `tojson`), else as the text.
 */
function templateMessageOf(message: ChatMessage): Record<string, unknown> {
  const argumentsOf = (text: string): unknown => {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  };
  return {
    role: message.role,
    content: message.content,
    ...(message.tool_calls === undefined
      ? {}
      : {
          tool_calls: message.tool_calls.map((call) => ({
            id: call.id,
            type: call.type,
            function: { name: call.function.name, arguments: argumentsOf(call.function.arguments) },
          })),
        }),
    ...(message.tool_call_id === undefined ? {} : { tool_call_id: message.tool_call_id }),
    ...(message.name === undefined ? {} : { name: message.name }),
  };
}

/**
 * A token whose text llama.cpp recognises in a prompt only when special tokens are parsed (a control or unknown
 * token). `lstrip`/`rstrip`: the whitespace before/after it is dropped, as llama.cpp does for such tokens.
 */
export type SpecialToken = { id: number; text: string; lstrip?: boolean; rstrip?: boolean };

/** A piece of the rendered prompt: text to tokenize without special-token parsing, or a special token's id. */
export type PromptSegment = { text: string } | { token: number };

/** A rendered prompt: the whole text (what the template renders) and its segments in order. */
export type RenderedChatPrompt = { text: string; segments: PromptSegment[] };

/** Used when a model carries no chat template (as llama.cpp's server does). */
export const fallbackChatTemplate =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const templateCache = new Map<string, Template>();
/** Sentinels come from the top of Supplementary Private Use Area-B, skipping any code point the input uses. */
const highestSentinel = 0x10fffd;
const utf8 = new TextEncoder();

function templateOf(source: string): Template {
  let template = templateCache.get(source);
  if (!template) {
    template = new Template(source);
    templateCache.set(source, template);
  }
  return template;
}

function escapeRegExp(text: string) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Special tokens longest first (by UTF-8 bytes, as llama.cpp orders them), then by id; empty texts dropped. */
function orderSpecials(specials: readonly SpecialToken[]): SpecialToken[] {
  return specials
    .filter((special) => special.text.length > 0)
    .map((special) => ({ special, bytes: utf8.encode(special.text).length }))
    .sort((a, b) => b.bytes - a.bytes || a.special.id - b.special.id)
    .map((entry) => entry.special);
}

/** Every string inside a JSON-like value (message fields, tools), mapped. */
function mapStrings(value: unknown, map: (text: string) => string): unknown {
  if (typeof value === "string") return map(value);
  if (Array.isArray(value)) return value.map((item) => mapStrings(item, map));
  if (value !== null && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, mapStrings(item, map)]));
  return value;
}

/**
 * Replaces each special-token string in user-supplied strings by a private-use sentinel character (one per
 * distinct string), so the rendered template holds special-token strings only where the template put them.
 */
export function createSentinels(parameters: {
  specials: readonly SpecialToken[];
  /** Every string the user supplied, and the template source: sentinels avoid the code points they use. */
  inputs: readonly string[];
}) {
  const ordered = orderSpecials(parameters.specials);
  const pattern =
    ordered.length === 0 ? undefined : new RegExp(ordered.map((s) => escapeRegExp(s.text)).join("|"), "g");
  const used = new Set<number>();
  for (const input of parameters.inputs)
    for (const match of input.matchAll(/[\u{100000}-\u{10FFFD}]/gu)) used.add(match[0].codePointAt(0) ?? 0);
  const sentinelOf = new Map<string, string>();
  const textOf = new Map<string, string>();
  let next = highestSentinel;
  const sentinelFor = (text: string) => {
    let sentinel = sentinelOf.get(text);
    if (sentinel === undefined) {
      while (used.has(next)) next--;
      sentinel = String.fromCodePoint(next--);
      sentinelOf.set(text, sentinel);
      textOf.set(sentinel, text);
    }
    return sentinel;
  };
  return {
    /** The string with every special-token string replaced by its sentinel. */
    protect: (text: string) => (pattern ? text.replace(pattern, sentinelFor) : text),
    /** The string with every sentinel back to the special-token string it stands for. */
    restore: (text: string) => {
      if (textOf.size === 0) return text;
      let restored = "";
      for (const character of text) restored += textOf.get(character) ?? character;
      return restored;
    },
  };
}

const isSpace = (character: string | undefined) =>
  character === " " ||
  character === "\t" ||
  character === "\n" ||
  character === "\v" ||
  character === "\f" ||
  character === "\r";

type Fragment = { text: string } | { token: number };

/**
 * Splits text at every occurrence of the special tokens' strings, as llama.cpp's tokenizer partitions a prompt
 * when it parses special tokens: longest strings first, with `lstrip`/`rstrip` dropping adjacent whitespace.
 */
export function splitAtSpecialTokens(text: string, specials: readonly SpecialToken[]): PromptSegment[] {
  let fragments: Fragment[] = [{ text }];
  for (const special of orderSpecials(specials)) {
    const next: Fragment[] = [];
    for (const fragment of fragments) {
      if (!("text" in fragment)) {
        next.push(fragment);
        continue;
      }
      let rest = fragment.text;
      let at = rest.indexOf(special.text);
      while (at !== -1) {
        let left = rest.slice(0, at);
        if (special.lstrip) while (isSpace(left.at(-1))) left = left.slice(0, -1);
        if (left) next.push({ text: left });
        next.push({ token: special.id });
        rest = rest.slice(at + special.text.length);
        if (special.rstrip) while (isSpace(rest[0])) rest = rest.slice(1);
        at = rest.indexOf(special.text);
      }
      if (rest) next.push({ text: rest });
    }
    fragments = next;
  }
  return fragments;
}

/** Parameters of {@link renderChatPrompt}. */
export type RenderChatPromptParameters = {
  template: string | undefined;
  messages: readonly ChatMessage[];
  /** OpenAI-style tool definitions, handed to the template as `tools` (as Hugging Face does) when present. */
  tools?: readonly unknown[];
  bosToken?: string;
  eosToken?: string;
  /** The model's control and unknown tokens: recognised where the template writes them, never in user text. */
  specialTokens?: readonly SpecialToken[];
};

/**
 * Renders the chat template once with the real messages (so filters such as `| trim` see the real text) and
 * `add_generation_prompt`, and splits the result at the special tokens the template placed. Special-token
 * strings inside messages or tools are carried through the template as sentinels and come back as text.
 */
export function renderChatPrompt(parameters: RenderChatPromptParameters): RenderedChatPrompt {
  const source = parameters.template ?? fallbackChatTemplate;
  const template = templateOf(source);
  const specials = parameters.specialTokens ?? [];
  const userStrings: string[] = [];
  mapStrings([parameters.messages, parameters.tools ?? []], (text) => {
    userStrings.push(text);
    return text;
  });
  const sentinels = createSentinels({ specials, inputs: [...userStrings, source] });
  const messages = mapStrings(parameters.messages.map(templateMessageOf), sentinels.protect);
  const tools =
    parameters.tools && parameters.tools.length > 0
      ? mapStrings(parameters.tools, sentinels.protect)
      : undefined;
  let rendered: string;
  try {
    rendered = template.render({
      messages,
      ...(tools === undefined ? {} : { tools }),
      add_generation_prompt: true,
      bos_token: parameters.bosToken ?? "",
      eos_token: parameters.eosToken ?? "",
    });
  } catch (cause) {
    throw new InvalidInputError("the model's chat template rejected these messages", {
      param: "messages",
      details: cause instanceof Error ? cause.message : String(cause),
      hint: "check the roles and their order (many templates want system?, then user/assistant turns)",
      cause,
    });
  }
  const segments = splitAtSpecialTokens(rendered, specials).map((segment) =>
    "text" in segment ? { text: sentinels.restore(segment.text) } : segment,
  );
  return { text: sentinels.restore(rendered), segments };
}

const legacyMarker = "\u{F8FF}";
const legacyMarkerPattern = new RegExp(`${legacyMarker}mycel-content-(\\d+)${legacyMarker}`, "g");

/**
 * The prompt as Mycel built it before whole-prompt tokenization: the template rendered with placeholders,
 * template text tokenized with special tokens and each message content on its own without. Validators still
 * accept prompts built this way (receipts made before the change stay auditable); providers no longer make them.
 */
export function renderLegacyChatPrompt(
  parameters: Omit<RenderChatPromptParameters, "tools" | "specialTokens">,
): { text: string; special: boolean }[] {
  const template = templateOf(parameters.template ?? fallbackChatTemplate);
  let rendered: string;
  try {
    rendered = template.render({
      messages: parameters.messages.map((message, index) => ({
        role: message.role,
        content: `${legacyMarker}mycel-content-${index}${legacyMarker}`,
      })),
      add_generation_prompt: true,
      bos_token: parameters.bosToken ?? "",
      eos_token: parameters.eosToken ?? "",
    });
  } catch {
    return [];
  }
  const segments: { text: string; special: boolean }[] = [];
  let last = 0;
  for (const match of rendered.matchAll(legacyMarkerPattern)) {
    const index = Number(match[1]);
    if (match.index > last) segments.push({ text: rendered.slice(last, match.index), special: true });
    const content = parameters.messages[index]?.content ?? "";
    if (content) segments.push({ text: content, special: false });
    last = match.index + match[0].length;
  }
  if (last < rendered.length) segments.push({ text: rendered.slice(last), special: true });
  return segments;
}
