/** The table of Ollama's fields: every row refuses, accepts or maps what it says (unit test, no server). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  checkOllamaEmbedFields,
  checkOllamaFields,
  ollamaBodyRules,
  ollamaChatRequestSchema,
  ollamaEmbeddingsRequestSchema,
  ollamaEmbedOptionRules,
  ollamaEmbedRequestSchema,
  ollamaGenerateRequestSchema,
  ollamaOptionRules,
  ollamaSchemaName,
  openAiFieldsOfOllama,
  samplingOfOllama,
} from "../../src/api/ollamaFields.ts";
import { capabilitiesOf } from "../../src/api/ollamaModels.ts";
import { parseRequest } from "../../src/api/schemas.ts";
import { InvalidInputError } from "../../src/errors/index.ts";

const base = { model: "m", messages: [{ role: "user", content: "hi" }] };
const check = (body: Record<string, unknown>) =>
  checkOllamaFields(parseRequest(ollamaChatRequestSchema, { ...base, ...body }));

/** A value no rule takes as neutral. */
const odd = 0.37;

describe("Ollama's field table", () => {
  it("refuses every not-yet and refused option naming it, and accepts its neutral value", () => {
    const neutral: Record<string, unknown> = {
      repeat_last_n: 64,
      typical_p: 1,
      tfs_z: 1,
      mirostat: 0,
      penalize_newline: true,
    };
    for (const [name, rule] of Object.entries(ollamaOptionRules)) {
      if (rule.status === "mapped") continue;
      if (rule.status === "ignored") {
        assert.doesNotThrow(() => check({ options: { [name]: odd } }), name);
        continue;
      }
      assert.throws(
        () => check({ options: { [name]: odd } }),
        (error: unknown) =>
          error instanceof InvalidInputError &&
          error.param === `options.${name}` &&
          error.code === "unsupported_parameter" &&
          error.shortMessage.includes(rule.status === "not_yet" ? "not supported yet" : rule.why),
        name,
      );
      if (name in neutral) assert.doesNotThrow(() => check({ options: { [name]: neutral[name] } }), name);
    }
    assert.match(
      String(ollamaOptionRules.repeat_last_n?.status === "refused" && ollamaOptionRules.repeat_last_n.why),
      /fixed window of the last 64 output tokens/,
    );
    assert.doesNotThrow(() => check({ options: { repeat_last_n: 0 } }), "0: no penalties");
    assert.throws(
      () => check({ options: { flash_attention: true } }),
      /unsupported parameter 'options\.flash_attention'/,
    );
  });

  it("refuses the body fields it does not implement unless empty, and ignores keep_alive", () => {
    for (const [fields, param] of [
      [{ think: "high" }, "think"],
      [{ messages: [{ role: "user", content: "hi", thinking: "hm" }] }, "messages.0.thinking"],
    ] as const)
      assert.throws(
        () => check(fields),
        (error: unknown) => error instanceof InvalidInputError && error.param === param,
        param,
      );
    assert.doesNotThrow(() =>
      check({ format: "", tools: [], logprobs: false, top_logprobs: 0, think: false }),
    );
    assert.equal(ollamaBodyRules.format?.status, "mapped");
    assert.equal(ollamaBodyRules.tools?.status, "mapped");
    assert.doesNotThrow(() => check({ keep_alive: -1 }));
    assert.equal(ollamaBodyRules.keep_alive?.status, "ignored");
  });

  it("maps Ollama's options onto the OpenAI side's names, with Ollama's defaults", () => {
    const options = { temperature: 0.2, top_p: 0.5, top_k: 7, seed: 3, num_predict: 12, stop: ["\n"] };
    assert.deepEqual(openAiFieldsOfOllama({ options, keep_alive: "5m", num_ctx: 1 }), {
      temperature: 0.2,
      top_p: 0.5,
      top_k: 7,
      seed: 3,
      max_tokens: 12,
      stop: ["\n"],
    });
    assert.deepEqual(samplingOfOllama({ options }), {
      temperature: 0.2,
      topP: 0.5,
      topK: 7,
      seed: 3,
      maxTokens: 12,
      stop: ["\n"],
      repeatPenalty: 1.1,
    });
    assert.deepEqual(samplingOfOllama({ options: { seed: -1, num_predict: -1 } }), {
      temperature: 0.8,
      topP: 0.9,
      topK: 40,
      seed: undefined,
      maxTokens: undefined,
      stop: [],
      repeatPenalty: 1.1,
    });
    assert.throws(() => check({ options: { num_predict: 0 } }), /num_predict must be at least 1/);
  });

  it("maps the penalties, min_p, format and logprobs onto the constraints, with Ollama's repeat_penalty 1.1", () => {
    const options = { min_p: 0.05, repeat_penalty: 1.3, presence_penalty: 0.5, frequency_penalty: -0.25 };
    const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] };
    assert.deepEqual(
      openAiFieldsOfOllama({ options, format: schema, logprobs: true, top_logprobs: 3, keep_alive: 0 }),
      {
        min_p: 0.05,
        repeat_penalty: 1.3,
        presence_penalty: 0.5,
        frequency_penalty: -0.25,
        response_format: {
          type: "json_schema",
          json_schema: { name: ollamaSchemaName, schema, strict: true },
        },
        logprobs: true,
        top_logprobs: 3,
      },
    );
    const sampling = samplingOfOllama({
      options: { ...options, repeat_last_n: 64 },
      format: "json",
      logprobs: true,
    });
    assert.deepEqual(
      {
        minP: sampling.minP,
        repeatPenalty: sampling.repeatPenalty,
        presencePenalty: sampling.presencePenalty,
        frequencyPenalty: sampling.frequencyPenalty,
        logprobs: sampling.logprobs,
        responseFormat: sampling.responseFormat,
      },
      {
        minP: 0.05,
        repeatPenalty: 1.3,
        presencePenalty: 0.5,
        frequencyPenalty: -0.25,
        logprobs: 0,
        responseFormat: { type: "json_object" },
      },
    );
    // Left out: Ollama's repeat_penalty 1.1; repeat_last_n 0 or repeat_penalty 1: none; neutral values leave no field.
    assert.equal(samplingOfOllama({}).repeatPenalty, 1.1);
    assert.equal(samplingOfOllama({ options: { repeat_last_n: 0 } }).repeatPenalty, undefined);
    const neutral = samplingOfOllama({
      options: { repeat_penalty: 1, min_p: 0, presence_penalty: 0, frequency_penalty: 0 },
      format: "",
      logprobs: false,
      top_logprobs: 0,
    });
    for (const key of [
      "repeatPenalty",
      "minP",
      "presencePenalty",
      "frequencyPenalty",
      "logprobs",
      "responseFormat",
    ])
      assert.equal(key in neutral, false, key);
  });

  it("refuses out-of-range options, contradictions and schemas no grammar enforces, naming the field", () => {
    for (const [fields, param, message] of [
      [{ options: { min_p: 1.5 } }, "options.min_p", /invalid value for 'options\.min_p'/],
      [{ options: { repeat_penalty: 0 } }, "options.repeat_penalty", /'options\.repeat_penalty'/],
      [{ options: { presence_penalty: 3 } }, "options.presence_penalty", /'options\.presence_penalty'/],
      [{ options: { frequency_penalty: -2.5 } }, "options.frequency_penalty", /'options\.frequency_penalty'/],
      [{ options: { repeat_last_n: -1 } }, "options.repeat_last_n", /fixed window of the last 64/],
      [{ options: { repeat_last_n: 128 } }, "options.repeat_last_n", /send 64/],
      [
        { options: { repeat_last_n: 0, repeat_penalty: 1.2 } },
        "options.repeat_last_n",
        /turns the penalties off, and options\.repeat_penalty asks for one/,
      ],
      [{ options: { penalize_newline: false } }, "options.penalize_newline", /newlines included/],
      [{ format: "xml" }, "format", /format is "json" or a JSON schema/],
      [{ format: { type: "no-such-type" } }, "format", /'?format'? cannot be enforced/],
      [
        { format: { type: "string", pattern: "a+" } },
        "format",
        /format cannot be enforced: the keyword "pattern"/,
      ],
      [{ top_logprobs: 2 }, "top_logprobs", /top_logprobs needs logprobs: true/],
      [{ logprobs: true, top_logprobs: 21 }, "top_logprobs", /'top_logprobs'/],
    ] as const)
      assert.throws(
        () => check(fields),
        (error: unknown) =>
          error instanceof InvalidInputError && error.param === param && message.test(error.shortMessage),
        `${JSON.stringify(fields)}`,
      );
  });

  it("on the embeddings routes, ignores what /api/chat ignores and refuses every sampling option, naming it", () => {
    const checkEmbed = (body: Record<string, unknown>) =>
      checkOllamaEmbedFields(parseRequest(ollamaEmbedRequestSchema, { model: "m", input: "hi", ...body }));
    const checkLegacy = (body: Record<string, unknown>) =>
      checkOllamaEmbedFields(
        parseRequest(ollamaEmbeddingsRequestSchema, { model: "m", prompt: "hi", ...body }),
      );
    assert.deepEqual(Object.keys(ollamaEmbedOptionRules).sort(), Object.keys(ollamaOptionRules).sort());
    for (const [name, rule] of Object.entries(ollamaEmbedOptionRules)) {
      if (ollamaOptionRules[name]?.status === "ignored") {
        assert.equal(rule.status, "ignored", name);
        assert.doesNotThrow(() => checkEmbed({ options: { [name]: odd } }), name);
        continue;
      }
      for (const run of [checkEmbed, checkLegacy])
        assert.throws(
          () => run({ options: { [name]: odd } }),
          (error: unknown) =>
            error instanceof InvalidInputError &&
            error.param === `options.${name}` &&
            error.code === "unsupported_parameter" &&
            /an embedding is not sampled/.test(error.shortMessage),
          name,
        );
    }
    // null is "not given", as on the other routes (Python clients send their unset options so).
    assert.doesNotThrow(() => checkEmbed({ options: { temperature: null }, keep_alive: -1, truncate: true }));
    for (const [body, message] of [
      [{ options: { flash_attention: true } }, /unsupported parameter 'options\.flash_attention'/],
      [{ format: "json" }, /'format'/],
      [{ prompt: "hi" }, /'prompt'/],
      [{ input: [1, 2] }, /input must be a string or an array/],
      [{ truncate: "yes" }, /'truncate'/],
      [{ dimensions: 0 }, /'dimensions'/],
    ] as const)
      assert.throws(() => checkEmbed(body), message, JSON.stringify(body));
    assert.throws(() => checkLegacy({ input: "hi" }), /'input'/);
  });

  it("takes tools, assistant tool calls and tool messages in Ollama's shapes, and refuses them misplaced", () => {
    const weather = {
      type: "function",
      function: { name: "get_weather", description: "d", parameters: { type: "object", properties: {} } },
    };
    const conversation = [
      { role: "user", content: "weather?" },
      {
        role: "assistant",
        content: "",
        tool_calls: [{ function: { index: 0, name: "get_weather", arguments: { city: "Paris" } } }],
      },
      { role: "tool", content: "22 C", tool_name: "get_weather" },
    ];
    assert.doesNotThrow(() => check({ tools: [weather], messages: conversation }));
    const refusals: [Record<string, unknown>, string, RegExp][] = [
      [{ tools: [weather], format: "json" }, "format", /format cannot be combined with tools/],
      [{ tools: [{ type: "function", function: { name: "a b" } }] }, "tools.0.function.name", /letters/],
      [
        { tools: [{ type: "function", function: { name: "f", strange: 1 } }] },
        "tools.0.function.strange",
        /unsupported/,
      ],
      [
        {
          messages: [{ role: "user", content: "", tool_calls: [{ function: { name: "f", arguments: {} } }] }],
        },
        "messages.0.tool_calls",
        /belong to an assistant message, not a user one/,
      ],
      [
        { messages: [{ role: "user", content: "x", tool_name: "f" }] },
        "messages.0.tool_name",
        /belongs to a tool message/,
      ],
      [
        {
          messages: [
            { role: "assistant", content: "", tool_calls: [{ function: { name: "f", arguments: "{}" } }] },
          ],
        },
        "messages.0.tool_calls.0.function.arguments",
        /./,
      ],
      [
        {
          messages: [{ role: "assistant", content: "", tool_calls: [{ id: "c", function: { name: "f" } }] }],
        },
        "messages.0.tool_calls.0.id",
        /unsupported/,
      ],
    ];
    for (const [fields, param, message] of refusals)
      assert.throws(
        () => check(fields),
        (error: unknown) =>
          error instanceof InvalidInputError && error.param === param && message.test(error.shortMessage),
        JSON.stringify(fields),
      );
    // /api/generate has no tools, as Ollama's: a 400 naming the field.
    assert.throws(
      () => parseRequest(ollamaGenerateRequestSchema, { model: "m", prompt: "p", tools: [weather] }),
      (error: unknown) => error instanceof InvalidInputError && /tools/.test(error.shortMessage),
    );
  });

  it("names the model's capabilities as Ollama does: completion, embedding, and tools once /api/chat takes them", () => {
    const model = (capabilities?: string[]) => ({ name: "m", hash: "0".repeat(64), extra: { capabilities } });
    assert.deepEqual(capabilitiesOf(model(["chat", "completion", "embeddings", "grammar"])), [
      "completion",
      "embedding",
    ]);
    assert.deepEqual(capabilitiesOf(model(["chat", "completion", "grammar"])), ["completion"]);
    assert.deepEqual(capabilitiesOf(model(["embeddings"])), ["embedding"]);
    // Without a list (an announcement that has none): chat and completion.
    assert.deepEqual(capabilitiesOf(model(undefined)), ["completion"]);
    assert.deepEqual(capabilitiesOf(model(["chat", "completion", "tools"])), ["completion", "tools"]);
  });
});
