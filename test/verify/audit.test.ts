import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Hex, keccak256, stringToBytes } from "viem";
import { createEngine, type Engine, type EngineOptions } from "../../src/engine/index.ts";
import { InvalidInputError, ModelNotFoundError } from "../../src/errors/index.ts";
import { openModelStore } from "../../src/model/index.ts";
import {
  type AuditInput,
  evidenceCommitment,
  type FingerprintChunk,
  hashRequest,
  hashTokenIds,
  type InferenceRequest,
  receiptMessageFromJson,
  type SignedReceipt,
  signReceipt,
} from "../../src/protocol/index.ts";
import {
  type Auditor,
  type AuditReasonCode,
  type AuditVerdict,
  auditAnswer,
  createAuditor,
  tolerancesFor,
} from "../../src/verify/index.ts";
import {
  addCheatModels,
  type CheatModels,
  type CheatName,
  cheatEngine,
  cheatingAnswer,
  cheatNames,
  fixtureProviderKey,
  fixtureRequest,
  honestAnswer,
} from "../fixtures/cheats.ts";
import { temporaryHome } from "../helpers.ts";

const otherKey: Hex = `0x${"6b".repeat(32)}`;

/** The reasons a cheat must produce (every code in the set; the first one always). */
const expectedCodes: Record<CheatName, { must: AuditReasonCode; allowed: AuditReasonCode[] }> = {
  another_model: {
    must: "fingerprint_mismatch",
    allowed: ["fingerprint_mismatch", "not_argmax", "implausible_token"],
  },
  lower_quant: {
    must: "fingerprint_mismatch",
    allowed: ["fingerprint_mismatch", "not_argmax", "implausible_token"],
  },
  changed_prompt: {
    must: "fingerprint_mismatch",
    allowed: ["fingerprint_mismatch", "not_argmax", "implausible_token"],
  },
  fabricated: {
    must: "fingerprint_mismatch",
    allowed: ["fingerprint_mismatch", "not_argmax", "implausible_token"],
  },
  truncated: { must: "finish_reason_dishonest", allowed: ["finish_reason_dishonest"] },
  inflated: { must: "usage_dishonest", allowed: ["usage_dishonest"] },
};

const codesOf = (verdict: AuditVerdict) => verdict.reasons.map((reason) => reason.code);
const describeVerdict = (verdict: AuditVerdict) =>
  `${verdict.verdict}: ${JSON.stringify(verdict.reasons)} (worst chunk ${verdict.metrics.worstChunkGapError}, max ${verdict.metrics.maxGapError})`;

/** The input with its receipt signed again (by `key`) over the input as it now is. */
async function resigned(input: AuditInput, key: Hex = fixtureProviderKey): Promise<AuditInput> {
  const receipt = input.receipt as SignedReceipt;
  const message = receiptMessageFromJson(receipt.message);
  return {
    ...input,
    receipt: await signReceipt({
      privateKey: key,
      domain: receipt.domain,
      message: {
        ...message,
        requestHash: hashRequest(input.request),
        promptHash: hashTokenIds(input.promptTokens),
        outputHash: hashTokenIds(input.outputTokens),
        commitment: evidenceCommitment(input),
        promptTokens: input.promptTokens.length,
        completionTokens: input.outputTokens.length,
      },
    }),
  };
}

/** The input with its receipt's message changed and not signed again. */
function withMessage(input: AuditInput, changes: Partial<SignedReceipt["message"]>): AuditInput {
  const receipt = input.receipt as SignedReceipt;
  return { ...input, receipt: { ...receipt, message: { ...receipt.message, ...changes } } };
}

/** The first `count` positions of the fingerprints. */
function firstPositions(fingerprints: readonly FingerprintChunk[], count: number): FingerprintChunk[] {
  const ids = fingerprints.flatMap((chunk) => chunk.ids).slice(0, count);
  const gaps = fingerprints.flatMap((chunk) => chunk.gaps).slice(0, count);
  const chunks: FingerprintChunk[] = [];
  for (let start = 0; start < ids.length; start += 32)
    chunks.push({ ids: ids.slice(start, start + 32), gaps: gaps.slice(start, start + 32) });
  return chunks;
}

describe("audit (real llama.cpp on the small test models)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let models: CheatModels;
  let provider: Engine;
  let auditor: Auditor;
  let auditorTwoThreads: Auditor;
  let auditorSmallBatch: Auditor;
  /** An honest greedy answer of 40 tokens (two chunks) with its receipt, and its verdict. */
  let honest: AuditInput;
  let honestVerdict: AuditVerdict;

  /** The honest request with a stop sequence (3 characters) that first completes in the middle of its answer. */
  async function stopAtMiddle() {
    const text = provider.detokenize({ modelHash: models.claimed, tokens: honest.outputTokens });
    for (let index = Math.floor(text.length / 3); index < text.length - 3; index++) {
      const stop = text.slice(index, index + 3);
      if (text.indexOf(stop) === index && !/\s/.test(stop))
        return { stop, request: { ...honest.request, stop: [stop] } };
    }
    assert.fail(`no stop sequence candidate in ${JSON.stringify(text)}`);
  }

  before(async () => {
    directory = await temporaryHome("mycel-audit-");
    models = await addCheatModels(directory.home);
    provider = await cheatEngine({ home: directory.home, models });
    auditor = createAuditor({ home: directory.home, engineOptions: { threadsPerSequence: 1 } });
    auditorTwoThreads = createAuditor({ home: directory.home, engineOptions: { threadsPerSequence: 2 } });
    auditorSmallBatch = createAuditor({
      home: directory.home,
      engineOptions: { threadsPerSequence: 1, batchSize: 16 },
    });
    const request = fixtureRequest({ models, index: 0, maxTokens: 40, temperature: 0 });
    honest = await honestAnswer({ engine: provider, models, request });
    honestVerdict = await auditor.audit(honest);
  });
  after(async () => {
    await provider?.close();
    await auditor?.close();
    await auditorTwoThreads?.close();
    await auditorSmallBatch?.close();
    await directory.remove();
  });

  describe("every cheat is caught, with its reason", () => {
    for (const temperature of [0, 0.8]) {
      cheatNames.forEach((cheat, position) => {
        it(`${cheat} at temperature ${temperature}`, async () => {
          const index = position + (temperature > 0 ? 6 : 0);
          const request = fixtureRequest({ models, index, maxTokens: 40, temperature });
          const input = await cheatingAnswer({ engine: provider, models, request, cheat });
          const verdict = await auditor.audit(input);
          const codes = codesOf(verdict);
          const { must, allowed } = expectedCodes[cheat];
          assert.equal(verdict.verdict, "fail", `${cheat} fails: ${describeVerdict(verdict)}`);
          assert.ok(codes.includes(must), `${cheat} is caught as ${must}: ${describeVerdict(verdict)}`);
          assert.ok(
            codes.every((code) => allowed.includes(code)),
            `${cheat} gives only ${allowed.join("/")}: ${describeVerdict(verdict)}`,
          );
          if (must === "fingerprint_mismatch") {
            const { chunkMeanGapError, positionGapError } = verdict.metrics.tolerances;
            assert.ok(
              verdict.metrics.worstChunkGapError > chunkMeanGapError ||
                verdict.metrics.maxGapError > positionGapError,
              `the metrics show the mismatch: ${describeVerdict(verdict)}`,
            );
          }
          const honestOne = await auditor.audit(await honestAnswer({ engine: provider, models, request }));
          assert.equal(
            honestOne.verdict,
            "pass",
            `the honest answer to the same request passes: ${describeVerdict(honestOne)}`,
          );
        });
      });
    }
  });

  describe("honest answers pass", () => {
    const requests = (all: CheatModels): InferenceRequest[] => [
      fixtureRequest({ models: all, index: 1, maxTokens: 24, temperature: 0, withSystemPrompt: true }),
      fixtureRequest({ models: all, index: 2, maxTokens: 40, temperature: 1, withSystemPrompt: false }),
    ];
    // Each thread count and each batch size once (2 threads on a 2-core machine is slow, so not every pair).
    const providerSettings: Array<Partial<EngineOptions>> = [
      { threadsPerSequence: 1, batchSize: 512 },
      { threadsPerSequence: 2, batchSize: 16 },
    ];
    for (const settings of providerSettings) {
      it(`from a provider with ${settings.threadsPerSequence} thread(s) and batch size ${settings.batchSize}, audited with 1 and 2 threads and batch size 16`, async () => {
        const store = openModelStore({ home: directory.home });
        const engine = createEngine({ options: { parallelism: 1, maxQueue: 4, ...settings } });
        try {
          await engine.loadModel({
            hash: models.claimed,
            path: store.pathOf(models.claimed),
            name: "claimed",
          });
          for (const request of requests(models)) {
            const input = await honestAnswer({ engine, models, request });
            for (const [name, validator] of [
              ["1 thread", auditor],
              ["2 threads", auditorTwoThreads],
              ["batch size 16", auditorSmallBatch],
            ] as const) {
              const verdict = await validator.audit(input);
              assert.equal(
                verdict.verdict,
                "pass",
                `temperature ${request.temperature}, ${input.outputTokens.length} tokens, validator ${name}: ${describeVerdict(verdict)}`,
              );
            }
          }
        } finally {
          await engine.close();
        }
      });
    }

    it("that stopped at a stop sequence", async () => {
      const { request } = await stopAtMiddle();
      const input = await honestAnswer({ engine: provider, models, request });
      assert.equal(input.finishReason, "stop", "the stop sequence ended the answer");
      assert.ok(input.outputTokens.length < honest.outputTokens.length, "before max_tokens");
      const verdict = await auditor.audit(input);
      assert.equal(verdict.verdict, "pass", describeVerdict(verdict));
    });

    it("without a receipt, and through auditAnswer with the provider's own engine", async () => {
      assert.equal(honestVerdict.verdict, "pass", describeVerdict(honestVerdict));
      const { receipt: _, ...withoutReceipt } = honest;
      const verdict = await auditor.audit(withoutReceipt);
      assert.equal(verdict.verdict, "pass", `the receipt is optional: ${describeVerdict(verdict)}`);
      const direct = await auditAnswer({ engine: provider, input: honest });
      assert.equal(
        direct.verdict,
        "pass",
        `auditAnswer on the provider's engine: ${describeVerdict(direct)}`,
      );
    });
  });

  describe("tampered evidence and receipts fail", () => {
    const expectOnly = async (input: AuditInput, code: AuditReasonCode, message: RegExp) => {
      const verdict = await auditor.audit(input);
      assert.equal(verdict.verdict, "fail", `fails: ${describeVerdict(verdict)}`);
      assert.ok(
        codesOf(verdict).every((found) => found === code),
        `only ${code}: ${describeVerdict(verdict)}`,
      );
      assert.ok(
        verdict.reasons.some((reason) => message.test(reason.message)),
        `a reason says ${message}: ${describeVerdict(verdict)}`,
      );
      return verdict;
    };

    it("a receipt signed by another key", async () => {
      const receipt = honest.receipt as SignedReceipt;
      const forged = await signReceipt({
        privateKey: otherKey,
        domain: receipt.domain,
        message: receiptMessageFromJson(receipt.message),
      });
      await expectOnly({ ...honest, receipt: forged }, "receipt_invalid", /but was signed by 0x/);
    });

    it("a changed commitment, signed or not", async () => {
      const commitment = keccak256(stringToBytes("other fingerprints"));
      await expectOnly(withMessage(honest, { commitment }), "receipt_invalid", /commitment does not match/);
      const signed = await signReceipt({
        privateKey: fixtureProviderKey,
        domain: (honest.receipt as SignedReceipt).domain,
        message: { ...receiptMessageFromJson((honest.receipt as SignedReceipt).message), commitment },
      });
      const verdict = await expectOnly(
        { ...honest, receipt: signed },
        "receipt_invalid",
        /commitment does not match/,
      );
      assert.equal(verdict.reasons.length, 1, "the signature itself is fine");
    });

    it("fingerprints or finish reason changed after signing (the commitment binds them)", async () => {
      const fingerprints = structuredClone(honest.fingerprints);
      const gaps = fingerprints[1]?.gaps[0] as number[];
      gaps[0] = (gaps[0] as number) + 1;
      const verdict = await expectOnly(
        { ...honest, fingerprints },
        "receipt_invalid",
        /commitment does not match/,
      );
      assert.ok(
        verdict.metrics.maxGapError < 0.1,
        "a thousandth of a nat is within tolerance: only the commitment sees it",
      );
      const claimedStop = await auditor.audit({ ...honest, finishReason: "stop" });
      assert.ok(codesOf(claimedStop).includes("receipt_invalid"), describeVerdict(claimedStop));
    });

    it("an answer that runs on past its stop sequence", {
      todo: "src/verify/audit.ts checkFinish accepts a stop sequence anywhere in the output (text(outputTokens).includes(stop)), so tokens billed after it pass",
    }, async () => {
      const { request } = await stopAtMiddle();
      // The 40-token answer, although the request's stop sequence completes near its middle.
      const claimedStop = await auditor.audit(await resigned({ ...honest, request, finishReason: "stop" }));
      assert.equal(claimedStop.verdict, "fail", `claimed as "stop": ${describeVerdict(claimedStop)}`);
      const claimedLength = await auditor.audit(await resigned({ ...honest, request }));
      assert.equal(claimedLength.verdict, "fail", `claimed as "length": ${describeVerdict(claimedLength)}`);
    });

    it("a changed outputHash", async () => {
      await expectOnly(
        withMessage(honest, { outputHash: hashTokenIds([...honest.outputTokens, 1]) }),
        "receipt_invalid",
        /outputHash is not the hash of the output tokens/,
      );
    });

    it("prompt tokens that are not the chat template's", async () => {
      const changedAt = Math.floor(honest.promptTokens.length / 2);
      const promptTokens = [...honest.promptTokens];
      const { vocabularySize } = provider.findModel(models.claimed);
      promptTokens[changedAt] = ((promptTokens[changedAt] as number) + 1) % vocabularySize;
      const verdict = await auditor.audit(await resigned({ ...honest, promptTokens }));
      assert.ok(codesOf(verdict).includes("prompt_mismatch"), `prompt_mismatch: ${describeVerdict(verdict)}`);
      const reason = verdict.reasons.find((found) => found.code === "prompt_mismatch");
      assert.match(reason?.message ?? "", new RegExp(`first difference at ${changedAt}\\)`));
      const shorter = await auditor.audit(
        await resigned({ ...honest, promptTokens: honest.promptTokens.slice(1) }),
      );
      assert.ok(
        codesOf(shorter).includes("prompt_mismatch"),
        `a dropped token too: ${describeVerdict(shorter)}`,
      );
    });

    it("fingerprints missing a chunk", async () => {
      assert.equal(honest.fingerprints.length, 2, "the honest answer has two chunks");
      await expectOnly(
        await resigned({ ...honest, fingerprints: honest.fingerprints.slice(0, 1) }),
        "fingerprints_incomplete",
        /cover 32 positions; the output has 40 tokens/,
      );
    });

    it('"length" claimed before max_tokens, and more tokens than max_tokens', async () => {
      assert.equal(honest.finishReason, "length", "the honest answer ran to max_tokens");
      const cut = await resigned({
        ...honest,
        outputTokens: honest.outputTokens.slice(0, 20),
        fingerprints: firstPositions(honest.fingerprints, 20),
      });
      await expectOnly(cut, "finish_reason_dishonest", /"length" after 20 tokens, below max_tokens 40/);
      const over = await resigned({ ...honest, request: { ...honest.request, max_tokens: 30 } });
      await expectOnly(over, "usage_dishonest", /40 output tokens exceed max_tokens 30/);
    });
  });

  describe("metrics", () => {
    it("are present and sensible for an honest answer", () => {
      const { metrics } = honestVerdict;
      assert.equal(metrics.outputTokens, honest.outputTokens.length, "outputTokens is the output length");
      assert.equal(metrics.promptTokens, honest.promptTokens.length, "promptTokens is the prompt length");
      assert.equal(metrics.temperature, 0);
      assert.equal(metrics.weightType, "f16");
      assert.deepEqual(metrics.tolerances, tolerancesFor("f16"));
      assert.ok(metrics.meanGapError >= 0, `meanGapError ${metrics.meanGapError} >= 0`);
      assert.ok(metrics.meanGapError <= metrics.maxGapError, "the mean is at most the largest error");
      assert.ok(
        metrics.worstChunkGapError <= metrics.maxGapError,
        "a chunk mean is at most the largest error",
      );
      assert.ok(
        metrics.worstChunkGapError <= metrics.tolerances.chunkMeanGapError,
        `worst chunk ${metrics.worstChunkGapError} within tolerance`,
      );
      assert.equal(metrics.notArgmax, 0, "greedy tokens are all argmax");
      assert.ok(metrics.minLogprob <= metrics.meanLogprob, "the lowest log-probability is at most the mean");
      assert.ok(metrics.meanLogprob <= 0, `meanLogprob ${metrics.meanLogprob} <= 0`);
      assert.ok(metrics.evaluateMs > 0, `evaluateMs ${metrics.evaluateMs} > 0`);
    });

    it("and tolerances can be overridden (zero tolerance fails even an honest answer)", async () => {
      const verdict = await auditAnswer({
        engine: provider,
        input: honest,
        tolerances: { chunkMeanGapError: 0, positionGapError: 0, nearTie: 0 },
      });
      assert.deepEqual(codesOf(verdict), ["fingerprint_mismatch"], describeVerdict(verdict));
      assert.deepEqual(verdict.metrics.tolerances, { chunkMeanGapError: 0, positionGapError: 0, nearTie: 0 });
    });
  });

  describe("input the auditor cannot audit", () => {
    it("malformed input is an InvalidInputError naming the field", async () => {
      const { fingerprints: _, ...withoutFingerprints } = honest;
      await assert.rejects(auditor.audit(withoutFingerprints), (error: unknown) => {
        assert.ok(error instanceof InvalidInputError, "an InvalidInputError");
        assert.match(error.message, /^bad audit input: fingerprints /);
        return true;
      });
    });

    it("an unknown model is a ModelNotFoundError naming `mycel model add`", async () => {
      const modelHash = `0x${"ab".repeat(32)}`;
      await assert.rejects(
        auditor.audit({ ...honest, modelHash, request: { ...honest.request, model_hash: modelHash } }),
        (error: unknown) => {
          assert.ok(error instanceof ModelNotFoundError, "a ModelNotFoundError");
          assert.match(error.message, /^model "sha256:a{1}b/, "names the missing model");
          assert.match(error.hint ?? "", /`mycel model add /, "names the fix");
          return true;
        },
      );
    });
  });
});
