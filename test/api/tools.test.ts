/**
 * Tools (OpenAI function calling) end to end: the official openai client against a real `mycel serve` process with
 * the gpt2 tiny test model (its template renders tools and takes `<tool_call>` blocks): a tool round trip,
 * non-streamed and streamed (the SDK's stream helper), tool_choice "required" and a named function forcing the
 * random-weight model to call; the evidence passes `mycel audit`; an answer whose arguments were fabricated
 * (tokens edited, receipt re-signed) fails it; a model without a tool-call format is refused with 400.
 */
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import {
  checkToolArguments,
  createEngine,
  type Engine,
  type ToolDefinition,
} from "../../src/engine/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import type { AuditInput, Evidence, InferenceRequest } from "../../src/protocol/index.ts";
import { fabricatedToolArguments } from "../fixtures/toolCheats.ts";
import { runMycelAudit, type ServeProcess, startMycelServer, temporaryHome } from "../helpers.ts";

type Answer = OpenAI.ChatCompletion & {
  mycel: { seed?: number; evidence?: Evidence & { request: InferenceRequest } };
};

const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city, some days ahead",
    parameters: {
      type: "object",
      properties: {
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
        days: { type: "integer" },
        windy: { type: "boolean" },
      },
      required: ["unit", "days", "windy"],
      additionalProperties: false,
    },
  },
} as const satisfies OpenAI.ChatCompletionTool;
const time = {
  type: "function",
  function: {
    name: "get_time",
    parameters: { type: "object", properties: { zone: { enum: ["UTC", "CET"] } }, required: ["zone"] },
  },
} as const satisfies OpenAI.ChatCompletionTool;
const tools = [weather, time];

const question: OpenAI.ChatCompletionMessageParam = {
  role: "user",
  content: "What is the weather in Paris?",
};

describe("tools through mycel serve (the openai client, mycel audit)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let inputs: string;
  let engine: Engine;
  let server: ServeProcess;
  let client: OpenAI;
  const models = { gpt2: { hash: "", name: "" }, llama3: { hash: "", name: "" } };

  /** Runs `mycel audit` on `value` saved as JSON. */
  const audit = async (name: string, value: unknown) => {
    const path = join(inputs, `${name}.json`);
    await writeFile(path, JSON.stringify(value));
    return runMycelAudit(path, { home: directory.home });
  };
  /** Each call names a tool of the request and its arguments validate against that tool's schema. */
  const checkCalls = (calls: readonly OpenAI.ChatCompletionMessageToolCall[] | undefined) => {
    assert.ok(calls && calls.length > 0, "the answer calls a tool");
    for (const call of calls) {
      assert.equal(call.type, "function");
      assert.match(call.id, /^call_[0-9a-f]{24}$/);
      if (call.type !== "function") continue;
      const tool = tools.find((candidate) => candidate.function.name === call.function.name);
      assert.ok(tool, `a tool of the request: ${call.function.name}`);
      const checked = checkToolArguments({
        tool: tool as ToolDefinition,
        arguments: call.function.arguments,
      });
      assert.ok(checked.valid, `${call.function.arguments}: ${JSON.stringify(checked)}`);
    }
  };

  before(async () => {
    directory = await temporaryHome("mycel-tools-");
    inputs = join(directory.home, "inputs");
    await mkdir(inputs);
    const store = openModelStore({ home: directory.home });
    engine = createEngine({ options: { parallelism: 1, threadsPerSequence: 1, maxQueue: 4 } });
    for (const tokenizer of ["gpt2", "llama3"] as const) {
      const made = generateTestModel({ size: "tiny", seed: 1, tokenizer });
      const { model } = await store.addBytes({ bytes: made.bytes, name: made.name, source: "test" });
      models[tokenizer] = { hash: model.hash, name: model.name };
      await engine.loadModel({ hash: model.hash, path: store.pathOf(model.hash), name: model.name });
    }
    server = await startMycelServer(
      ["serve", "--model", models.gpt2.hash, "--model", models.llama3.hash, "--port", "0", "--threads", "1"],
      { home: directory.home },
    );
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(async () => {
    const code = await server?.stop();
    await engine?.close();
    await directory?.remove();
    assert.equal(code, 0, "mycel serve exits cleanly on SIGTERM");
  });

  it("a round trip, not streamed: required -> tool_calls (audited) -> tool message -> an answer", async () => {
    const first = (await client.chat.completions.create({
      model: models.gpt2.name,
      messages: [question],
      tools,
      tool_choice: "required",
      max_tokens: 200,
      temperature: 0,
      mycel: { include_evidence: true },
    } as OpenAI.ChatCompletionCreateParamsNonStreaming)) as Answer;
    const choice = first.choices[0];
    assert.equal(choice?.finish_reason, "tool_calls");
    assert.equal(choice?.message.content, null);
    checkCalls(choice?.message.tool_calls);
    const evidence = first.mycel.evidence;
    assert.ok(evidence);
    assert.deepEqual(evidence.request.tools, tools, "the request the receipt hashes carries the tools");
    assert.equal(evidence.request.tool_choice, "required");
    assert.deepEqual(
      evidence.promptTokens,
      engine.tokenizeChat({
        modelHash: models.gpt2.hash,
        messages: [question as { role: string; content: string }],
        tools,
      }),
      "the tools are in the prompt",
    );
    const run = await audit("required", first);
    assert.equal(run.code, 0, `${run.stdout}${run.stderr}`);
    assert.equal(run.verdict?.verdict, "pass", run.stdout);

    const calls = choice?.message.tool_calls ?? [];
    const followUp: OpenAI.ChatCompletionMessageParam[] = [
      question,
      { role: "assistant", content: null, tool_calls: calls },
      ...calls.map((call) => ({ role: "tool" as const, tool_call_id: call.id, content: "22 C, light wind" })),
    ];
    const second = (await client.chat.completions.create({
      model: models.gpt2.name,
      messages: followUp,
      tools,
      tool_choice: "none",
      max_tokens: 12,
      temperature: 0,
      mycel: { include_evidence: true },
    } as OpenAI.ChatCompletionCreateParamsNonStreaming)) as Answer;
    assert.equal(typeof second.choices[0]?.message.content, "string");
    assert.equal(second.choices[0]?.message.tool_calls, undefined);
    const prompt = second.mycel.evidence?.promptTokens ?? [];
    const rendered = engine.detokenize({ modelHash: models.gpt2.hash, tokens: prompt });
    const firstCall = calls[0];
    assert.ok(firstCall?.type === "function");
    assert.ok(
      rendered.includes(`<tool_call>\n{"name": "${firstCall.function.name}", "arguments": `),
      rendered,
    );
    assert.ok(rendered.includes("<tool_response>\n22 C, light wind\n</tool_response>"), rendered);
    const followUpAudit = await audit("follow-up", second);
    assert.equal(followUpAudit.verdict?.verdict, "pass", followUpAudit.stdout);
  });

  it("a round trip, streamed with the SDK's helper: a named function, the same calls as not streamed", async () => {
    const request = {
      model: models.gpt2.name,
      messages: [question],
      tools,
      tool_choice: { type: "function", function: { name: "get_weather" } },
      max_tokens: 200,
      temperature: 1,
      seed: 7,
    } as const satisfies OpenAI.ChatCompletionCreateParamsNonStreaming;
    const plain = await client.chat.completions.create(request);
    const stream = client.chat.completions.stream(request);
    const final = await stream.finalChatCompletion();
    const [plainCalls, streamedCalls] = [plain, final].map((answer) => answer.choices[0]?.message.tool_calls);
    checkCalls(streamedCalls);
    assert.equal(streamedCalls?.length, 1, "a named function is called once");
    assert.equal(final.choices[0]?.finish_reason, "tool_calls");
    assert.deepEqual(
      streamedCalls?.map((call) => call.type === "function" && call.function),
      plainCalls?.map((call) => call.type === "function" && call.function),
    );
    const calls = streamedCalls ?? [];
    const next = client.chat.completions.stream({
      model: models.gpt2.name,
      messages: [
        question,
        final.choices[0]?.message as OpenAI.ChatCompletionMessageParam,
        ...calls.map((call) => ({ role: "tool" as const, tool_call_id: call.id, content: "sunny" })),
      ],
      tools,
      max_tokens: 8,
      temperature: 0,
    });
    const answer = await next.finalChatCompletion();
    assert.equal(typeof answer.choices[0]?.message.content, "string");
  });

  it("refuses tools for a model whose template has no tool-call format, naming the model", async () => {
    await assert.rejects(
      client.chat.completions.create({ model: models.llama3.name, messages: [question], tools }),
      (error) =>
        error instanceof OpenAI.BadRequestError &&
        error.message.includes(models.llama3.name) &&
        /tool-call format/.test(error.message),
    );
    await assert.rejects(
      client.chat.completions.create({
        model: models.gpt2.name,
        messages: [question],
        tools,
        tool_choice: { type: "function", function: { name: "nope" } },
      }),
      (error) => error instanceof OpenAI.BadRequestError && /nope/.test(error.message),
    );
    const refused = async (body: Record<string, unknown>, param: string) =>
      assert.rejects(
        client.chat.completions.create({
          model: models.gpt2.name,
          messages: [question],
          ...body,
        } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming),
        (error) => error instanceof OpenAI.BadRequestError && error.param === param,
        JSON.stringify(body),
      );
    await refused({ tool_choice: "required" }, "tool_choice");
    await refused({ tools, response_format: { type: "json_object" } }, "response_format");
    await refused({ tools: [{ type: "custom", custom: { name: "x" } }] }, "tools.0.type");
    await refused(
      {
        tools: [{ type: "function", function: { name: "f", parameters: { type: "integer", minimum: 3 } } }],
        tool_choice: "required",
      },
      "tools[0].function.parameters",
    );
  });

  it("an answer whose tool-call arguments were fabricated fails mycel audit (temperature 0)", async () => {
    const honest = (await client.chat.completions.create({
      model: models.gpt2.name,
      messages: [{ role: "user", content: "And in Lyon, for the week?" }],
      tools,
      tool_choice: { type: "function", function: { name: "get_weather" } },
      max_tokens: 200,
      temperature: 0,
      mycel: { include_evidence: true },
    } as OpenAI.ChatCompletionCreateParamsNonStreaming)) as Answer;
    const evidence = honest.mycel.evidence;
    assert.ok(evidence);
    const cheat: AuditInput = await fabricatedToolArguments({
      engine,
      modelHash: models.gpt2.hash,
      evidence,
    });
    assert.notDeepEqual(cheat.outputTokens, evidence.outputTokens);
    const honestRun = await audit("honest-arguments", honest);
    assert.equal(honestRun.verdict?.verdict, "pass", honestRun.stdout);
    const run = await audit("fabricated-arguments", cheat);
    const texts = [evidence.outputTokens, cheat.outputTokens].map((tokens) =>
      engine.detokenize({ modelHash: models.gpt2.hash, tokens }),
    );
    assert.equal(run.verdict?.verdict, "fail", `${JSON.stringify(texts)}\n${run.stdout}`);
    assert.ok(
      run.verdict?.reasons.some((reason) => reason.code === "fingerprint_mismatch"),
      `the cheat's fingerprints (the model's own, without the grammar) name tokens the grammar forbids: ${run.stdout}`,
    );
  });
});
