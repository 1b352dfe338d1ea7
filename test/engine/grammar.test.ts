import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  allowedTokens,
  allowsMostTokens,
  createEngine,
  createTokenBuckets,
  type Engine,
  type OutputConstraint,
  outputConstraintOf,
} from "../../src/engine/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { temporaryHome } from "../helpers.ts";

/** An enum, a boolean and a short string: what random weights still finish (integers: see the last test). */
const schema = {
  type: "object",
  properties: {
    mood: { type: "string", enum: ["calm", "curious", "restless"] },
    ok: { type: "boolean" },
    note: { type: "string", maxLength: 12 },
  },
  required: ["mood", "ok", "note"],
  additionalProperties: false,
};

describe("grammar-constrained generation (real llama.cpp, gpt2-family tiny model: 50,257 tokens)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let engine: Engine;
  let modelHash: string;
  let prompt: number[];
  let constraint: OutputConstraint;

  before(async () => {
    directory = await temporaryHome("mycel-grammar-");
    const store = openModelStore({ home: directory.home });
    const made = generateTestModel({ size: "tiny", tokenizer: "gpt2", seed: 1 });
    const { model } = await store.addBytes({ bytes: made.bytes, name: made.name, source: "test" });
    modelHash = model.hash;
    engine = createEngine({ options: { parallelism: 1, threadsPerSequence: 1, maxQueue: 4 } });
    await engine.loadModel({ hash: model.hash, path: store.pathOf(model.hash), name: model.name });
    prompt = engine.tokenizeChat({
      modelHash,
      messages: [{ role: "user", content: "Describe your mood as JSON." }],
    });
    const compiled = await outputConstraintOf({ type: "json_schema", json_schema: { name: "mood", schema } });
    assert.ok(compiled);
    constraint = compiled;
  });
  after(async () => {
    await engine.close();
    await directory.remove();
  });

  const generate = (parameters: { temperature: number; seed?: number; sampling?: "lazy" | "eager" }) =>
    engine.generate({
      modelHash,
      promptTokens: prompt,
      maxTokens: 96,
      temperature: parameters.temperature,
      seed: parameters.seed ?? 7,
      grammar: constraint.gbnf,
      grammarSampling: parameters.sampling,
    });

  it("greedy answers keep to the schema, lazily and eagerly alike, each token the top of its fingerprint", async () => {
    const lazy = await generate({ temperature: 0 });
    const eager = await generate({ temperature: 0, sampling: "eager" });
    assert.equal(lazy.finishReason, "stop");
    assert.equal(constraint.violation(lazy.text), undefined, lazy.text);
    const parsed = JSON.parse(lazy.text) as { mood: string; ok: boolean; note: string };
    assert.ok(["calm", "curious", "restless"].includes(parsed.mood));
    assert.equal(typeof parsed.ok, "boolean");
    assert.ok(parsed.note.length <= 12);
    // Lazy and eager draw from the same masked distribution: greedy, the same argmax at every position.
    assert.deepEqual(lazy.tokens, eager.tokens);
    assert.equal(lazy.text, eager.text);
    // The lazy path really ran: every position counted, most sampled again (random weights rarely write JSON).
    const counts = lazy.grammarSampling;
    assert.ok(counts);
    assert.equal(counts.kept + counts.resampled + counts.masked, lazy.tokens.length);
    assert.ok(counts.resampled > 0 && counts.masked > 0 && counts.walked > 0, JSON.stringify(counts));
    assert.equal(eager.grammarSampling, undefined);
    // Random weights never write this grammar's next token here, so every lazy position was drawn under the grammar:
    // under a mask (a walk's -Infinity biases, or the grammar), the very distribution an eager grammar records, or
    // by exclusion inside the string (forbidden tokens drawn first set to -Infinity one by one), whose fingerprint
    // may also list forbidden tokens the draw never reached. Either way the same top token, and the same gaps
    // between the tokens both list.
    assert.equal(counts.kept, 0);
    assert.ok(counts.excluded > 0 && counts.excluded < lazy.tokens.length, JSON.stringify(counts));
    for (const [index, fingerprint] of lazy.topLogits.entries()) {
      const masked = eager.topLogits[index];
      assert.ok(masked);
      assert.equal(fingerprint.ids[0], masked.ids[0], `position ${index}`);
      const gapOf = (logits: { ids: number[]; gaps: number[] }, token: number) =>
        logits.gaps[logits.ids.indexOf(token) - 1];
      for (const token of fingerprint.ids.slice(1).filter((id) => masked.ids.includes(id)))
        assert.ok(
          Math.abs((gapOf(fingerprint, token) ?? 0) - (gapOf(masked, token) ?? 0)) < 1e-4,
          `position ${index}`,
        );
    }
    // Greedy: the token is the most likely of the distribution it was drawn from (unconstrained when kept,
    // masked when sampled again), and every recorded token of an eager (masked) fingerprint is allowed.
    for (const [index, token] of lazy.tokens.entries()) assert.equal(lazy.topLogits[index]?.ids[0], token);
    const walker = await engine.walkGrammar({ modelHash, grammar: constraint.gbnf });
    for (const [index, token] of eager.tokens.entries()) {
      for (const id of eager.topLogits[index]?.ids ?? []) assert.ok(walker.allows(id), `position ${index}`);
      walker.accept(token);
    }
  });

  it("the same seed gives the same answer at temperature 1, and the answer keeps to the schema", async () => {
    const first = await generate({ temperature: 1, seed: 11 });
    const second = await generate({ temperature: 1, seed: 11 });
    assert.deepEqual(second.tokens, first.tokens);
    assert.deepEqual(second.topLogits, first.topLogits);
    assert.equal(first.finishReason, "stop");
    assert.equal(constraint.violation(first.text), undefined, first.text);
    // Sampled inside the string by exclusion (the grammar allows most tokens there): still one answer per seed.
    assert.ok((first.grammarSampling?.excluded ?? 0) > 0, JSON.stringify(first.grammarSampling));
    const other = await generate({ temperature: 1, seed: 12 });
    assert.equal(constraint.violation(other.text), undefined, other.text);
    assert.notDeepEqual(other.tokens, first.tokens, "another seed, another answer");
  });

  it("the prefix-tree walk finds exactly the tokens the grammar allows", async () => {
    const vocabularySize = engine.models()[0]?.vocabularySize ?? 0;
    assert.equal(vocabularySize, 50257 + 2, "gpt2's tokens and two ChatML specials");
    const buckets = createTokenBuckets({
      vocabularySize,
      bytesOf: (token) => engine.tokenBytes({ modelHash, token }),
      ordinary: (token) =>
        !engine.isEndOfGeneration({ modelHash, token }) && engine.tokenBytes({ modelHash, token }).length > 0,
    });
    // States of every kind: structure, an enum, a boolean, inside the string, and after the end.
    for (const text of [
      '{"',
      '{"mood": "cu',
      '{"mood": "calm", "ok": t',
      '{"mood":"calm","ok":true,"note":"a',
      '{"mood":"calm","ok":true,"note":""}',
    ]) {
      const walker = await engine.walkGrammar({ modelHash, grammar: constraint.gbnf });
      for (const token of engine.tokenizeText({ modelHash, text })) {
        assert.ok(walker.allows(token), text);
        walker.accept(token);
      }
      const everyAllowed: number[] = [];
      for (let token = 0; token < vocabularySize; token++) if (walker.allows(token)) everyAllowed.push(token);
      const walked = allowedTokens({ walker, buckets, budgetMs: Number.POSITIVE_INFINITY });
      assert.deepEqual(
        walked?.sort((a, b) => a - b),
        everyAllowed,
        text,
      );
      // Out of time, the walk gives up (it reads the clock every 64 questions; the top level alone has 256).
      assert.equal(allowedTokens({ walker, buckets, budgetMs: -1 }), undefined);
      // With too many questions ahead it gives up too: inside the string almost every token is allowed, and
      // that is where drawing by exclusion takes over (the probe finds most tokens allowed).
      const inString = text.endsWith('"a');
      assert.equal(allowsMostTokens({ walker, buckets }), inString, text);
      const bounded = allowedTokens({ walker, buckets, budgetMs: Number.POSITIVE_INFINITY, maxChecks: 4096 });
      assert.equal(bounded === undefined, inString, text);
      if (bounded)
        assert.deepEqual(
          bounded.sort((a, b) => a - b),
          everyAllowed,
          text,
        );
    }
  });
});
