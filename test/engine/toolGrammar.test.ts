import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Llama, LlamaCompletion, type LlamaContext, type LlamaModel, type Token } from "node-llama-cpp";
import {
  buildToolGrammar,
  checkToolArguments,
  createEngine,
  type Engine,
  getSharedLlama,
  parseToolCalls,
  prefixGrammarRules,
  type ToolDefinition,
  toolConstraintOf,
} from "../../src/engine/index.ts";
import { InvalidInputError } from "../../src/errors/index.ts";
import { generateTestModel } from "../../src/model/index.ts";
import { temporaryHome } from "../helpers.ts";

const weather: ToolDefinition = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: {
      type: "object",
      properties: {
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
        days: { type: "integer" },
        windy: { type: "boolean" },
      },
      required: ["unit", "days", "windy"],
    },
  },
};
const time: ToolDefinition = {
  type: "function",
  function: {
    name: "get_time",
    parameters: { type: "object", properties: { zone: { enum: ["UTC", "CET"] } }, required: ["zone"] },
  },
};
const noArguments: ToolDefinition = { type: "function", function: { name: "ping" } };
const tools = [weather, time, noArguments];

describe("tool grammars", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let llama: Llama;
  let engine: Engine;
  let modelHash: string;
  let model: LlamaModel;
  let context: LlamaContext;

  before(async () => {
    directory = await temporaryHome("mycel-tool-grammar-");
    llama = await getSharedLlama();
    const made = generateTestModel({ size: "tiny", seed: 1, tokenizer: "gpt2" });
    const path = join(directory.home, "gpt2-tiny.gguf");
    writeFileSync(path, made.bytes);
    engine = createEngine({ options: { parallelism: 1, threadsPerSequence: 1, maxQueue: 4 } });
    modelHash = (await engine.loadModel({ hash: "a".repeat(64), path, name: made.name })).hash;
    model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
    context = await model.createContext({ contextSize: 2048, threads: 1 });
  });
  after(async () => {
    await context?.dispose();
    await model?.dispose();
    await engine?.close();
    await directory?.remove();
  });

  /** Generates under the grammar (node-llama-cpp's own grammar sampling) from the chat prompt with the tools. */
  async function generateUnder(grammarText: string, seed: number, temperature: number) {
    const promptTokens = engine.tokenizeChat({
      modelHash,
      messages: [{ role: "user", content: "What is the weather in Paris?" }],
      tools,
    });
    const sequence = context.getSequence();
    try {
      const completion = new LlamaCompletion({ contextSequence: sequence });
      const grammar = await llama.createGrammar({ grammar: grammarText });
      let stoppedByEnd = false;
      const text = await completion.generateCompletion(promptTokens as Token[], {
        grammar,
        temperature,
        seed,
        maxTokens: 400,
        onToken: () => undefined,
      });
      const tokens = sequence.contextTokens.slice(promptTokens.length);
      stoppedByEnd = tokens.length < 400;
      return { text, stoppedByEnd };
    } finally {
      sequence.dispose();
    }
  }

  it("renames a grammar's rules, never its literals or character classes", () => {
    const renamed = prefixGrammarRules(
      'root ::= "{" ws val0 [a-z0-9] "root" ws{0,2}\nval0 ::= "\\"val0\\"" # root\nws ::= [ ]?',
      "t1-",
    );
    assert.equal(
      renamed,
      't1-root ::= "{" t1-ws t1-val0 [a-z0-9] "root" t1-ws{0,2}\nt1-val0 ::= "\\"val0\\"" # root\nt1-ws ::= [ ]?',
    );
  });

  it("has no grammar for auto and none, and refuses a named function that is not a tool", async () => {
    assert.equal(await buildToolGrammar({ llama, format: "hermes", tools, toolChoice: "auto" }), undefined);
    assert.equal(await buildToolGrammar({ llama, format: "hermes", tools, toolChoice: "none" }), undefined);
    assert.equal(
      await buildToolGrammar({ llama, format: "hermes", tools, toolChoice: undefined }),
      undefined,
    );
    await assert.rejects(
      buildToolGrammar({
        llama,
        format: "hermes",
        tools,
        toolChoice: { type: "function", function: { name: "nope" } },
      }),
      (error) =>
        error instanceof InvalidInputError &&
        /nope/.test(error.message) &&
        /get_weather/.test(error.hint ?? ""),
    );
  });

  it("compiles in llama.cpp for every choice and format", async () => {
    for (const format of ["hermes", "llama3-json"] as const)
      for (const toolChoice of ["required", { type: "function", function: { name: "get_time" } }] as const) {
        const text = await buildToolGrammar({ llama, format, tools, toolChoice });
        assert.ok(text);
        await llama.createGrammar({ grammar: text });
        assert.match(text, format === "hermes" ? /"<tool_call>\\n"/ : /"\\"parameters\\""/);
      }
  });

  it("makes the random-weight gpt2 model call tools: parseable calls whose arguments fit the schemas", async () => {
    const grammar = await buildToolGrammar({ llama, format: "hermes", tools, toolChoice: "required" });
    assert.ok(grammar);
    const constraint = await toolConstraintOf({ llama, format: "hermes", tools, toolChoice: "required" });
    assert.equal(constraint?.gbnf, grammar);
    const names = new Set<string>();
    for (const [seed, temperature] of [
      [1, 0],
      [3, 1],
      [4, 1.5],
    ] as const) {
      const { text, stoppedByEnd } = await generateUnder(grammar, seed, temperature);
      assert.ok(stoppedByEnd, `seed ${seed}: the grammar ends the answer: ${text}`);
      assert.equal(constraint?.violation(text), undefined, `seed ${seed}: ${text}`);
      const parsed = parseToolCalls({ format: "hermes", text });
      assert.equal(parsed.content, null, `seed ${seed}: no text outside calls: ${text}`);
      assert.ok(parsed.toolCalls.length >= 1);
      for (const call of parsed.toolCalls) {
        const tool = tools.find((candidate) => candidate.function.name === call.function.name);
        assert.ok(tool, `seed ${seed}: a known tool: ${call.function.name}`);
        names.add(call.function.name);
        const checked = checkToolArguments({ tool, arguments: call.function.arguments });
        assert.ok(checked.valid, `seed ${seed}: ${JSON.stringify(checked)} ${call.function.arguments}`);
      }
    }
    assert.ok(names.size >= 1);
  });

  it("makes exactly one call of a named function, and one call when parallel calls are off", async () => {
    const named = await buildToolGrammar({
      llama,
      format: "hermes",
      tools,
      toolChoice: { type: "function", function: { name: "get_weather" } },
    });
    const single = await buildToolGrammar({
      llama,
      format: "hermes",
      tools,
      toolChoice: "required",
      parallelToolCalls: false,
    });
    assert.ok(named && single);
    for (const seed of [5]) {
      const one = parseToolCalls({ format: "hermes", text: (await generateUnder(named, seed, 1)).text });
      assert.deepEqual(
        one.toolCalls.map((call) => call.function.name),
        ["get_weather"],
      );
      const checked = checkToolArguments({
        tool: weather,
        arguments: one.toolCalls[0]?.function.arguments ?? "",
      });
      assert.ok(checked.valid);
      assert.equal(
        parseToolCalls({ format: "hermes", text: (await generateUnder(single, seed, 1)).text }).toolCalls
          .length,
        1,
      );
    }
  });

  it("a tool constraint accepts honest calls and names what breaks it", async () => {
    const required = await toolConstraintOf({ llama, format: "hermes", tools, toolChoice: "required" });
    const named = await toolConstraintOf({
      llama,
      format: "hermes",
      tools,
      toolChoice: { type: "function", function: { name: "get_time" } },
    });
    assert.equal(await toolConstraintOf({ llama, format: "hermes", tools, toolChoice: "auto" }), undefined);
    assert.ok(required && named);
    const good = '<tool_call>\n{"name": "get_time", "arguments": {"zone": "UTC"}}\n</tool_call>';
    assert.equal(required.violation(good), undefined);
    assert.equal(required.violation(`${good}\n${good}`), undefined);
    assert.equal(named.violation(good), undefined);
    assert.match(named.violation(`${good}\n${good}`) ?? "", /2 calls, not one/);
    assert.match(required.violation("Hello") ?? "", /text outside tool calls/);
    assert.match(required.violation("") ?? "", /calls no tool/);
    assert.match(
      named.violation(good.replace("get_time", "ping")) ?? "",
      /'ping', which the request did not allow/,
    );
    assert.match(required.violation(good.replace("UTC", "PST")) ?? "", /get_time.*zone/);
  });

  it("checks arguments: JSON, the schema's types and keys", async () => {
    const check = (text: string, tool = weather) => checkToolArguments({ tool, arguments: text });
    assert.equal(check('{"unit": "celsius", "days": 3, "windy": false}').valid, true);
    assert.equal(check('{"unit": "celsius", "days": 3, "windy": fals').valid, false);
    assert.equal(check('{"unit": "kelvin", "days": 3, "windy": false}').valid, false);
    assert.equal(check('{"unit": "celsius", "days": "3", "windy": false}').valid, false);
    assert.equal(check('{"unit": "celsius", "days": 1e99, "windy": false}').valid, false);
    assert.equal(check('{"unit": "celsius", "windy": false}').valid, false, "a required key is missing");
    // JSON Schema's own reading: other keys are allowed unless additionalProperties is false.
    assert.equal(check('{"unit": "celsius", "days": 3, "windy": false, "x": 1}').valid, true);
    const closed: ToolDefinition = {
      type: "function",
      function: { name: "f", parameters: { type: "object", properties: {}, additionalProperties: false } },
    };
    assert.equal(check('{"x": 1}', closed).valid, false);
    assert.equal(check("{}", noArguments).valid, true);
    assert.equal(check("[]", noArguments).valid, false);
  });
});
