/** The local half of `mycel model info`: a model file's tokenizer and chat templates, from its GGUF metadata. */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { ModelNotFoundError } from "../errors/index.ts";
import type { ModelReport, SpecialToken } from "../model/index.ts";
import type { ChainFlags } from "./options.ts";

/** A model file found on this machine: in the store (name and hash known) or at a path. */
export type LocalModel = { path: string; name?: string; hash?: string; report: ModelReport };

/** How many control tokens the text output lists (`--json` lists them all). */
const shownControlTokens = 20;

/** Finds a model in the store (name, hash or prefix), else a GGUF file at that path; undefined if neither. */
export async function findLocalModel(parameters: {
  home: string;
  query: string;
}): Promise<LocalModel | undefined> {
  const { openModelStore, readModelReport } = await import("../model/index.ts");
  const store = openModelStore({ home: parameters.home });
  try {
    const record = await store.resolve(parameters.query);
    const path = store.pathOf(record.hash);
    return { path, name: record.name, hash: record.hash, report: await readModelReport(path) };
  } catch (error) {
    if (!(error instanceof ModelNotFoundError)) throw error;
  }
  if (!existsSync(parameters.query) || !statSync(parameters.query).isFile()) return undefined;
  const path = resolve(parameters.query);
  return { path, report: await readModelReport(path) };
}

/** The sha256 of a file, streamed (a model's identity). */
export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Whether the user pointed at a chain: flags, environment, or a deployments file in MYCEL_HOME. */
export function isChainConfigured(parameters: { home: string; flags: ChainFlags }): boolean {
  return Boolean(
    parameters.flags.rpcUrl ||
      parameters.flags.deployments ||
      process.env.MYCEL_RPC_URL ||
      process.env.MYCEL_DEPLOYMENTS ||
      existsSync(resolve(parameters.home, "deployments.json")),
  );
}

/** A token's text as printed: bare when it is plain visible ASCII, else as a JSON string. */
function tokenText(text: string) {
  return /^[\x21-\x7e]+$/.test(text) ? text : JSON.stringify(text);
}

function yesNo(value: boolean | undefined) {
  return value === undefined ? "unset" : value ? "yes" : "no";
}

function listTokens(tokens: readonly SpecialToken[]) {
  return tokens.map((token) => `${token.role} ${token.id} ${tokenText(token.text)}`).join(", ");
}

/** The report's lines, at most a screenful (the first control tokens, then how many more). */
export function formatModelReport(model: LocalModel): string[] {
  const { report } = model;
  const lines = [
    model.name ? `${model.name}  sha256:${model.hash}` : model.path,
    `  file:          ${model.path}`,
    `  architecture:  ${report.architecture}`,
    `  tokenizer:     ${report.tokenizerModel}${report.preTokenizer ? ` (pre-tokenizer ${report.preTokenizer})` : ""}`,
    `  vocabulary:    ${report.vocabularySize.toLocaleString("en-US")} tokens, ${report.mergeCount.toLocaleString("en-US")} merges`,
    `  add bos/eos:   ${yesNo(report.addBos)} / ${yesNo(report.addEos)}`,
    `  special:       ${report.specialTokens.length ? listTokens(report.specialTokens) : "none named"}`,
    `  control:       ${report.controlTokens.length} token(s)`,
  ];
  for (const token of report.controlTokens.slice(0, shownControlTokens))
    lines.push(
      `    ${String(token.id).padStart(7)}  ${tokenText(token.text)}${token.role === "control" ? "" : `  (${token.role})`}`,
    );
  if (report.controlTokens.length > shownControlTokens)
    lines.push(`    ... and ${report.controlTokens.length - shownControlTokens} more (--json lists all)`);
  if (report.chatTemplates.length === 0)
    lines.push("  chat template: none (llama.cpp's server would use ChatML)");
  for (const template of report.chatTemplates)
    lines.push(
      `  chat template: ${template.name === "default" ? "" : `${template.name}: `}${template.family}, sha256 ${template.sha256.slice(0, 16)}, tools: ${template.supportsTools ? "yes" : "no"}`,
    );
  return lines;
}
