import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  createToolAnswerStream,
  finishReasonWithTools,
  type ToolCallDelta,
  toolAnswerMessage,
} from "../../src/api/toolAnswer.ts";

const text =
  'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>';

describe("tool calls in OpenAI's answer shapes", () => {
  it("streams content, then each call's id and name, then its arguments; the deltas add up to the message", () => {
    let content = "";
    const deltas: ToolCallDelta[] = [];
    const stream = createToolAnswerStream({
      format: "hermes",
      onContent: (piece) => {
        assert.equal(deltas.length, 0, "no content after the first call here");
        content += piece;
      },
      onToolCall: (delta) => deltas.push(delta),
    });
    for (const character of text) stream.push(character);
    assert.deepEqual(stream.finish(), { toolCalls: 2 });
    // Accumulate as the openai SDK does: by index, the first delta carries id, type and name.
    const calls: { id: string; name: string; arguments: string }[] = [];
    for (const delta of deltas) {
      if ("id" in delta) {
        assert.equal(delta.type, "function");
        assert.equal(delta.function.arguments, "");
        calls[delta.index] = { id: delta.id, name: delta.function.name, arguments: "" };
      } else {
        const call = calls[delta.index];
        assert.ok(call, "argument fragments come after their call's first delta");
        call.arguments += delta.function.arguments;
      }
    }
    const message = toolAnswerMessage({ format: "hermes", text });
    assert.equal(content, message.content);
    assert.equal(content, "Checking.");
    assert.deepEqual(
      calls.map(({ name, arguments: args }) => ({ name, arguments: args })),
      message.toolCalls.map((call) => ({ name: call.function.name, arguments: call.function.arguments })),
    );
    assert.deepEqual(
      calls.map((call) => call.arguments),
      ['{"city": "Paris"}', "{}"],
    );
    assert.ok(calls.every((call) => /^call_[0-9a-f]{24}$/.test(call.id)));
  });

  it("finishes with tool_calls only when calls were made and the model ended them", () => {
    assert.equal(finishReasonWithTools("stop", 1), "tool_calls");
    assert.equal(finishReasonWithTools("stop", 0), "stop");
    assert.equal(finishReasonWithTools("length", 2), "length");
  });
});
