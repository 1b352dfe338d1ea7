/** Tools on Ollama's /api/chat: the conversation mapped onto /v1/'s messages, and answers' calls in Ollama's shape (unit test, no server). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ollamaChatRequestSchema } from "../../src/api/ollamaFields.ts";
import {
  chatMessagesOfOllama,
  createOllamaToolStream,
  type OllamaToolCall,
  ollamaToolAnswerOf,
  ollamaToolCallId,
} from "../../src/api/ollamaTools.ts";
import { parseRequest } from "../../src/api/schemas.ts";
import { buildInferenceRequest, inferenceRequestSchema } from "../../src/protocol/index.ts";

/** Parses messages as /api/chat does. */
const parsed = (messages: unknown[]) =>
  parseRequest(ollamaChatRequestSchema, { model: "m", messages }).messages ?? [];

/** Two calls, then a text answer: what a Hermes/Qwen model writes. */
const hermesAnswer =
  'Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}}\n</tool_call>\n' +
  '<tool_call>\n{"name": "get_time", "arguments": {"zone": "UTC"}}\n</tool_call>';
const hermesCalls: OllamaToolCall[] = [
  { function: { index: 0, name: "get_weather", arguments: { city: "Paris", days: [1, 2] } } },
  { function: { index: 1, name: "get_time", arguments: { zone: "UTC" } } },
];

/** Feeds `text` to a stream in pieces of `size` characters; returns what came out, in order. */
function streamed(format: "hermes" | "llama3-json", text: string, size: number) {
  const events: ({ content: string } | { call: OllamaToolCall; before: string })[] = [];
  let fed = "";
  const stream = createOllamaToolStream({
    format,
    onContent: (content) => {
      const last = events.at(-1);
      if (last && "content" in last) last.content += content;
      else events.push({ content });
    },
    onToolCall: (call) => events.push({ call, before: fed }),
  });
  for (let at = 0; at < text.length; at += size) {
    fed += text.slice(at, at + size);
    stream.push(text.slice(at, at + size));
  }
  const { toolCalls } = stream.finish();
  return { events, toolCalls };
}

describe("Ollama's tool calls", () => {
  it("maps a conversation onto /v1/'s messages: ids made up, arguments as JSON text, tool turns linked by name", () => {
    const messages = chatMessagesOfOllama(
      parsed([
        { role: "system", content: "be brief" },
        { role: "user", content: "weather and time?" },
        {
          role: "assistant",
          content: "",
          tool_calls: [
            { function: { index: 0, name: "get_weather", arguments: { city: "Paris" } } },
            { function: { name: "get_time", arguments: { zone: "UTC" } } },
            { function: { name: "ping" } },
          ],
        },
        // Answered out of order, by name; the last one without a name takes the first call left.
        { role: "tool", content: "12:00", tool_name: "get_time" },
        { role: "tool", content: "22 C", tool_name: "get_weather" },
        { role: "tool", content: "pong" },
        { role: "tool", content: "extra", tool_name: "get_time" },
        { role: "assistant", content: "Warm, at noon." },
      ]),
    );
    assert.deepEqual(messages, [
      { role: "system", content: "be brief" },
      { role: "user", content: "weather and time?" },
      {
        role: "assistant",
        content: "",
        tool_calls: [
          {
            id: "call_2_0",
            type: "function",
            function: { name: "get_weather", arguments: '{"city":"Paris"}' },
          },
          { id: "call_2_1", type: "function", function: { name: "get_time", arguments: '{"zone":"UTC"}' } },
          { id: "call_2_2", type: "function", function: { name: "ping", arguments: "{}" } },
        ],
      },
      { role: "tool", content: "12:00", tool_call_id: "call_2_1", name: "get_time" },
      { role: "tool", content: "22 C", tool_call_id: "call_2_0", name: "get_weather" },
      { role: "tool", content: "pong", tool_call_id: "call_2_2" },
      { role: "tool", content: "extra", name: "get_time" },
      { role: "assistant", content: "Warm, at noon." },
    ]);
    assert.equal(ollamaToolCallId(2, 1), "call_2_1");
    // What the gateway sends and the receipt hashes takes them as they are.
    const wire = buildInferenceRequest({
      modelHash: `0x${"0".repeat(64)}`,
      prompt: { kind: "chat", messages },
      temperature: 0,
      topP: 1,
      topK: 0,
      seed: 1,
      stop: [],
    });
    assert.equal(inferenceRequestSchema.safeParse(wire).success, true);
  });

  it("answers a Hermes model's calls as Ollama's objects, after the text before them", () => {
    assert.deepEqual(ollamaToolAnswerOf({ format: "hermes", text: hermesAnswer }), {
      content: "Let me look.",
      toolCalls: hermesCalls,
    });
    assert.deepEqual(ollamaToolAnswerOf({ format: "hermes", text: "No tools needed." }), {
      content: "No tools needed.",
      toolCalls: [],
    });
    assert.deepEqual(
      ollamaToolAnswerOf({
        format: "llama3-json",
        text: '{"name": "get_time", "parameters": {"zone": "CET"}}',
      }),
      { content: "", toolCalls: [{ function: { index: 0, name: "get_time", arguments: { zone: "CET" } } }] },
    );
  });

  it("streams each call whole, as soon as its arguments end, the same as the whole answer", () => {
    for (const size of [1, 3, 7, hermesAnswer.length]) {
      const { events, toolCalls } = streamed("hermes", hermesAnswer, size);
      assert.equal(toolCalls, 2);
      assert.deepEqual(
        events.map((event) => ("content" in event ? event.content : event.call)),
        ["Let me look.", ...hermesCalls],
        `pieces of ${size}`,
      );
      if (size !== 1) continue;
      // Character by character: each call goes out at its closing brace, before its closing tag comes.
      const [, first, second] = events;
      assert.ok(first && "before" in first && second && "before" in second);
      assert.ok(first.before.endsWith('"days": [1, 2]}'), first.before);
      assert.ok(second.before.endsWith('{"zone": "UTC"}'), second.before);
    }
  });

  it("keeps a call whose arguments are no JSON object as text: cut off, not JSON, or not an object", () => {
    const cut = 'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa';
    assert.deepEqual(ollamaToolAnswerOf({ format: "hermes", text: cut }), {
      content: 'Sure.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa',
      toolCalls: [],
    });
    const list = '<tool_call>\n{"name": "f", "arguments": [1, 2]}\n</tool_call>';
    assert.deepEqual(ollamaToolAnswerOf({ format: "hermes", text: `${list}\nand more` }), {
      content: '<tool_call>\n{"name": "f", "arguments": [1, 2]and more',
      toolCalls: [],
    });
    // A bad call before a good one: the good one keeps index 0 (Ollama's index counts the calls returned).
    const mixed = `<tool_call>\n{"name": "f", "arguments": {"a": nope}}\n</tool_call>\n${hermesAnswer.slice(13)}`;
    const answer = ollamaToolAnswerOf({ format: "hermes", text: mixed });
    assert.equal(answer.content, '<tool_call>\n{"name": "f", "arguments": {"a": nope}');
    assert.deepEqual(answer.toolCalls, hermesCalls);
    const streamedMixed = streamed("hermes", mixed, 1);
    assert.equal(streamedMixed.toolCalls, 2);
    assert.deepEqual(
      streamedMixed.events.map((event) => ("content" in event ? event.content : event.call)),
      [answer.content, ...hermesCalls],
    );
    assert.deepEqual(ollamaToolAnswerOf({ format: "llama3-json", text: '{"name": "f", "parameters": 5}' }), {
      content: '{"name": "f", "parameters": 5',
      toolCalls: [],
    });
  });
});
