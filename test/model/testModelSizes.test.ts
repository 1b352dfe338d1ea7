/** The test models' sizes: the parameter count known before making one (medium is ~0.5B, not made here), progress. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  defaultTestModelTokenizer,
  generateTestModel,
  testModelName,
  testModelParameterCount,
} from "../../src/model/index.ts";

describe("test model sizes", () => {
  it("knows each model's parameter count before making it, exactly what making it gives", () => {
    for (const [size, tokenizer] of [
      ["tiny", "bytes"],
      ["tiny", "gpt2"],
      ["small", "bytes"],
    ] as const) {
      const made = generateTestModel({ size, tokenizer });
      assert.equal(testModelParameterCount({ size, tokenizer }), made.parameterCount, `${size} ${tokenizer}`);
    }
  });

  it("medium is a ~0.5B model with gpt2's real vocabulary by default", () => {
    assert.equal(defaultTestModelTokenizer.medium, "gpt2");
    assert.equal(defaultTestModelTokenizer.small, "bytes", "the small model's bytes are unchanged");
    const count = testModelParameterCount({ size: "medium" });
    assert.ok(count > 450e6 && count < 600e6, String(count));
    // The vocabulary is a fifth of it: 2 x 50,259 tokens x 1,024 (embeddings and output layer).
    assert.equal(
      count - testModelParameterCount({ size: "medium", tokenizer: "bytes" }),
      2 * (50259 - 259) * 1024,
    );
    assert.equal(
      testModelName({ size: "medium", seed: 1, quant: "q8_0", tokenizer: defaultTestModelTokenizer.medium }),
      "mycel-test-medium-gpt2-s1-q8_0",
    );
  });

  it("reports progress while it makes the weights, up to the whole count", () => {
    const seen: { done: number; total: number }[] = [];
    const made = generateTestModel({ size: "tiny", onProgress: (progress) => seen.push(progress) });
    assert.ok(seen.length > 10, "a report per tensor");
    for (const [index, progress] of seen.entries()) {
      assert.equal(progress.total, made.parameterCount);
      if (index > 0) assert.ok(progress.done > (seen[index - 1]?.done ?? 0));
    }
    assert.equal(seen.at(-1)?.done, made.parameterCount);
  });
});
