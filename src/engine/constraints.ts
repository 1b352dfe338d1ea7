/**
 * Output constraints: the grammar (GBNF) a response format asks for, enforced by llama.cpp while generating and
 * checked again by audits, and the check of a finished answer's text against it.
 */
import type { Llama, LlamaGrammar } from "node-llama-cpp";
import { InvalidInputError } from "../errors/index.ts";
import { getSharedLlama } from "./engine.ts";
import { type ToolDefinition, toolCallFormatOf } from "./toolCalls.ts";
import { argumentsSchemaOf, boundJsonNumbers, type ToolChoice, toolConstraintOf } from "./toolGrammar.ts";

/** `response_format` as the API and the wire carry it ("text", the default, is no format at all). */
export type OutputFormat =
  | { type: "json_object" }
  | {
      type: "json_schema";
      json_schema: { name: string; description?: string; schema: Record<string, unknown>; strict?: boolean };
    };

/** A compiled output constraint. */
export type OutputConstraint = {
  /** The grammar llama.cpp enforces token by token (GBNF, root rule `root`). */
  gbnf: string;
  /** Why a finished answer's text breaks the constraint, or undefined when it keeps it. */
  violation(text: string): string | undefined;
};

/** Compiled constraints kept, by their canonical text (a schema is compiled once however often it is asked for). */
const maxCachedConstraints = 64;
const cache = new Map<string, Promise<OutputConstraint>>();

function remember(key: string, make: () => Promise<OutputConstraint>): Promise<OutputConstraint> {
  const known = cache.get(key);
  if (known) {
    cache.delete(key);
    cache.set(key, known);
    return known;
  }
  const made = make();
  made.catch(() => cache.delete(key));
  cache.set(key, made);
  for (const oldest of cache.keys()) {
    if (cache.size <= maxCachedConstraints) break;
    cache.delete(oldest);
  }
  return made;
}

function jsonObjectViolation(text: string): string | undefined {
  try {
    const value: unknown = JSON.parse(text);
    if (value === null || typeof value !== "object" || Array.isArray(value))
      return "the answer is not a JSON object";
    return undefined;
  } catch (error) {
    return `the answer is not valid JSON: ${error instanceof Error ? error.message : String(error)}`;
  }
}

/** JSON Schema keywords a grammar enforces (node-llama-cpp's JSON-schema grammars; `anyOf` is read as `oneOf`). */
const enforcedKeywords = new Set([
  "type",
  "properties",
  "required",
  "additionalProperties",
  "minProperties",
  "maxProperties",
  "items",
  "prefixItems",
  "minItems",
  "maxItems",
  "minLength",
  "maxLength",
  "format",
  "enum",
  "const",
  "oneOf",
  "anyOf",
  "$defs",
  "$ref",
]);
/** Keywords that describe and constrain nothing: dropped. */
const annotationKeywords = new Set([
  "title",
  "description",
  "$schema",
  "$id",
  "examples",
  "default",
  "$comment",
]);
const schemaTypes = new Set(["string", "number", "integer", "boolean", "null", "object", "array"]);
const stringFormats = new Set(["date-time", "time", "date"]);

function unenforceable(path: string, what: string): InvalidInputError {
  return new InvalidInputError(`response_format.json_schema.schema cannot be enforced: ${what} at ${path}`, {
    param: "response_format.json_schema.schema",
    code: "invalid_value",
    hint: "use type, properties, required, additionalProperties, items, prefixItems, enum, const, anyOf/oneOf, $defs/$ref, min/max lengths, items and properties, and the date/time formats (docs/API.md)",
  });
}

/**
 * A JSON schema as node-llama-cpp's grammars take it: annotations dropped, `anyOf` read as `oneOf`. Throws naming
 * the first keyword, type or format no grammar enforces (a schema is never half enforced).
 */
export function enforceableJsonSchema(schema: unknown, path = "$"): unknown {
  if (Array.isArray(schema))
    return schema.map((item, index) => enforceableJsonSchema(item, `${path}[${index}]`));
  if (schema === null || typeof schema !== "object")
    throw unenforceable(path, "a schema that is not an object");
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (annotationKeywords.has(key)) continue;
    if (!enforcedKeywords.has(key)) throw unenforceable(path, `the keyword "${key}"`);
    const where = `${path}.${key}`;
    if (key === "type") {
      const types = Array.isArray(value) ? value : [value];
      const unknownType = types.find((type) => typeof type !== "string" || !schemaTypes.has(type));
      if (unknownType !== undefined || types.length === 0)
        throw unenforceable(where, `the type ${JSON.stringify(unknownType)}`);
      result.type = value;
    } else if (key === "format") {
      if (typeof value !== "string" || !stringFormats.has(value))
        throw unenforceable(where, `the format ${JSON.stringify(value)}`);
      result.format = value;
    } else if (key === "properties" || key === "$defs") {
      if (value === null || typeof value !== "object" || Array.isArray(value))
        throw unenforceable(where, "a value that is not an object");
      result[key] = Object.fromEntries(
        Object.entries(value).map(([name, item]) => [name, enforceableJsonSchema(item, `${where}.${name}`)]),
      );
    } else if (key === "items" || key === "prefixItems" || key === "oneOf" || key === "anyOf") {
      result[key === "anyOf" ? "oneOf" : key] = enforceableJsonSchema(value, where);
    } else if (key === "additionalProperties" && typeof value === "object") {
      result[key] = enforceableJsonSchema(value, where);
    } else result[key] = value;
  }
  return result;
}

/**
 * node-llama-cpp's schema grammars end the root rule with `"\n\n\n\n" [\n]*` (its chat wrappers stop on four
 * newlines). Mycel ends an answer at the end-of-generation token instead: without the tail, the grammar allows only
 * that token once the JSON is complete, so an answer cannot run on in newlines until max_tokens.
 */
function withoutTrailingNewlines(gbnf: string): string {
  return gbnf.replace(/^(root ::= .*?) "\\n\\n\\n\\n" \[\\n\]\*$/m, "$1");
}

async function compileJsonSchema(llama: Llama, schema: Record<string, unknown>): Promise<OutputConstraint> {
  const enforceable = enforceableJsonSchema(schema);
  let grammar: Awaited<ReturnType<Llama["createGrammarForJsonSchema"]>>;
  try {
    grammar = await llama.createGrammarForJsonSchema(enforceable as never);
  } catch (cause) {
    throw new InvalidInputError(
      `response_format.json_schema.schema cannot be enforced: ${cause instanceof Error ? cause.message : String(cause)}`,
      {
        param: "response_format.json_schema.schema",
        code: "invalid_value",
        hint: "use types, properties, required, items, enum, const, anyOf and $defs/$ref (docs/API.md lists what is enforced)",
        cause,
      },
    );
  }
  return {
    // Numbers bounded: node-llama-cpp's rules allow 1E8036913363169407 (Infinity), which no schema check accepts.
    gbnf: boundJsonNumbers(withoutTrailingNewlines(grammar.grammar)),
    violation(text) {
      try {
        grammar.parse(text);
        return undefined;
      } catch (error) {
        return `the answer does not match the JSON schema: ${error instanceof Error ? error.message : String(error)}`;
      }
    },
  };
}

/**
 * The constraint of an output format (undefined for plain text). Same format, same grammar text: the provider
 * that generates and the validator that audits compile it alike. Throws InvalidInputError for a schema the
 * grammar cannot express.
 */
export async function outputConstraintOf(
  format: OutputFormat | undefined,
): Promise<OutputConstraint | undefined> {
  if (!format) return undefined;
  const llama = await getSharedLlama();
  if (format.type === "json_object") {
    return remember("json_object", async () => {
      const grammar: LlamaGrammar = await llama.getGrammarFor("json");
      return { gbnf: grammar.grammar, violation: jsonObjectViolation };
    });
  }
  return remember(`json_schema:${JSON.stringify(format.json_schema.schema)}`, () =>
    compileJsonSchema(llama, format.json_schema.schema),
  );
}

/** Parameters of {@link requestConstraintOf}: a request's output format and tools, and the model's chat template. */
export type RequestConstraintParameters = {
  responseFormat?: OutputFormat;
  tools?: readonly ToolDefinition[];
  toolChoice?: ToolChoice;
  parallelToolCalls?: boolean;
  /** The model's chat template: its tool-call format is the one a tool grammar forces. */
  chatTemplate: string | undefined;
};

/** Whether a request's tools are in play: tools given, and tool_choice is not "none". */
export function toolsInPlay(parameters: Pick<RequestConstraintParameters, "tools" | "toolChoice">): boolean {
  return (parameters.tools?.length ?? 0) > 0 && parameters.toolChoice !== "none";
}

/** The tools with their parameters schemas as grammars take them (refusing what no grammar enforces, naming the tool). */
export function enforceableTools(tools: readonly ToolDefinition[]): ToolDefinition[] {
  return tools.map((tool, index) => {
    try {
      const parameters = enforceableJsonSchema(argumentsSchemaOf(tool)) as Record<string, unknown>;
      return { ...tool, function: { ...tool.function, parameters } };
    } catch (cause) {
      const param = `tools[${index}].function.parameters`;
      throw new InvalidInputError(
        `${param} (${tool.function.name}) cannot be enforced: ${cause instanceof Error ? cause.message.replace(/^.*cannot be enforced: /, "") : String(cause)}`,
        {
          param,
          code: "invalid_value",
          hint: "with tool_choice required or a named function, tools' parameters must be schemas a grammar enforces (docs/API.md)",
          cause,
        },
      );
    }
  });
}

/**
 * The output constraint of a request, the same for the provider that generates and the validator that audits: the
 * tools' grammar when tool_choice is "required" or names a function (in the model's tool-call format), else the
 * response format's (undefined when neither asks for one). Throws InvalidInputError when the model has no known
 * tool-call format, or when forced tool calls and a response format are asked together.
 */
export async function requestConstraintOf(
  parameters: RequestConstraintParameters,
): Promise<OutputConstraint | undefined> {
  const { tools, toolChoice } = parameters;
  if (!tools || !toolsInPlay(parameters)) return outputConstraintOf(parameters.responseFormat);
  const format = toolCallFormatOf(parameters.chatTemplate);
  if (!format)
    throw new InvalidInputError(
      "this model cannot call tools: its chat template has no known tool-call format",
      {
        param: "tools",
        code: "invalid_value",
        hint: "use a model whose template writes <tool_call> blocks (ChatML/Hermes/Qwen) or Llama 3.1's JSON calls",
      },
    );
  if (parameters.responseFormat)
    throw new InvalidInputError(
      'response_format cannot be combined with tools unless tool_choice is "none"',
      {
        param: "response_format",
        code: "invalid_value",
        hint: 'drop response_format, or set tool_choice to "none"',
      },
    );
  if (toolChoice === undefined || toolChoice === "auto") return undefined;
  const key = `tools:${format}:${JSON.stringify([tools, toolChoice, parameters.parallelToolCalls ?? true])}`;
  return remember(key, async () => {
    const constraint = await toolConstraintOf({
      llama: await getSharedLlama(),
      format,
      tools: enforceableTools(tools),
      toolChoice,
      parallelToolCalls: parameters.parallelToolCalls,
    });
    if (!constraint) throw new Error("a forced tool choice has a grammar");
    return constraint;
  });
}
