import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { getAddress, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  type AuditVerdictFrame,
  auditVerdictFrameSchema,
  recoverAuditVerdictSigner,
  signAuditVerdict,
  wireVersion,
} from "../../src/protocol/index.ts";

const validatorKey: Hex = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const validator = privateKeyToAccount(validatorKey).address;
const provider = getAddress("0x5e1f00000000000000000000000000000000b0b0");
const requestId = `0x${"ab".repeat(32)}`;

function unsignedVerdict() {
  return {
    request_id: requestId,
    provider,
    verdict: "fail" as const,
    reasons: [{ code: "fingerprint_mismatch", message: "position 3: the top token differs" }],
    metrics: { prompt_tokens: 12, completion_tokens: 40, worst_distance: 0.31, dtype: "f16", exact: false },
    audited_at: 1_700_000_000_000,
  };
}

/** The first issue's path and message when the schema refuses `value` (fails the test if it accepts it). */
function refusal(value: unknown) {
  const parsed = auditVerdictFrameSchema.safeParse(value);
  assert.equal(parsed.success, false, `refuses ${JSON.stringify(value).slice(0, 200)}`);
  const issue = parsed.error?.issues[0];
  return `${issue?.path.map(String).join(".")}: ${issue?.message}`;
}

describe("audit verdicts: signing", () => {
  it("signs a verdict that the schema accepts and that recovers to its validator", async () => {
    const signed = await signAuditVerdict({ privateKey: validatorKey, verdict: unsignedVerdict() });
    assert.equal(signed.v, wireVersion);
    assert.equal(signed.type, "audit_verdict");
    assert.equal(signed.validator, validator, "the validator is the signer's address");
    assert.match(signed.signature, /^0x[0-9a-f]{130}$/);
    const parsed = auditVerdictFrameSchema.parse(signed);
    assert.deepEqual(parsed, signed, "parsing keeps every field");
    assert.equal(await recoverAuditVerdictSigner(parsed), validator);
    const overWire = auditVerdictFrameSchema.parse(JSON.parse(JSON.stringify(signed)));
    assert.equal(await recoverAuditVerdictSigner(overWire), validator, "a JSON round trip keeps it");
    const reordered = Object.fromEntries(Object.entries(signed).reverse()) as AuditVerdictFrame;
    assert.equal(await recoverAuditVerdictSigner(reordered), validator, "key order does not matter");
  });

  it("names the signer as validator, whatever the caller passed", async () => {
    const smuggled = { ...unsignedVerdict(), validator: provider };
    const signed = await signAuditVerdict({ privateKey: validatorKey, verdict: smuggled });
    assert.equal(signed.validator, validator);
    assert.equal(await recoverAuditVerdictSigner(signed), validator);
  });

  it("signs a passing verdict with no reasons and no metrics", async () => {
    const signed = await signAuditVerdict({
      privateKey: validatorKey,
      verdict: { ...unsignedVerdict(), verdict: "pass", reasons: [], metrics: {} },
    });
    assert.ok(auditVerdictFrameSchema.safeParse(signed).success);
    assert.equal(await recoverAuditVerdictSigner(signed), validator);
  });

  it("recovers another address when any signed field changes", async () => {
    const signed = await signAuditVerdict({ privateKey: validatorKey, verdict: unsignedVerdict() });
    const changes: Array<[string, AuditVerdictFrame]> = [
      ["verdict", { ...signed, verdict: "pass" }],
      ["a reason's message", { ...signed, reasons: [{ code: "fingerprint_mismatch", message: "fine" }] }],
      [
        "a reason's code",
        { ...signed, reasons: [{ code: "other", message: "position 3: the top token differs" }] },
      ],
      ["no reasons", { ...signed, reasons: [] }],
      ["a metrics value", { ...signed, metrics: { ...signed.metrics, worst_distance: 0.01 } }],
      ["a metric added", { ...signed, metrics: { ...signed.metrics, extra: 1 } }],
      ["request_id", { ...signed, request_id: `0x${"cd".repeat(32)}` }],
      ["provider", { ...signed, provider: getAddress("0x1111111111111111111111111111111111111111") }],
      ["validator", { ...signed, validator: provider }],
      ["audited_at", { ...signed, audited_at: signed.audited_at + 1 }],
    ];
    for (const [field, changed] of changes) {
      assert.ok(auditVerdictFrameSchema.safeParse(changed).success, `${field}: still well-formed`);
      const signer = await recoverAuditVerdictSigner(changed);
      assert.notEqual(signer, validator, `changing ${field} changes the signer`);
    }
  });
});

describe("audit verdicts: schema", () => {
  it("refuses unknown fields, nested metrics, too many reasons and bad signatures", async () => {
    const signed = await signAuditVerdict({ privateKey: validatorKey, verdict: unsignedVerdict() });
    const reason = { code: "mismatch", message: "differs" };
    const cases: Array<[string, unknown, RegExp]> = [
      ["an unknown field", { ...signed, note: "hi" }, /note|Unrecognized/i],
      ["an unknown field in a reason", { ...signed, reasons: [{ ...reason, position: 3 }] }, /^reasons\.0/],
      ["a nested object in metrics", { ...signed, metrics: { worst: { distance: 0.3 } } }, /^metrics\.worst/],
      ["an array in metrics", { ...signed, metrics: { tokens: [1, 2] } }, /^metrics\.tokens/],
      ["33 reasons", { ...signed, reasons: Array.from({ length: 33 }, () => reason) }, /^reasons/],
      ["a short signature", { ...signed, signature: `0x${"ab".repeat(64)}` }, /^signature/],
      ["a long signature", { ...signed, signature: `0x${"ab".repeat(66)}` }, /^signature/],
      ["a signature without 0x", { ...signed, signature: signed.signature.slice(2) }, /^signature/],
      ["another verdict", { ...signed, verdict: "unsure" }, /^verdict/],
      ["another type", { ...signed, type: "audit_sample" }, /^type/],
      ["another version", { ...signed, v: 2 }, /^v:/],
      ["an uppercase request id", { ...signed, request_id: requestId.toUpperCase() }, /^request_id/],
      ["a bad provider", { ...signed, provider: "0x1234" }, /^provider/],
      ["an empty reason code", { ...signed, reasons: [{ ...reason, code: "" }] }, /^reasons\.0\.code/],
      ["a negative time", { ...signed, audited_at: -1 }, /^audited_at/],
    ];
    for (const [name, value, expected] of cases) assert.match(refusal(value), expected, name);
    const { signature: _, ...unsigned } = signed;
    assert.match(refusal(unsigned), /^signature/, "no signature");
  });

  it("accepts 32 reasons and flat metrics of numbers, short strings, booleans and null", async () => {
    const signed = await signAuditVerdict({
      privateKey: validatorKey,
      verdict: {
        ...unsignedVerdict(),
        reasons: Array.from({ length: 32 }, (_, index) => ({ code: `reason_${index}`, message: "" })),
        metrics: { count: 3, ratio: 0.5, name: "x".repeat(200), ok: true, missing: null },
      },
    });
    assert.ok(auditVerdictFrameSchema.safeParse(signed).success, "32 reasons are fine");
    assert.match(
      refusal({ ...signed, metrics: { name: "x".repeat(201) } }),
      /^metrics\.name/,
      "a string metric longer than 200 characters",
    );
  });
});
