import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runMycel, temporaryHome } from "../helpers.ts";

describe("mycel model make-test --tokenizer and mycel model info", () => {
  let directory: { home: string; remove: () => Promise<void> };
  const hashes = new Map<string, string>();
  before(async () => {
    directory = await temporaryHome("mycel-model-info-");
  });
  after(() => directory.remove());

  const mycel = (args: string[]) => runMycel(args, { home: directory.home });

  it("makes the real-tokenizer families under their own names, deterministically", async () => {
    for (const [tokenizer, name] of [
      ["gpt2", "mycel-test-tiny-gpt2-s1-q8_0"],
      ["llama3", "mycel-test-tiny-llama3-s1-q8_0"],
      ["bytes", "mycel-test-tiny-s1-f32"],
    ] as const) {
      const args = ["model", "make-test", "--tokenizer", tokenizer];
      if (tokenizer !== "bytes") args.push("--quant", "q8_0");
      const made = await mycel(args);
      assert.equal(made.code, 0, made.stderr);
      assert.match(made.stdout, new RegExp(`made: ${name}\\n`));
      const hash = /sha256: ([0-9a-f]{64})/.exec(made.stdout)?.[1];
      assert.ok(hash, made.stdout);
      hashes.set(tokenizer, hash);
    }
    assert.equal(
      hashes.get("bytes"),
      "ef5d3cca9059cf84a9ca06747e7508f5fff2bae4f44ce4f066641c220bc38165",
      "the byte-level model keeps its bytes",
    );
    const again = await mycel(["model", "make-test", "--tokenizer", "gpt2", "--quant", "q8_0"]);
    assert.match(again.stdout, /already in the store/);
    assert.equal(/sha256: ([0-9a-f]{64})/.exec(again.stdout)?.[1], hashes.get("gpt2"));
    const bad = await mycel(["model", "make-test", "--tokenizer", "sentencepiece"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /Allowed choices are bytes, gpt2, llama3/);
  });

  it("shows the tokenizer, vocabulary, special tokens and chat template of a store model", async () => {
    const info = await mycel(["model", "info", "mycel-test-tiny-gpt2-s1-q8_0"]);
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, new RegExp(`^mycel-test-tiny-gpt2-s1-q8_0  sha256:${hashes.get("gpt2")}\\n`));
    assert.match(info.stdout, /tokenizer: +gpt2 \(pre-tokenizer gpt-2\)/);
    assert.match(info.stdout, /vocabulary: +50,259 tokens, 50,000 merges/);
    assert.match(
      info.stdout,
      /special: +bos 50256 <\|endoftext\|>, eos 50258 <\|im_end\|>, eot 50258 <\|im_end\|>/,
    );
    assert.match(
      info.stdout,
      /control: +3 token\(s\)\n +50256 +<\|endoftext\|>\n +50257 +<\|im_start\|>\n +50258 +<\|im_end\|>\n/,
    );
    assert.match(info.stdout, /chat template: chatml, sha256 [0-9a-f]{16}, tools: yes/);
    assert.match(info.stdout, /registry: no chain configured/);

    const llama3 = await mycel(["model", "info", hashes.get("llama3")?.slice(0, 10) ?? "?"]);
    assert.equal(llama3.code, 0, llama3.stderr);
    assert.match(llama3.stdout, /tokenizer: +gpt2 \(pre-tokenizer llama-bpe\)/);
    assert.match(llama3.stdout, /vocabulary: +50,262 tokens/);
    assert.match(llama3.stdout, /add bos\/eos: +yes \/ unset/);
    assert.match(llama3.stdout, /bos 50257 <\|begin_of_text\|>, eos 50261 <\|eot_id\|>/);
    assert.match(llama3.stdout, /50259 +<\|start_header_id\|>/);
    assert.match(llama3.stdout, /chat template: llama3, sha256 [0-9a-f]{16}, tools: no/);

    const bytes = await mycel(["model", "info", "mycel-test-tiny-s1-f32"]);
    assert.match(bytes.stdout, /vocabulary: +259 tokens, 0 merges/);
    assert.match(bytes.stdout, /chat template: chatml, sha256 [0-9a-f]{16}, tools: no/);
  });

  it("prints JSON, reads a GGUF file by path, and refuses what is neither", async () => {
    const json = await mycel(["model", "info", "mycel-test-tiny-gpt2-s1-q8_0", "--json"]);
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout);
    assert.equal(parsed.model.hash, hashes.get("gpt2"));
    assert.equal(parsed.file.tokenizerModel, "gpt2");
    assert.equal(parsed.file.preTokenizer, "gpt-2");
    assert.equal(parsed.file.vocabularySize, 50259);
    assert.deepEqual(
      parsed.file.controlTokens.map((token: { id: number }) => token.id),
      [50256, 50257, 50258],
    );
    assert.equal(parsed.file.chatTemplates[0].family, "chatml");
    assert.equal(parsed.file.chatTemplates[0].supportsTools, true);
    assert.match(parsed.file.chatTemplates[0].sha256, /^[0-9a-f]{64}$/);
    assert.equal(parsed.registry, null);

    const path = join(directory.home, "models", `${hashes.get("llama3")}.gguf`);
    const byPath = await mycel(["model", "info", path]);
    assert.equal(byPath.code, 0, byPath.stderr);
    assert.match(byPath.stdout, new RegExp(`^${path}\\n`));
    assert.match(byPath.stdout, /chat template: llama3/);

    const notGguf = join(directory.home, "notes.txt");
    await writeFile(notGguf, "not a model at all, just some words");
    const refused = await mycel(["model", "info", notGguf]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /is not a valid GGUF file: bad magic/);
    const missing = await mycel(["model", "info", "no-such-model"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /model "no-such-model" not found/);
  });
});
