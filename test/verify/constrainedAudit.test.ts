/**
 * Audits of constrained answers: a JSON schema (grammar), logit biases and repetition penalties are re-applied by
 * the validator. Honest answers pass at temperature 0 and 1 (on gpt2's vocabulary too, where the lazy grammar draws
 * by exclusion inside strings); a provider that drops one constraint is caught.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createEngine, type Engine } from "../../src/engine/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { buildFingerprints, type InferenceRequest, modelHashToBytes32 } from "../../src/protocol/index.ts";
import { type AuditReasonCode, type AuditVerdict, auditAnswer } from "../../src/verify/index.ts";
import {
  addCheatModels,
  type CheatModels,
  type ConstraintCheatName,
  cheatEngine,
  constrainedFixtureRequest,
  constraintCheatingAnswer,
  constraintCheatNames,
  constraintOfCheat,
  fixtureSchema,
  generateWith,
  honestAnswer,
} from "../fixtures/cheats.ts";
import { temporaryHome } from "../helpers.ts";

const describeVerdict = (verdict: AuditVerdict) =>
  `${verdict.verdict}: ${JSON.stringify(verdict.reasons)} (worst chunk ${verdict.metrics.worstChunkGapError}, max ${verdict.metrics.maxGapError})`;

/** The reasons each cheat may produce: the dropped constraint shows as disallowed tokens, wrong argmax or gaps. */
const allowedCodes: Record<ConstraintCheatName, readonly AuditReasonCode[]> = {
  ignores_schema: ["constraint_violated", "not_argmax", "fingerprint_mismatch", "implausible_token"],
  ignores_logit_bias: ["not_argmax", "fingerprint_mismatch", "implausible_token"],
  drops_penalties: ["not_argmax", "fingerprint_mismatch", "implausible_token"],
};

describe("audits of constrained answers (grammar, logit_bias, penalties re-applied)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let models: CheatModels;
  let engine: Engine;

  before(async () => {
    directory = await temporaryHome("mycel-constrained-audit-");
    models = await addCheatModels(directory.home);
    engine = await cheatEngine({ home: directory.home, models });
  });
  after(async () => {
    await engine.close();
    await directory.remove();
  });

  for (const constraint of ["json_schema", "logit_bias", "penalties"] as const)
    for (const temperature of [0, 1])
      it(`passes honest ${constraint} answers at temperature ${temperature}`, async () => {
        for (const index of [temperature]) {
          const request = constrainedFixtureRequest({ models, index, constraint, temperature });
          const input = await honestAnswer({ engine, models, request });
          const verdict = await auditAnswer({ engine, input });
          assert.equal(verdict.verdict, "pass", `request ${index}: ${describeVerdict(verdict)}`);
        }
      });

  it("an honest json_schema answer that ends is JSON of the schema", async () => {
    const request = constrainedFixtureRequest({
      models,
      index: 3,
      constraint: "json_schema",
      temperature: 0,
    });
    const input = await honestAnswer({ engine, models, request });
    assert.equal(input.finishReason, "stop", "the answer ended (the schema is closed)");
    const text = engine.detokenize({ modelHash: models.claimed, tokens: input.outputTokens.slice(0, -1) });
    const value = JSON.parse(text) as Record<string, unknown>;
    assert.deepEqual(Object.keys(value).sort(), Object.keys(fixtureSchema.properties).sort());
    assert.ok(["yes", "no", "maybe"].includes(value.verdict as string), text);
    assert.equal(typeof value.sure, "boolean");
  });

  for (const cheat of constraintCheatNames)
    it(`catches ${cheat} at temperature 0 and 1`, async () => {
      for (const [index, temperature] of [
        [0, 0],
        [1, 1],
        [2, 0],
      ] as const) {
        const request = constrainedFixtureRequest({
          models,
          index,
          constraint: constraintOfCheat[cheat],
          temperature,
        });
        const input = await constraintCheatingAnswer({ engine, models, request, cheat });
        const verdict = await auditAnswer({ engine, input });
        assert.equal(verdict.verdict, "fail", `${cheat}, request ${index}: ${describeVerdict(verdict)}`);
        for (const reason of verdict.reasons)
          assert.ok(allowedCodes[cheat].includes(reason.code), `${cheat}: unexpected ${reason.code}`);
      }
    });

  it("a json_schema answer whose finished text breaks the schema fails with constraint_violated", async () => {
    const request = constrainedFixtureRequest({
      models,
      index: 4,
      constraint: "json_schema",
      temperature: 0,
    });
    const input = await constraintCheatingAnswer({ engine, models, request, cheat: "ignores_schema" });
    const verdict = await auditAnswer({ engine, input });
    assert.ok(
      verdict.reasons.some((reason) => reason.code === "constraint_violated"),
      describeVerdict(verdict),
    );
  });
});

describe("audits of json_schema answers on a real-size vocabulary (lazy grammar: masks and exclusion)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let engine: Engine;
  let modelHash: string;

  before(async () => {
    directory = await temporaryHome("mycel-constrained-audit-gpt2-");
    const store = openModelStore({ home: directory.home });
    const made = generateTestModel({ size: "tiny", tokenizer: "gpt2", seed: 1 });
    const { model } = await store.addBytes({ bytes: made.bytes, name: made.name, source: "test" });
    modelHash = model.hash;
    engine = createEngine({ options: { parallelism: 1, threadsPerSequence: 1, maxQueue: 4 } });
    await engine.loadModel({ hash: model.hash, path: store.pathOf(model.hash), name: model.name });
  });
  after(async () => {
    await engine.close();
    await directory.remove();
  });

  // Inside the schema's string the provider draws by exclusion (the fingerprint: the model's own distribution when
  // sampled, the kept draw's when greedy), elsewhere under a mask: the audit accepts every position of both. With a
  // newline (forbidden inside a JSON string) made the greedy favourite, exclusion must pass over it at every string
  // position: a fingerprint naming it on top there would be one the grammar forbids.
  for (const { temperature, favourNewline } of [
    { temperature: 0, favourNewline: false },
    { temperature: 1, favourNewline: false },
    { temperature: 0, favourNewline: true },
  ])
    it(`passes honest answers drawn partly by exclusion at temperature ${temperature}${favourNewline ? ", a newline favoured" : ""}`, async () => {
      const [newline] = engine.tokenizeText({ modelHash, text: "\n" });
      assert.ok(newline !== undefined);
      for (const seed of [3, 4]) {
        const request: InferenceRequest = {
          model_hash: modelHashToBytes32(modelHash),
          kind: "chat",
          messages: [{ role: "user", content: `Give your verdict as JSON (${seed}).` }],
          max_tokens: 64,
          temperature,
          top_p: 1,
          top_k: 0,
          seed,
          stop: [],
          response_format: {
            type: "json_schema",
            json_schema: { name: "verdict", schema: fixtureSchema, strict: true },
          },
          ...(favourNewline ? { logit_bias: { [String(newline)]: 100 } } : {}),
        };
        const promptTokens = engine.tokenizeChat({ modelHash, messages: request.messages ?? [] });
        const result = await generateWith({ engine, modelHash, request, promptTokens });
        assert.ok((result.grammarSampling?.excluded ?? 0) > 0, JSON.stringify(result.grammarSampling));
        const verdict = await auditAnswer({
          engine,
          input: {
            modelHash: request.model_hash,
            request,
            promptTokens,
            outputTokens: result.tokens,
            fingerprints: buildFingerprints(result.topLogits),
            finishReason: result.finishReason === "stop" ? "stop" : "length",
          },
        });
        assert.equal(verdict.verdict, "pass", `seed ${seed}: ${describeVerdict(verdict)}`);
      }
    });
});
