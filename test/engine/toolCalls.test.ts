import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  collectToolCallEvents,
  createToolCallParser,
  newToolCallId,
  parseToolCalls,
  type ToolCallEvent,
  type ToolCallFormat,
  toolCallFormatOf,
} from "../../src/engine/index.ts";
import { chatmlToolsChatTemplate, llama3ChatTemplate, testModelChatTemplate } from "../../src/model/index.ts";

/** Deterministic ids, so that whole and streamed parses compare equal. */
function counterIds() {
  let next = 0;
  return () => `call_${next++}`;
}

function parse(text: string, format: ToolCallFormat = "hermes") {
  return parseToolCalls({ format, text, newId: counterIds() });
}

/** Streams `text` cut at the given positions; returns the folded result and every event. */
function parseStreamed(text: string, cuts: readonly number[], format: ToolCallFormat = "hermes") {
  const parser = createToolCallParser({ format, newId: counterIds() });
  const events: ToolCallEvent[] = [];
  let from = 0;
  for (const cut of [...cuts, text.length]) {
    events.push(...parser.push(text.slice(from, cut)));
    from = cut;
  }
  const finished = parser.finish();
  events.push(...finished.events);
  return { ...collectToolCallEvents(events), truncated: finished.truncated, events };
}

const call = (name: string, args: string) =>
  `<tool_call>\n{"name": "${name}", "arguments": ${args}}\n</tool_call>`;

/** Texts every parser test runs on, whole and streamed. */
const samples: { name: string; text: string; format?: ToolCallFormat }[] = [
  { name: "plain text", text: "Hello there.\nHow are you?" },
  { name: "one call", text: call("get_weather", '{"city": "Paris"}') },
  {
    name: "text then two calls",
    text: `Let me check.\n${call("get_weather", '{"city": "Paris"}')}\n${call("get_time", '{"zone": "CET", "n": [1, {"a": "}"}]}')}`,
  },
  { name: "a block that is not a call", text: "<tool_call>hello</tool_call> and more" },
  { name: "cut inside the arguments", text: '<tool_call>\n{"name": "f", "arguments": {"a": "b' },
  { name: "cut inside the head", text: 'Hi\n<tool_call>\n{"na' },
  { name: "a closing tag inside a string", text: call("f", '{"x": "</tool_call> <tool_call>"}') },
  { name: "parameters as the key", text: '<tool_call>{"name":"f","parameters":{"q":1}}</tool_call>' },
  {
    name: "arguments never closed",
    text: '<tool_call>\n{"name": "f", "arguments": {"a": 1\n</tool_call>\nDone.',
  },
  { name: "escaped name and strings", text: call("f\\u00e9", '{"s": "a\\"b\\\\"}') },
  { name: "primitive arguments", text: '<tool_call>{"name": "f", "arguments": 42}</tool_call>' },
  { name: "tag-like text", text: "a < b and <tool and <tool_cal> end <" },
  { name: "text after a call", text: `${call("f", "{}")}\n\nThat was it.  ` },
  { name: "llama3 call", text: '{"name": "f", "parameters": {"a": 1}}', format: "llama3-json" },
  { name: "llama3 text", text: "Hello {not a call}", format: "llama3-json" },
  { name: "llama3 other JSON", text: '  {"x": 1}', format: "llama3-json" },
];

describe("tool-call format of a chat template", () => {
  it("finds the hermes <tool_call> format in the gpt2 test models' template", () => {
    assert.equal(toolCallFormatOf(chatmlToolsChatTemplate), "hermes");
  });
  it("finds no format in templates without tools", () => {
    assert.equal(toolCallFormatOf(llama3ChatTemplate), undefined);
    assert.equal(toolCallFormatOf(testModelChatTemplate), undefined);
    assert.equal(toolCallFormatOf(undefined), undefined);
  });
  it("finds Llama 3.1's JSON format by the words its template asks with", () => {
    const template =
      '{{- \'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.\' }}';
    assert.equal(toolCallFormatOf(template), "llama3-json");
  });
});

describe("tool-call parsing", () => {
  it("leaves text without calls as content", () => {
    assert.deepEqual(parse("Hello there."), { content: "Hello there.", toolCalls: [], truncated: false });
    assert.deepEqual(parse(""), { content: null, toolCalls: [], truncated: false });
  });

  it("parses one call into OpenAI's shape, content null", () => {
    assert.deepEqual(parse(call("get_weather", '{"city": "Paris"}')), {
      content: null,
      toolCalls: [
        { id: "call_0", type: "function", function: { name: "get_weather", arguments: '{"city": "Paris"}' } },
      ],
      truncated: false,
    });
  });

  it("parses text and two calls; the whitespace between them is dropped", () => {
    const sample = samples[2];
    assert.ok(sample);
    const parsed = parse(sample.text);
    assert.equal(parsed.content, "Let me check.");
    assert.deepEqual(
      parsed.toolCalls.map((toolCall) => [toolCall.id, toolCall.function.name, toolCall.function.arguments]),
      [
        ["call_0", "get_weather", '{"city": "Paris"}'],
        ["call_1", "get_time", '{"zone": "CET", "n": [1, {"a": "}"}]}'],
      ],
    );
    for (const toolCall of parsed.toolCalls) JSON.parse(toolCall.function.arguments);
  });

  it("keeps a block that is not a call as text", () => {
    assert.deepEqual(parse("<tool_call>hello</tool_call> and more"), {
      content: "<tool_call>hello</tool_call> and more",
      toolCalls: [],
      truncated: false,
    });
  });

  it("keeps a call cut inside its arguments (truncated), and a head cut short as text", () => {
    assert.deepEqual(parse('<tool_call>\n{"name": "f", "arguments": {"a": "b'), {
      content: null,
      toolCalls: [{ id: "call_0", type: "function", function: { name: "f", arguments: '{"a": "b' } }],
      truncated: true,
    });
    assert.deepEqual(parse('Hi\n<tool_call>\n{"na'), {
      content: 'Hi\n<tool_call>\n{"na',
      toolCalls: [],
      truncated: false,
    });
  });

  it("reads strings in the arguments as strings (a closing tag there does not end the call)", () => {
    const parsed = parse(call("f", '{"x": "</tool_call> <tool_call>"}'));
    assert.equal(parsed.toolCalls[0]?.function.arguments, '{"x": "</tool_call> <tool_call>"}');
    assert.equal(parsed.content, null);
  });

  it("accepts parameters for arguments, decodes escaped names, takes primitive arguments", () => {
    assert.equal(
      parse('<tool_call>{"name":"f","parameters":{"q":1}}</tool_call>').toolCalls[0]?.function.arguments,
      '{"q":1}',
    );
    assert.equal(parse(call("f\\u00e9", "{}")).toolCalls[0]?.function.name, "fé");
    assert.equal(
      parse('<tool_call>{"name": "f", "arguments": 42}</tool_call>').toolCalls[0]?.function.arguments,
      "42",
    );
  });

  it("ends arguments the model never closed at the closing tag", () => {
    const parsed = parse('<tool_call>\n{"name": "f", "arguments": {"a": 1\n</tool_call>\nDone.');
    assert.equal(parsed.toolCalls[0]?.function.arguments, '{"a": 1\n');
    assert.equal(parsed.content, "Done.");
    assert.equal(parsed.truncated, false);
  });

  it("parses Llama 3.1's bare JSON call, and leaves other answers as text", () => {
    assert.deepEqual(parse('{"name": "f", "parameters": {"a": 1}}', "llama3-json").toolCalls, [
      { id: "call_0", type: "function", function: { name: "f", arguments: '{"a": 1}' } },
    ]);
    assert.deepEqual(parse("Hello {not a call}", "llama3-json").content, "Hello {not a call}");
    assert.deepEqual(parse('  {"x": 1}', "llama3-json"), {
      content: '{"x": 1}',
      toolCalls: [],
      truncated: false,
    });
  });

  it("makes OpenAI-style ids", () => {
    assert.match(newToolCallId(), /^call_[0-9a-f]{24}$/);
    assert.notEqual(newToolCallId(), newToolCallId());
  });
});

describe("streamed tool-call parsing", () => {
  for (const sample of samples) {
    it(`adds up to the whole parse when cut at every position: ${sample.name}`, () => {
      const whole = parse(sample.text, sample.format);
      for (let cut = 0; cut <= sample.text.length; cut++) {
        const streamed = parseStreamed(sample.text, [cut], sample.format);
        assert.deepEqual(
          { content: streamed.content, toolCalls: streamed.toolCalls, truncated: streamed.truncated },
          whole,
          `cut at ${cut}`,
        );
      }
      const byCharacter = parseStreamed(
        sample.text,
        [...sample.text].map((_, index) => index),
        sample.format,
      );
      assert.deepEqual(
        { content: byCharacter.content, toolCalls: byCharacter.toolCalls, truncated: byCharacter.truncated },
        whole,
      );
    });
  }

  it("announces a call (id, name) before its arguments, then streams them as they come", () => {
    const text = `Sure.${call("get_weather", '{"city": "Paris"}')}`;
    const { events } = parseStreamed(
      text,
      [...text].map((_, index) => index),
    );
    const firstCall = events.findIndex((event) => event.type === "call");
    assert.equal(
      events
        .slice(0, firstCall)
        .map((event) => (event.type === "content" ? event.text : "?"))
        .join(""),
      "Sure.",
    );
    assert.deepEqual(events[firstCall], { type: "call", index: 0, id: "call_0", name: "get_weather" });
    assert.ok(events.slice(firstCall + 1).every((event) => event.type === "arguments"));
    const argumentEvents = events.filter((event) => event.type === "arguments");
    assert.ok(argumentEvents.length > 5, "arguments come in many fragments, not at the end");
  });

  it("holds back a partial <tool_call> and whitespace before a call, and releases them when they are text", () => {
    const parser = createToolCallParser({ format: "hermes", newId: counterIds() });
    assert.deepEqual(parser.push("Hi \n<tool_"), [{ type: "content", text: "Hi" }]);
    assert.deepEqual(parser.push("cal"), []);
    assert.deepEqual(parser.push("l!"), [{ type: "content", text: " \n<tool_call!" }]);
    assert.deepEqual(parser.finish(), { events: [], truncated: false });
  });
});
