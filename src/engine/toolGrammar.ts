/**
 * Grammars that make a model call tools in its own format (OpenAI's `tool_choice` "required" or a named
 * function), and the check that a call's arguments fit its tool's schema, both from node-llama-cpp's JSON-schema
 * grammars (so what the grammar lets through is what the check accepts).
 */
import type { Llama } from "node-llama-cpp";
import { z } from "zod";
import { InvalidInputError } from "../errors/index.ts";
import { hermesToolCallTags, parseToolCalls, type ToolCallFormat, type ToolDefinition } from "./toolCalls.ts";

/** OpenAI's `tool_choice`. */
export type ToolChoice = "none" | "auto" | "required" | { type: "function"; function: { name: string } };

/** Parameters of {@link buildToolGrammar}. */
export type BuildToolGrammarParameters = {
  llama: Llama;
  format: ToolCallFormat;
  tools: readonly ToolDefinition[];
  toolChoice: ToolChoice | undefined;
  /** OpenAI's `parallel_tool_calls` (default true): false allows exactly one call. */
  parallelToolCalls?: boolean;
};

/** The JSON schema of a tool's arguments: its `parameters`, or no arguments when it has none. */
export function argumentsSchemaOf(tool: ToolDefinition): Record<string, unknown> {
  const parameters = tool.function.parameters;
  if (parameters === undefined || Object.keys(parameters).length === 0)
    return { type: "object", properties: {} };
  return parameters;
}

/** The tools a choice allows: all of them, or the one it names (400 when no tool has that name). */
export function toolsOfChoice(
  tools: readonly ToolDefinition[],
  toolChoice: ToolChoice | undefined,
): readonly ToolDefinition[] {
  if (typeof toolChoice !== "object" || toolChoice === null) return tools;
  const named = tools.filter((tool) => tool.function.name === toolChoice.function.name);
  if (named.length === 0)
    throw new InvalidInputError(
      `tool_choice names function '${toolChoice.function.name}', which is not in tools`,
      {
        param: "tool_choice",
        code: "invalid_value",
        hint: `name one of: ${tools.map((tool) => tool.function.name).join(", ") || "(no tools given)"}`,
      },
    );
  return named;
}

/** node-llama-cpp ends a JSON-schema grammar's root with newlines that stop generation; a tool call goes on. */
const jsonGrammarEnding = /\s*"(?:\\n){4}"\s*\[\\n\]\*\s*$/;

/**
 * Renames every rule a GBNF text defines by prefixing it (references included; string literals, character
 * classes and comments untouched), so that several grammars can share one file.
 */
export function prefixGrammarRules(grammar: string, prefix: string): string {
  const defined = new Set([...grammar.matchAll(/^\s*([A-Za-z0-9_-]+)\s*::=/gm)].map((match) => match[1]));
  // Literals, classes and comments first (kept), then words (renamed when they are rules).
  return grammar.replace(/"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|#[^\n]*|[A-Za-z0-9_-]+/g, (token) =>
    defined.has(token) ? `${prefix}${token}` : token,
  );
}

/** The GBNF of one call object `{"name": "<name>", "<key>": <arguments>}`, its root named `<prefix>root`. */
async function callObjectGrammar(parameters: {
  llama: Llama;
  tool: ToolDefinition;
  key: string;
  prefix: string;
  param: string;
}): Promise<string> {
  const argumentsSchema = argumentsSchemaOf(parameters.tool);
  const { $defs, definitions, ...rest } = argumentsSchema as { $defs?: unknown; definitions?: unknown };
  const schema = {
    type: "object",
    properties: { name: { const: parameters.tool.function.name }, [parameters.key]: rest },
    ...($defs === undefined ? {} : { $defs }),
    ...(definitions === undefined ? {} : { definitions }),
  };
  let text: string;
  try {
    argumentsValidatorOf(parameters.tool);
    // biome-ignore lint/suspicious/noExplicitAny: a client's JSON schema, checked by node-llama-cpp itself
    text = (await parameters.llama.createGrammarForJsonSchema(schema as any)).grammar;
  } catch (cause) {
    throw new InvalidInputError(
      `the parameters schema of tool '${parameters.tool.function.name}' cannot be enforced`,
      {
        param: parameters.param,
        code: "invalid_value",
        details: cause instanceof Error ? cause.message : String(cause),
        hint: "use a JSON schema of objects, arrays, strings, numbers, booleans, enums and consts",
        cause,
      },
    );
  }
  const lines = text.split("\n");
  const rootAt = lines.findIndex((line) => line.startsWith("root ::="));
  const root = lines[rootAt];
  if (root === undefined || !jsonGrammarEnding.test(root))
    throw new Error(
      "node-llama-cpp's JSON-schema grammar has an unexpected shape (no root ending in newlines)",
    );
  lines[rootAt] = root.replace(jsonGrammarEnding, "");
  return prefixGrammarRules(boundJsonNumbers(lines.join("\n")), parameters.prefix);
}

/**
 * node-llama-cpp's number rules allow integers of 16 digits and exponents of 16 (1E8036913363169407 is
 * Infinity, and so `null` once re-serialized): integers here have at most 15 digits and no exponent (always
 * safe integers), and exponents at most 2 digits, so every number the grammar allows is a finite JSON number
 * that a schema check reads as the grammar meant it.
 */
export function boundJsonNumbers(grammar: string): string {
  return grammar
    .replace(/^(integer-number-rule ::= ).*$/m, '$1"-"? ("0" | [1-9] [0-9]{0,14})')
    .replace(
      /^(fractional-number-rule ::= .*)\(\[eE\] \[-\+\]\? \("0" \| \[1-9\] \[0-9\]\{0,15\}\)\)\?$/m,
      "$1([eE] [-+]? [0-9]{1,2})?",
    );
}

/** A GBNF string literal of `text`. */
function gbnfLiteral(text: string): string {
  return JSON.stringify(text);
}

/**
 * The GBNF that forces tool calls in the model's format, for `tool_choice` "required" (one or more calls of any
 * tool; exactly one when `parallel_tool_calls` is false) or a named function (exactly one call of it). Undefined
 * for "auto" and "none": the model answers freely. Throws InvalidInputError (400) for a schema it cannot enforce.
 */
export async function buildToolGrammar(parameters: BuildToolGrammarParameters): Promise<string | undefined> {
  const { toolChoice } = parameters;
  if (toolChoice === undefined || toolChoice === "auto" || toolChoice === "none") return undefined;
  const chosen = toolsOfChoice(parameters.tools, toolChoice);
  if (chosen.length === 0)
    throw new InvalidInputError('tool_choice "required" needs at least one tool', {
      param: "tools",
      code: "invalid_value",
    });
  const key = parameters.format === "llama3-json" ? "parameters" : "arguments";
  const objects: string[] = [];
  for (const [index, tool] of chosen.entries()) {
    const param = `tools[${parameters.tools.indexOf(tool)}].function.parameters`;
    objects.push(
      await callObjectGrammar({ llama: parameters.llama, tool, key, prefix: `tool${index}-`, param }),
    );
  }
  const anyCall = chosen.map((_, index) => `tool${index}-root`).join(" | ");
  const one = typeof toolChoice === "object" || parameters.parallelToolCalls === false;
  const head =
    parameters.format === "hermes"
      ? [
          one ? "root ::= tool-call" : `root ::= tool-call (${gbnfLiteral("\n")} tool-call)*`,
          `tool-call ::= ${gbnfLiteral(`${hermesToolCallTags.open}\n`)} (${anyCall}) ${gbnfLiteral(`\n${hermesToolCallTags.close}`)}`,
        ]
      : // Llama 3.1's format has one call, the whole answer.
        [`root ::= ${anyCall}`];
  return [...head, ...objects].join("\n");
}

/** Return type of {@link checkToolArguments}. */
export type CheckToolArgumentsReturnType = { valid: true; value: unknown } | { valid: false; reason: string };

const argumentValidators = new Map<string, z.ZodType>();

/** The validator of a tool's arguments (JSON Schema as JSON Schema reads it: zod's converter); cached. */
function argumentsValidatorOf(tool: ToolDefinition): z.ZodType {
  const key = JSON.stringify(argumentsSchemaOf(tool));
  let validator = argumentValidators.get(key);
  if (!validator) {
    validator = z.fromJSONSchema(argumentsSchemaOf(tool) as Parameters<typeof z.fromJSONSchema>[0]);
    if (argumentValidators.size >= 256) argumentValidators.clear();
    argumentValidators.set(key, validator);
  }
  return validator;
}

/**
 * Whether a call's arguments (the JSON text the model wrote) parse and validate against the tool's parameters
 * schema (standard JSON Schema: the grammar of {@link buildToolGrammar} allows only arguments that do).
 */
export function checkToolArguments(parameters: {
  tool: ToolDefinition;
  arguments: string;
}): CheckToolArgumentsReturnType {
  let value: unknown;
  try {
    value = JSON.parse(parameters.arguments);
  } catch (cause) {
    return { valid: false, reason: `the arguments are not JSON: ${(cause as Error).message}` };
  }
  let validator: z.ZodType;
  try {
    validator = argumentsValidatorOf(parameters.tool);
  } catch (cause) {
    return { valid: false, reason: `the tool's schema cannot be read: ${(cause as Error).message}` };
  }
  const result = validator.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue && issue.path.length > 0 ? issue.path.map(String).join(".") : "the arguments";
    return { valid: false, reason: `${where}: ${issue?.message ?? "do not fit the tool's schema"}` };
  }
  return { valid: true, value };
}

/** A compiled tool-call constraint: the grammar llama.cpp enforces, and the check of a finished answer's text. */
export type ToolConstraint = {
  /** GBNF, root rule `root`. */
  gbnf: string;
  /** Why a finished (not cut) answer's text breaks the constraint, or undefined when it keeps it. */
  violation(text: string): string | undefined;
};

/**
 * The constraint of a request's tools (undefined for "auto", "none" or no tools): its grammar, and the check that
 * the answer is only calls (at least one; exactly one for a named function or `parallel_tool_calls: false`), each
 * of a tool the choice allows, with arguments that validate against that tool's schema.
 */
export async function toolConstraintOf(
  parameters: BuildToolGrammarParameters,
): Promise<ToolConstraint | undefined> {
  const gbnf = await buildToolGrammar(parameters);
  if (gbnf === undefined) return undefined;
  const allowed = toolsOfChoice(parameters.tools, parameters.toolChoice);
  const one = typeof parameters.toolChoice === "object" || parameters.parallelToolCalls === false;
  return {
    gbnf,
    violation(text) {
      const parsed = parseToolCalls({ format: parameters.format, text, newId: () => "" });
      if (parsed.content !== null)
        return `the answer has text outside tool calls: ${parsed.content.slice(0, 80)}`;
      if (parsed.toolCalls.length === 0) return "the answer calls no tool";
      if (one && parsed.toolCalls.length > 1)
        return `the answer makes ${parsed.toolCalls.length} calls, not one`;
      for (const [index, call] of parsed.toolCalls.entries()) {
        const tool = allowed.find((candidate) => candidate.function.name === call.function.name);
        if (!tool) return `tool call ${index} names '${call.function.name}', which the request did not allow`;
        const checked = checkToolArguments({ tool, arguments: call.function.arguments });
        if (!checked.valid) return `tool call ${index} (${call.function.name}): ${checked.reason}`;
      }
      return undefined;
    },
  };
}
