import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  buildInferenceRequest,
  constraintsOfRequest,
  hashRequest,
  type InferenceRequest,
  inferenceRequestSchema,
  type WireTool,
} from "../../src/protocol/index.ts";

const modelHash = `0x${"ab".repeat(32)}`;
const weather: WireTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};
const messages = [
  { role: "user", content: "Weather in Paris?" },
  {
    role: "assistant",
    content: "",
    tool_calls: [
      {
        id: "call_1",
        type: "function" as const,
        function: { name: "get_weather", arguments: '{"city":"Paris"}' },
      },
    ],
  },
  { role: "tool", content: "22 C", tool_call_id: "call_1", name: "get_weather" },
];
const base = { modelHash, temperature: 0, topP: 1, topK: 0, seed: 1, stop: [] };

describe("protocol: tools on the wire request", () => {
  it("carries tools, tool_choice, parallel_tool_calls and messages' tool fields, and reads them back", () => {
    const request = buildInferenceRequest({
      ...base,
      prompt: { kind: "chat", messages },
      constraints: { tools: [weather], toolChoice: "required", parallelToolCalls: false },
    });
    assert.equal(inferenceRequestSchema.safeParse(request).success, true);
    assert.deepEqual(request.tools, [weather]);
    assert.equal(request.tool_choice, "required");
    assert.equal(request.parallel_tool_calls, false);
    assert.deepEqual(request.messages, messages);
    assert.deepEqual(constraintsOfRequest(request), {
      ...constraintsOfRequest({
        ...request,
        tools: undefined,
        tool_choice: undefined,
        parallel_tool_calls: undefined,
      }),
      tools: [weather],
      toolChoice: "required",
      parallelToolCalls: false,
    });
  });

  it("leaves neutral values out, so requests without tools hash as before; tools change the hash", () => {
    const plain = buildInferenceRequest({
      ...base,
      prompt: { kind: "chat", messages: [{ role: "user", content: "Hi" }] },
    });
    const neutral = buildInferenceRequest({
      ...base,
      prompt: { kind: "chat", messages: [{ role: "user", content: "Hi", tool_calls: [] }] },
      constraints: { tools: [], toolChoice: "auto", parallelToolCalls: true },
    });
    assert.deepEqual(neutral, plain);
    assert.equal(hashRequest(neutral), hashRequest(plain));
    assert.deepEqual(Object.keys(plain.messages?.[0] ?? {}), ["role", "content"]);
    const withTools = buildInferenceRequest({
      ...base,
      prompt: { kind: "chat", messages: [{ role: "user", content: "Hi" }] },
      constraints: { tools: [weather], toolChoice: "auto" },
    });
    assert.equal(withTools.tool_choice, undefined, '"auto" is the default and is left out');
    assert.notEqual(hashRequest(withTools), hashRequest(plain));
    const named = buildInferenceRequest({
      ...base,
      prompt: { kind: "chat", messages: [{ role: "user", content: "Hi" }] },
      constraints: { tools: [weather], toolChoice: { type: "function", function: { name: "get_weather" } } },
    });
    assert.notEqual(hashRequest(named), hashRequest(withTools));
  });

  it("refuses tools where they cannot be: text requests, choices without tools, unknown names, duplicates", () => {
    const chat = buildInferenceRequest({
      ...base,
      prompt: { kind: "chat", messages: [{ role: "user", content: "Hi" }] },
      constraints: { tools: [weather] },
    });
    const refuses = (request: Partial<InferenceRequest> & Record<string, unknown>, why: RegExp) => {
      const result = inferenceRequestSchema.safeParse(request);
      assert.equal(result.success, false, JSON.stringify(request));
      assert.match(result.error?.issues[0]?.message ?? "", why);
    };
    refuses({ ...chat, kind: "text", messages: undefined, prompt: "Hi" }, /only chat requests carry tools/);
    refuses({ ...chat, tools: undefined, tool_choice: "required" }, /need tools/);
    refuses(
      { ...chat, tool_choice: { type: "function", function: { name: "other" } } },
      /not among the tools/,
    );
    refuses({ ...chat, tools: [weather, weather] }, /same name/);
    refuses({ ...chat, tool_choice: "auto" } as never, /./);
    refuses({ ...chat, parallel_tool_calls: true } as never, /./);
    refuses(
      { ...chat, tools: [{ ...weather, function: { ...weather.function, name: "has space" } }] },
      /letters/,
    );
    refuses({ ...chat, messages: [{ role: "tool", content: "x", tool_call_id: "" }] } as never, /./);
    refuses(
      {
        ...chat,
        tools: [{ ...weather, function: { ...weather.function, parameters: { x: "y".repeat(600_000) } } }],
      },
      /larger than/,
    );
  });
});
