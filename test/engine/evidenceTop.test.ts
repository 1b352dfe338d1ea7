import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { createEngine, type Engine, getSharedLlama } from "../../src/engine/index.ts";
import { cheapTopSplitOf } from "../../src/engine/samplerHook.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { temporaryHome } from "../helpers.ts";

const contextSize = 512;
const batchSize = 512;

describe("top logits without sorting the vocabulary (cheapTopSplitOf)", () => {
  const topOnly = [false, false, [[], false, false, false, 4], false];
  it("splits a greedy sampling that asks for its top logits", () => {
    const split = cheapTopSplitOf(topOnly, { temperature: 0 });
    assert.deepEqual(split?.mainRest, [false, false, false, false]);
    assert.deepEqual(split?.topConfig, { temperature: 1, topK: 4, topP: 1, minP: 0 });
  });
  it("keeps the filtered tokens and the total weight in the sampling, the top in the second sampler", () => {
    const split = cheapTopSplitOf([false, false, [[7, 9], true, false, false, 64], true], { temperature: 0 });
    assert.deepEqual(split?.mainRest, [false, false, [[7, 9], false, false, false, 0], true]);
    assert.equal(split?.topCount, 64);
  });
  it("keeps a sampled distribution's temperature and a smaller top-k", () => {
    const split = cheapTopSplitOf(topOnly, { temperature: 0.7, topK: 2 });
    assert.deepEqual(split?.topConfig, { temperature: 0.7, topK: 2, topP: 1, minP: 0 });
  });
  it("does not split where the top of a top-k cut is not the top sampled from, or nothing is asked", () => {
    assert.equal(cheapTopSplitOf(topOnly, { temperature: 1, topP: 0.9 }), undefined);
    assert.equal(cheapTopSplitOf(topOnly, { temperature: 1, minP: 0.05 }), undefined);
    assert.equal(cheapTopSplitOf(topOnly, { temperature: 0, grammarEvaluationState: {} }), undefined);
    assert.equal(cheapTopSplitOf([true, false, [[], false, false, false, 4], false], {}), undefined);
    assert.equal(cheapTopSplitOf([false, false, false, false], {}), undefined);
    assert.equal(cheapTopSplitOf([false, false, [[], false, false, false, 0], false], {}), undefined);
  });
});

describe("evidence top logits equal node-llama-cpp's whole-vocabulary sort (gpt2 vocabulary)", () => {
  let directory: Awaited<ReturnType<typeof temporaryHome>>;
  let engine: Engine;
  let modelHash: string;
  let reference: { model: LlamaModel; context: LlamaContext };
  let promptTokens: number[];

  before(async () => {
    directory = await temporaryHome("mycel-evidence-top-");
    const store = openModelStore({ home: directory.home });
    const made = generateTestModel({ size: "tiny", seed: 5, tokenizer: "gpt2" });
    const { model } = await store.addBytes({ bytes: made.bytes, name: made.name, source: "test" });
    engine = createEngine({ options: { parallelism: 1, threadsPerSequence: 1, contextSize, batchSize } });
    modelHash = (
      await engine.loadModel({ hash: model.hash, path: store.pathOf(model.hash), name: model.name })
    ).hash;
    const llama = await getSharedLlama();
    const referenceModel = await llama.loadModel({ modelPath: store.pathOf(model.hash), gpuLayers: 0 });
    const context = await referenceModel.createContext({ contextSize, batchSize, threads: 1, sequences: 1 });
    reference = { model: referenceModel, context };
    promptTokens = engine.tokenizeChat({
      modelHash,
      messages: [{ role: "user", content: "Name three trees of the northern forest." }],
    });
  });
  after(async () => {
    await reference?.context.dispose();
    await reference?.model.dispose();
    await engine?.close();
    await directory?.remove();
  });

  /** The top 4 raw logits at each output position, read by an unhooked sequence the way generation decodes. */
  async function referenceTop(outputTokens: readonly number[]) {
    const sequence = reference.context.getSequence();
    try {
      const ask = { generateNext: { logits: { filter: { tokens: [], includeTop: 4 } } } } as const;
      const tops: { ids: number[]; values: number[] }[] = [];
      let input: number[] = promptTokens;
      for (const token of outputTokens) {
        const items = input.map((value, index) =>
          index < input.length - 1 ? (value as Token) : ([value as Token, ask] as const),
        );
        const results = await sequence.controlledEvaluate(items as never);
        const logits = [...(results[results.length - 1]?.next?.logits?.entries() ?? [])];
        tops.push({ ids: logits.map(([id]) => id), values: logits.map(([, value]) => value) });
        input = [token];
      }
      return tops;
    } finally {
      sequence.dispose();
    }
  }

  for (const temperature of [0, 0.8]) {
    it(`records the same top ids and gaps at temperature ${temperature}`, async () => {
      const result = await engine.generate({ modelHash, promptTokens, maxTokens: 24, temperature, seed: 11 });
      assert.ok(result.tokens.length >= 8, `${result.tokens.length} tokens`);
      const expected = await referenceTop(result.tokens);
      for (const [index, top] of result.topLogits.entries()) {
        const want = expected[index] as { ids: number[]; values: number[] };
        assert.deepEqual(top.ids, want.ids, `top ids at position ${index}`);
        for (const [slot, gap] of top.gaps.entries()) {
          const raw = (want.values[0] as number) - (want.values[slot + 1] as number);
          assert.ok(Math.abs(gap - raw) < 1e-4, `gap ${slot} at position ${index}: ${gap} vs ${raw}`);
        }
      }
    });
  }

  it("evaluates the same top log-probabilities, included tokens and normalizers as a whole sort", async () => {
    const generated = await engine.generate({
      modelHash,
      promptTokens,
      maxTokens: 16,
      temperature: 0,
      seed: 1,
    });
    const outputTokens = generated.tokens;
    const includeTokens = outputTokens.map((token) => [(token + 1) % 50_000, 13]);
    const evaluation = await engine.evaluate({
      modelHash,
      promptTokens,
      outputTokens,
      topK: 16,
      includeTokens,
    });
    const sequence = reference.context.getSequence();
    try {
      const all = [...promptTokens, ...outputTokens];
      const first = promptTokens.length - 1;
      const items = all.map((token, index) => {
        if (index < first) return token as Token;
        const offset = index - first;
        const extra = includeTokens[offset] ?? [];
        const wanted = offset < outputTokens.length ? [outputTokens[offset] as number, ...extra] : extra;
        return [
          token as Token,
          {
            generateNext: {
              logits: { filter: { tokens: wanted as Token[], includeTop: 16, includeMax: true } },
              totalLogitWeight: true,
            },
          },
        ] as const;
      });
      const results = await sequence.controlledEvaluate(items as never);
      for (const [offset, position] of evaluation.positions.entries()) {
        const next = results[first + offset]?.next;
        const entries = [...(next?.logits?.entries() ?? [])];
        const normalizer = (entries[0]?.[1] ?? 0) + Math.log(next?.totalLogitWeight ?? 1);
        // llama.cpp sums the vocabulary's weights in float32, here in another order: 1e-4 nats apart at most seen.
        assert.ok(
          Math.abs(position.logNormalizer - normalizer) < 1e-3,
          `normalizer at ${offset}: ${position.logNormalizer} vs ${normalizer}`,
        );
        assert.deepEqual(
          position.top.map((entry) => entry.token),
          entries.slice(0, 16).map(([token]) => token),
          `top tokens at ${offset}`,
        );
        for (const included of position.included) {
          const logit = next?.logits?.get(included.token as Token) as number;
          assert.ok(Math.abs(included.logprob - (logit - normalizer)) < 1e-3, `included ${included.token}`);
        }
      }
    } finally {
      sequence.dispose();
    }
  });
});
