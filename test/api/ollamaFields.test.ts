/** The table of Ollama's fields: every row refuses, accepts or maps what it says (unit test, no server). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  checkOllamaFields,
  ollamaBodyRules,
  ollamaChatRequestSchema,
  ollamaOptionRules,
  openAiFieldsOfOllama,
  samplingOfOllama,
} from "../../src/api/ollamaFields.ts";
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
      min_p: 0,
      repeat_penalty: 1,
      presence_penalty: 0,
      frequency_penalty: 0,
      repeat_last_n: 0,
      typical_p: 1,
      tfs_z: 1,
      mirostat: 0,
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
    assert.throws(
      () => check({ options: { flash_attention: true } }),
      /unsupported parameter 'options\.flash_attention'/,
    );
  });

  it("refuses the body fields it does not implement unless empty, and ignores keep_alive", () => {
    for (const [fields, param] of [
      [{ format: "json" }, "format"],
      [{ format: { type: "object" } }, "format"],
      [{ tools: [{ type: "function", function: { name: "f" } }] }, "tools"],
      [{ logprobs: true }, "logprobs"],
      [{ top_logprobs: 2 }, "top_logprobs"],
      [{ think: "high" }, "think"],
      [{ messages: [{ role: "assistant", content: "", tool_calls: [{}] }] }, "messages.0.tool_calls"],
      [{ messages: [{ role: "tool", content: "1", tool_name: "f" }] }, "messages.0.tool_name"],
    ] as const)
      assert.throws(
        () => check(fields),
        (error: unknown) => error instanceof InvalidInputError && error.param === param,
        param,
      );
    assert.doesNotThrow(() =>
      check({ format: "", tools: [], logprobs: false, top_logprobs: 0, think: false }),
    );
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
    });
    assert.deepEqual(samplingOfOllama({ options: { seed: -1, num_predict: -1 } }), {
      temperature: 0.8,
      topP: 0.9,
      topK: 40,
      seed: undefined,
      maxTokens: undefined,
      stop: [],
    });
    assert.throws(() => check({ options: { num_predict: 0 } }), /num_predict must be at least 1/);
  });
});
