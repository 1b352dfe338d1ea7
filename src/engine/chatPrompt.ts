/** Chat prompts: the model's Jinja chat template applied to OpenAI-style messages, tokenized safely. */
import { Template } from "@huggingface/jinja";
import { InvalidInputError } from "../errors/index.ts";

/** One chat message as the engine takes it (content already flattened to text). */
export type ChatMessage = { role: string; content: string };

/** A piece of the rendered prompt; `special` pieces come from the template and may contain special tokens. */
export type PromptSegment = { text: string; special: boolean };

/** Used when a model carries no chat template (as llama.cpp's server does). */
export const fallbackChatTemplate =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const marker = "\u{F8FF}";
const markerPattern = new RegExp(`${marker}mycel-content-(\\d+)${marker}`, "g");
const templateCache = new Map<string, Template>();

/** Parameters of {@link renderChatPrompt}. */
export type RenderChatPromptParameters = {
  template: string | undefined;
  messages: readonly ChatMessage[];
  bosToken?: string;
  eosToken?: string;
};

/**
 * Renders the chat template with `add_generation_prompt`, returning template text and message contents as
 * separate segments, so that special-token strings typed by a user are never parsed as special tokens.
 */
export function renderChatPrompt(parameters: RenderChatPromptParameters): PromptSegment[] {
  const source = parameters.template ?? fallbackChatTemplate;
  let template = templateCache.get(source);
  if (!template) {
    template = new Template(source);
    templateCache.set(source, template);
  }
  const placeholders = parameters.messages.map((message, index) => ({
    role: message.role,
    content: `${marker}mycel-content-${index}${marker}`,
  }));
  let rendered: string;
  try {
    rendered = template.render({
      messages: placeholders,
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
  const segments: PromptSegment[] = [];
  let last = 0;
  for (const match of rendered.matchAll(markerPattern)) {
    const index = Number(match[1]);
    if (match.index > last) segments.push({ text: rendered.slice(last, match.index), special: true });
    const content = parameters.messages[index]?.content ?? "";
    if (content) segments.push({ text: content, special: false });
    last = match.index + match[0].length;
  }
  if (last < rendered.length) segments.push({ text: rendered.slice(last), special: true });
  return segments;
}
