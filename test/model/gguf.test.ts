import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { readGgufFileInfo } from "node-llama-cpp";
import { encodeTensorData, float16BitsToNumber, float32ToFloat16Bits } from "../../src/model/gguf.ts";
import { generateTestModel, testModelChatTemplate } from "../../src/model/index.ts";
import { temporaryHome } from "../helpers.ts";

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

describe("GGUF writer and test models", () => {
  let directory: { home: string; remove: () => Promise<void> };
  before(async () => {
    directory = await temporaryHome("mycel-gguf-");
  });
  after(() => directory.remove());

  it("same arguments give the same bytes and sha256", () => {
    const first = generateTestModel({ size: "tiny", seed: 7, quant: "f16" });
    const second = generateTestModel({ size: "tiny", seed: 7, quant: "f16" });
    assert.equal(sha256(first.bytes), sha256(second.bytes));
    assert.equal(first.name, "mycel-test-tiny-s7-f16");
  });

  it("another seed or quant gives another hash", () => {
    const base = sha256(generateTestModel({ size: "tiny", seed: 7 }).bytes);
    assert.notEqual(sha256(generateTestModel({ size: "tiny", seed: 8 }).bytes), base);
    assert.notEqual(sha256(generateTestModel({ size: "tiny", seed: 7, quant: "q8_0" }).bytes), base);
  });

  it("readGgufFileInfo reads back what was written", async () => {
    const made = generateTestModel({ size: "tiny", seed: 3, quant: "q8_0" });
    const path = join(directory.home, "tiny.gguf");
    await writeFile(path, made.bytes);
    const info = await readGgufFileInfo(path, { readTensorInfo: true, logWarnings: false });
    assert.equal(info.version, 3);
    const metadata = info.metadata as unknown as {
      general: { architecture: string; name: string; license: string; file_type: number };
      tokenizer: { chat_template: string; ggml: { model: string; tokens: string[]; eos_token_id: number } };
      llama: { embedding_length: number; block_count: number; context_length: number };
    };
    assert.equal(metadata.general.architecture, "llama");
    assert.equal(metadata.general.name, made.name);
    assert.equal(metadata.general.license, "Apache-2.0");
    assert.equal(metadata.general.file_type, 7);
    assert.equal(metadata.tokenizer.ggml.model, "gpt2");
    assert.equal(metadata.tokenizer.ggml.tokens.length, 259);
    assert.equal(metadata.tokenizer.ggml.tokens[metadata.tokenizer.ggml.eos_token_id], "<|im_end|>");
    assert.equal(metadata.tokenizer.chat_template, testModelChatTemplate);
    assert.equal(metadata.llama.embedding_length, 64);
    assert.equal(metadata.llama.block_count, 2);
    const tensors = info.tensorInfo ?? [];
    assert.equal(tensors.length, 2 + 2 * 9 + 1);
    const parameters = tensors.reduce(
      (sum, tensor) => sum + tensor.dimensions.reduce<number>((p, d) => p * Number(d), 1),
      0,
    );
    assert.equal(parameters, made.parameterCount);
    assert.ok(parameters >= 100_000 && parameters <= 1_000_000, `tiny has ${parameters} params`);
    const embedding = tensors.find((tensor) => tensor.name === "token_embd.weight");
    assert.deepEqual(embedding?.dimensions.map(Number), [64, 259]);
  });

  it("the small model has 25-30M parameters", () => {
    const small = generateTestModel({ size: "small" });
    assert.ok(
      small.parameterCount >= 25_000_000 && small.parameterCount <= 30_000_000,
      `${small.parameterCount}`,
    );
    assert.equal(small.quant, "q8_0");
  });

  it("f16 conversion rounds to nearest even and round-trips representable values", () => {
    for (const value of [0, 1, -2.5, 2 ** -14, 2 ** -24, 65504, -0.333251953125]) {
      assert.equal(float16BitsToNumber(float32ToFloat16Bits(value)), value);
    }
    assert.equal(float32ToFloat16Bits(1e6), 0x7c00, "overflow becomes infinity");
    assert.equal(float16BitsToNumber(float32ToFloat16Bits(1 + 2 ** -11)), 1, "a tie rounds to even");
    assert.equal(
      float16BitsToNumber(float32ToFloat16Bits(1 + 3 * 2 ** -11)),
      1 + 2 ** -9,
      "a tie rounds to even (up)",
    );
  });

  it("q8_0 blocks hold an f16 scale and int8 values within half a step", () => {
    const values = Float32Array.from({ length: 64 }, (_, index) => Math.sin(index) * (index < 32 ? 1 : 0.01));
    const encoded = encodeTensorData(values, "q8_0");
    assert.equal(encoded.length, 2 * 34);
    const view = new DataView(encoded.buffer);
    for (let block = 0; block < 2; block++) {
      const scale = float16BitsToNumber(view.getUint16(block * 34, true));
      for (let i = 0; i < 32; i++) {
        const restored = scale * view.getInt8(block * 34 + 2 + i);
        assert.ok(Math.abs(restored - (values[block * 32 + i] ?? 0)) <= scale * 0.51 + 1e-6);
      }
    }
    assert.throws(() => encodeTensorData(new Float32Array(33), "q8_0"), /multiple of 32/);
  });
});
