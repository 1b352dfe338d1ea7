import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { evaluationBatches } from "../../src/engine/engine.ts";
import { auditBatchSize, reEvaluationBatchesOf } from "../../src/verify/index.ts";

const request = { prefix_tokens: undefined } as unknown as Parameters<
  typeof reEvaluationBatchesOf
>[0]["request"];
const prompt = (length: number) => Array.from({ length }, (_, index) => index);

describe("an audit's re-evaluation batches (reEvaluationBatchesOf)", () => {
  it("prefills the prompt in the provider's batches, then one thread's output in small batches", () => {
    const batches = reEvaluationBatchesOf({
      promptTokens: prompt(700),
      request,
      decoding: { batchSize: 256, threads: 1 },
    });
    assert.deepEqual(batches, { prefill: { tokens: 700, batchSize: 256 }, batchSize: auditBatchSize });
  });
  it("re-evaluates a multi-thread provider's output in its prefill batches", () => {
    const batches = reEvaluationBatchesOf({
      promptTokens: prompt(70),
      request,
      decoding: { batchSize: 512, threads: 4 },
    });
    assert.deepEqual(batches, { prefill: { tokens: 70, batchSize: 512 }, batchSize: 512 });
  });
  it("assumes batch 512 on one thread for evidence that does not say, and bounds what a provider may state", () => {
    assert.deepEqual(reEvaluationBatchesOf({ promptTokens: prompt(10), request }), {
      prefill: { tokens: 10, batchSize: 512 },
      batchSize: auditBatchSize,
    });
    const tiny = reEvaluationBatchesOf({
      promptTokens: prompt(10),
      request,
      decoding: { batchSize: 1, threads: 1 },
    });
    assert.equal(tiny.prefill.batchSize, 16);
    const huge = reEvaluationBatchesOf({
      promptTokens: prompt(10),
      request,
      decoding: { batchSize: 4096, threads: 1 },
    });
    assert.equal(huge.prefill.batchSize, 512);
  });
  it("leaves a continuation's replayed prefix out of the prefill, and keeps a long one in it", () => {
    const short = { prefix_tokens: prompt(20) } as typeof request;
    assert.equal(reEvaluationBatchesOf({ promptTokens: prompt(120), request: short }).prefill.tokens, 100);
    const long = { prefix_tokens: prompt(300) } as typeof request;
    assert.equal(reEvaluationBatchesOf({ promptTokens: prompt(400), request: long }).prefill.tokens, 400);
  });
});

describe("the engine's evaluation batches (evaluationBatches)", () => {
  it("splits the prefill by its size and the rest by the batch size, each within the engine's", () => {
    const batches = evaluationBatches({
      input: { prefill: { tokens: 1100, batchSize: 512 }, batchSize: 32 },
      total: 1170,
      engineBatchSize: 512,
    });
    assert.deepEqual(
      batches.map((batch) => [batch.start, batch.end]),
      [
        [0, 512],
        [512, 1024],
        [1024, 1100],
        [1100, 1132],
        [1132, 1164],
        [1164, 1170],
      ],
    );
  });
  it("never exceeds the engine's batch size and covers every token once", () => {
    const batches = evaluationBatches({
      input: { prefill: { tokens: 50, batchSize: 4096 } },
      total: 90,
      engineBatchSize: 32,
    });
    assert.deepEqual(
      batches.map((batch) => [batch.start, batch.end]),
      [
        [0, 32],
        [32, 50],
        [50, 82],
        [82, 90],
      ],
    );
  });
});
