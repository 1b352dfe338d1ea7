/** What a GGUF file says about its tokenizer and chat template, read from its metadata (no model load). */
import { createHash } from "node:crypto";
import { readGgufInfo } from "./store.ts";

/** One special token: its id, its text, and what it is for (bos, eos, eot, ... or control). */
export type SpecialToken = { id: number; text: string; role: string };

/** A chat template stored in the file: its name, sha256, and whether it renders tools. */
export type ChatTemplateReport = {
  /** `default` for `tokenizer.chat_template`, else the name of `tokenizer.chat_template.<name>`. */
  name: string;
  /** The template's family, guessed from the tokens it writes: chatml, llama3, llama2, gemma, mistral or unknown. */
  family: string;
  sha256: string;
  supportsTools: boolean;
};

/** The tokenizer and chat template report of one GGUF file (`mycel model info`). */
export type ModelReport = {
  architecture: string;
  /** `tokenizer.ggml.model` (gpt2 = byte-level BPE, llama = SentencePiece, ...). */
  tokenizerModel: string;
  /** `tokenizer.ggml.pre`: the pre-tokenizer llama.cpp applies before BPE. */
  preTokenizer: string | undefined;
  vocabularySize: number;
  mergeCount: number;
  addBos: boolean | undefined;
  addEos: boolean | undefined;
  /** bos/eos/eot/eom/pad/unk/sep ids that the metadata names. */
  specialTokens: SpecialToken[];
  /** Every CONTROL or USER_DEFINED token, in id order. */
  controlTokens: SpecialToken[];
  chatTemplates: ChatTemplateReport[];
};

/** llama.cpp's token types that mark a special token: CONTROL and USER_DEFINED. */
const specialTokenTypes = new Set([3, 4]);
const specialIdKeys = ["bos", "eos", "eot", "eom", "padding", "unknown", "seperator", "cls", "mask"];

/** The family of a chat template, from the turn markers it writes. */
export function guessTemplateFamily(template: string): string {
  if (template.includes("<|start_header_id|>")) return "llama3";
  if (template.includes("<|im_start|>")) return "chatml";
  if (template.includes("<start_of_turn>")) return "gemma";
  if (template.includes("[INST]")) return /<<SYS>>/.test(template) ? "llama2" : "mistral";
  return "unknown";
}

/** Whether a chat template renders the request's tools (it reads a variable named `tools`). */
export function templateSupportsTools(template: string): boolean {
  return /\btools\b/.test(template);
}

/** A nested metadata object flattened back to GGUF's dotted keys (arrays stay whole). */
function flatten(value: unknown, prefix: string, into: Map<string, unknown>) {
  if (value !== null && typeof value === "object" && !Array.isArray(value) && !ArrayBuffer.isView(value)) {
    for (const [key, item] of Object.entries(value)) flatten(item, prefix ? `${prefix}.${key}` : key, into);
  } else into.set(prefix, value);
  return into;
}

function templateReport(name: string, template: string): ChatTemplateReport {
  return {
    name,
    family: guessTemplateFamily(template),
    sha256: createHash("sha256").update(template).digest("hex"),
    supportsTools: templateSupportsTools(template),
  };
}

/** Reads a GGUF file's tokenizer and chat template facts; throws InvalidModelFileError when it is not GGUF. */
export async function readModelReport(path: string): Promise<ModelReport> {
  const info = await readGgufInfo(path);
  const keys = flatten(info.metadata, "", new Map());
  const tokens = (keys.get("tokenizer.ggml.tokens") as readonly string[] | undefined) ?? [];
  const tokenTypes = (keys.get("tokenizer.ggml.token_type") as readonly number[] | undefined) ?? [];
  const merges = keys.get("tokenizer.ggml.merges") as readonly string[] | undefined;
  const flag = (key: string) => {
    const value = keys.get(key);
    return typeof value === "boolean" ? value : undefined;
  };
  const specialTokens: SpecialToken[] = [];
  for (const role of specialIdKeys) {
    const id = keys.get(`tokenizer.ggml.${role}_token_id`);
    if (typeof id === "number" && Number.isInteger(id))
      specialTokens.push({ id, text: tokens[id] ?? "?", role: role === "seperator" ? "sep" : role });
  }
  const controlTokens: SpecialToken[] = [];
  tokenTypes.forEach((type, id) => {
    if (specialTokenTypes.has(type))
      controlTokens.push({ id, text: tokens[id] ?? "?", role: type === 3 ? "control" : "user-defined" });
  });
  const chatTemplates: ChatTemplateReport[] = [];
  for (const [key, value] of keys) {
    if (typeof value !== "string") continue;
    if (key === "tokenizer.chat_template") chatTemplates.unshift(templateReport("default", value));
    else if (key.startsWith("tokenizer.chat_template."))
      chatTemplates.push(templateReport(key.slice("tokenizer.chat_template.".length), value));
  }
  return {
    architecture: String(keys.get("general.architecture") ?? "unknown"),
    tokenizerModel: String(keys.get("tokenizer.ggml.model") ?? "unknown"),
    preTokenizer:
      typeof keys.get("tokenizer.ggml.pre") === "string" ? String(keys.get("tokenizer.ggml.pre")) : undefined,
    vocabularySize: tokens.length,
    mergeCount: merges?.length ?? 0,
    addBos: flag("tokenizer.ggml.add_bos_token"),
    addEos: flag("tokenizer.ggml.add_eos_token"),
    specialTokens,
    controlTokens,
    chatTemplates,
  };
}
