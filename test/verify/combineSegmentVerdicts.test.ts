import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { AuditInput, SignedReceipt } from "../../src/protocol/index.ts";
import { type AuditVerdict, combineSegmentVerdicts } from "../../src/verify/index.ts";

const metrics: AuditVerdict["metrics"] = {
  weightType: "f16",
  promptTokens: 10,
  outputTokens: 4,
  temperature: 0,
  meanGapError: 0.001,
  worstChunkGapError: 0,
  maxGapError: 0.002,
  notArgmax: 0,
  nearTies: 0,
  meanLogprob: -1.5,
  minLogprob: -3,
  evaluateMs: 12,
  tolerances: { chunkMeanGapError: 0.07, positionGapError: 0.3, nearTie: 0.3 },
};
const pass: AuditVerdict = { verdict: "pass", reasons: [], metrics };
const fail: AuditVerdict = {
  verdict: "fail",
  reasons: [{ code: "prompt_mismatch", message: "the prompt tokens are not the request's" }],
  metrics,
};

/** An audit input that only the fields combineSegmentVerdicts reads are real in. */
const inputFrom = (provider?: string) =>
  ({
    ...(provider === undefined ? {} : { receipt: { message: { provider } } as SignedReceipt }),
  }) as AuditInput;

describe("combineSegmentVerdicts", () => {
  const first = "0x1111111111111111111111111111111111111111";
  const second = "0x2222222222222222222222222222222222222222";

  it("passes when every segment passes, and lists each segment's verdict with its provider", () => {
    const combined = combineSegmentVerdicts([
      { input: inputFrom(first), verdict: pass },
      { input: inputFrom(second), verdict: pass },
    ]);
    assert.deepEqual(combined, {
      verdict: "pass",
      segments: [
        { segment: 0, provider: first, ...pass },
        { segment: 1, provider: second, ...pass },
      ],
    });
  });

  it("fails when any segment fails, keeping its reasons", () => {
    const combined = combineSegmentVerdicts([
      { input: inputFrom(first), verdict: pass },
      { input: inputFrom(second), verdict: fail },
    ]);
    assert.equal(combined.verdict, "fail");
    assert.deepEqual(
      combined.segments.map((entry) => entry.verdict),
      ["pass", "fail"],
    );
    assert.deepEqual(combined.segments[1]?.reasons, fail.reasons);
  });

  it("names no provider for a segment without a receipt, and fails on no segment at all", () => {
    assert.equal(combineSegmentVerdicts([{ input: inputFrom(), verdict: pass }]).segments[0]?.provider, null);
    assert.equal(combineSegmentVerdicts([]).verdict, "fail");
  });
});
