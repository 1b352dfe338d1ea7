/**
 * Audits of constrained answers: a JSON schema (grammar), logit biases and repetition penalties are re-applied by
 * the validator. Honest answers pass at temperature 0 and 1; a provider that drops one constraint is caught.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Engine } from "../../src/engine/index.ts";
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
