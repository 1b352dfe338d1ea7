/**
 * The validator's pure parts: epoch scores from verdicts, which failures are proof enough to slash, slashing
 * evidence bytes, and the signed audit samples gateways send.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { bytesToHex, getAddress, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  type AuditSampleFrame,
  auditSampleFrameSchema,
  hashRequest,
  hashTokenIds,
  type InferenceRequest,
  receiptDomain,
  recoverAuditSampleSigner,
  type SignedReceipt,
  signAuditSample,
  signReceipt,
} from "../../src/protocol/index.ts";
import {
  challengeCpuShare,
  decodeSlashEvidence,
  encodeSlashEvidence,
  epochScores,
  fullScore,
  isSlashable,
  maxEvidenceBytes,
  nextChallengeDelayMs,
  slashableReasons,
} from "../../src/validator/index.ts";

const alice = getAddress(`0x${"a1".repeat(20)}`);
const bob = getAddress(`0x${"b2".repeat(20)}`);
const carol = getAddress(`0x${"c3".repeat(20)}`);

const audits = (provider: string, verdicts: string) =>
  [...verdicts].map((mark) => ({ provider, verdict: mark === "p" ? ("pass" as const) : ("fail" as const) }));

describe("validator: epoch scores", () => {
  it("scores the share of passed audits in basis points, rounded to the nearest point", () => {
    const scores = epochScores({
      providers: [alice, bob, carol],
      audits: [...audits(alice, "ppf"), ...audits(bob, "pff"), ...audits(carol, "pfffffff")],
      reputationOf: () => undefined,
    });
    assert.deepEqual(scores, [6667, 3333, 1250], "2/3, 1/3 and 1/8 of 10 000, rounded");
    assert.deepEqual(
      epochScores({
        providers: [alice, bob],
        audits: [...audits(alice, "pppp"), ...audits(bob, "ffff")],
        reputationOf: () => 1,
      }),
      [fullScore, 0],
      "all passed is the full score, all failed is zero, whatever the reputation",
    );
  });

  it("leaves unaudited providers their reputation, or the full score when they have none", () => {
    const reputations = new Map<string, number>([
      [bob, 4_200],
      [carol, 0],
    ]);
    const scores = epochScores({
      providers: [alice, bob, carol],
      audits: [],
      reputationOf: (provider) => reputations.get(provider),
    });
    assert.deepEqual(
      scores,
      [fullScore, 4_200, 0],
      "a slashed provider's zero reputation is kept, not reset",
    );
  });

  it("matches audits to providers whatever the case of their addresses", () => {
    const scores = epochScores({
      providers: [alice, bob.toLowerCase()],
      audits: [...audits(alice.toLowerCase(), "pf"), ...audits(bob.toUpperCase().replace("0X", "0x"), "f")],
      reputationOf: () => undefined,
    });
    assert.deepEqual(scores, [5_000, 0]);
  });

  it("keeps the order of the provider list and ignores audits of providers not in it", () => {
    const all = [...audits(alice, "p"), ...audits(bob, "f"), ...audits(carol, "pf")];
    const forward = epochScores({
      providers: [alice, bob, carol],
      audits: all,
      reputationOf: () => undefined,
    });
    const backward = epochScores({
      providers: [carol, bob, alice],
      audits: all,
      reputationOf: () => undefined,
    });
    assert.deepEqual(forward, [fullScore, 0, 5_000]);
    assert.deepEqual(backward, [...forward].reverse(), "the scores follow the providers' order");
    assert.deepEqual(
      epochScores({ providers: [bob], audits: all, reputationOf: () => undefined }),
      [0],
      "only the listed provider is scored",
    );
    assert.deepEqual(epochScores({ providers: [], audits: all, reputationOf: () => 1 }), []);
  });
});

describe("validator: what is slashable", () => {
  it("treats every cheat a receipt proves as slashable", () => {
    assert.ok(slashableReasons.size === 8, `eight slashable reasons: ${[...slashableReasons].join(",")}`);
    assert.ok(slashableReasons.has("text_mismatch"), "text other than the tokens', committed to");
    for (const code of slashableReasons) assert.ok(isSlashable([{ code }]), `${code} alone is slashable`);
    assert.ok(
      isSlashable([{ code: "fingerprint_mismatch" }, { code: "not_argmax" }]),
      "several slashable reasons are slashable",
    );
  });

  it("never slashes on a bad receipt, missing evidence or no reason at all", () => {
    assert.ok(!isSlashable([]), "an empty list is not slashable");
    assert.ok(!isSlashable([{ code: "receipt_invalid" }]), "a bad receipt alone proves nothing");
    assert.ok(!isSlashable([{ code: "evidence_unavailable" }]), "missing evidence may be an outage");
    assert.ok(
      !isSlashable([{ code: "fingerprint_mismatch" }, { code: "receipt_invalid" }]),
      "a slashable reason next to a bad receipt is not slashable",
    );
    assert.ok(
      !isSlashable([{ code: "text_mismatch" }, { code: "receipt_invalid" }]),
      "a textHash the receipt does not commit to proves nothing against the provider",
    );
    assert.ok(
      !isSlashable([{ code: "evidence_unavailable" }, { code: "not_argmax" }]),
      "a slashable reason next to missing evidence is not slashable",
    );
    assert.ok(!isSlashable([{ code: "something_new" }]), "an unknown code is not slashable");
  });
});

describe("validator: slashing evidence bytes", () => {
  const input = {
    modelHash: `0x${"ab".repeat(32)}`,
    promptTokens: [1, 2, 3],
    outputTokens: [4, 5],
    fingerprints: [{ ids: [[4, 9], [5]], gaps: [[1200], []] }],
    finishReason: "length",
    request: { kind: "chat", messages: [{ role: "user", content: "héllo 🍄" }] },
  };

  it("round-trips an audit input through gzipped JSON bytes", () => {
    const evidence = encodeSlashEvidence(input);
    assert.ok(evidence !== undefined, "a small input fits");
    assert.match(evidence, /^0x([0-9a-f]{2})+$/, "hex bytes");
    assert.ok(
      (evidence.length - 2) / 2 <= maxEvidenceBytes,
      `within the chain's limit: ${(evidence.length - 2) / 2}`,
    );
    assert.deepEqual(decodeSlashEvidence(evidence), input);
    const repetitive = { text: "mushroom ".repeat(50_000) };
    const packed = encodeSlashEvidence(repetitive);
    assert.ok(packed, "a large but compressible input fits");
    assert.deepEqual(decodeSlashEvidence(packed), repetitive);
  });

  it("returns undefined for an input too large for the chain once compressed", () => {
    const noise = { text: randomBytes(maxEvidenceBytes + 4_096).toString("base64") };
    assert.equal(encodeSlashEvidence(noise), undefined);
  });

  it("throws on bytes that are not gzipped JSON, and on a decompression bomb", () => {
    assert.throws(() => decodeSlashEvidence("0xdeadbeef"), "not gzip");
    assert.throws(() => decodeSlashEvidence("0x"), "empty");
    assert.throws(() => decodeSlashEvidence(bytesToHex(gzipSync(Buffer.from("{not json")))), SyntaxError);
    const bomb = bytesToHex(gzipSync(Buffer.alloc(9 * 1024 * 1024, 0x20), { level: 9 }));
    assert.ok((bomb.length - 2) / 2 <= maxEvidenceBytes, "the bomb fits on chain");
    assert.throws(() => decodeSlashEvidence(bomb), RangeError, "more than 8 MiB unpacked is refused");
  });
});

describe("protocol: signed audit samples", () => {
  const gatewayKey = generatePrivateKey();
  const gateway = privateKeyToAccount(gatewayKey).address;
  const providerKey = generatePrivateKey();
  const requestId = `0x${"1a".repeat(32)}` as Hex;
  const request: InferenceRequest = {
    model_hash: `0x${"ab".repeat(32)}`,
    kind: "chat",
    messages: [{ role: "user", content: "hello" }],
    max_tokens: 8,
    temperature: 0,
    top_p: 1,
    top_k: 0,
    seed: 7,
    stop: [],
  };

  async function receipt(): Promise<SignedReceipt> {
    return signReceipt({
      privateKey: providerKey,
      domain: receiptDomain(),
      message: {
        requestId,
        client: gateway,
        provider: privateKeyToAccount(providerKey).address,
        modelHash: request.model_hash as Hex,
        requestHash: hashRequest(request),
        promptHash: hashTokenIds([1, 2, 3]),
        outputHash: hashTokenIds([4, 5]),
        commitment: `0x${"cd".repeat(32)}`,
        promptTokens: 3,
        completionTokens: 2,
        price: 0n,
        timestamp: 1_700_000_000n,
      },
    });
  }

  async function sample(): Promise<AuditSampleFrame> {
    return signAuditSample({
      privateKey: gatewayKey,
      sample: {
        request_id: requestId,
        provider_peer_id: "16Uiu2HAmProvider",
        request,
        receipt: await receipt(),
      },
    });
  }

  it("recovers the gateway that signed a sample, and the frame passes the schema", async () => {
    const signed = await sample();
    assert.equal(signed.v, 1);
    assert.equal(signed.type, "audit_sample");
    assert.equal(await recoverAuditSampleSigner(signed), gateway);
    assert.deepEqual(auditSampleFrameSchema.parse(JSON.parse(JSON.stringify(signed))), signed);
  });

  it("recovers another address once any signed field changes", async () => {
    const signed = await sample();
    const changed: [string, AuditSampleFrame][] = [
      ["request", { ...signed, request: { ...signed.request, max_tokens: 9 } }],
      [
        "receipt",
        { ...signed, receipt: { ...signed.receipt, message: { ...signed.receipt.message, price: "1" } } },
      ],
      ["provider_peer_id", { ...signed, provider_peer_id: "16Uiu2HAmSomeoneElse" }],
      ["request_id", { ...signed, request_id: `0x${"22".repeat(32)}` }],
    ];
    for (const [field, frame] of changed) {
      const signer = await recoverAuditSampleSigner(frame);
      assert.notEqual(signer, gateway, `changing ${field} changes the signer`);
    }
  });

  it("refuses malformed frames", async () => {
    const signed = await sample();
    const bad: [string, unknown][] = [
      ["another version", { ...signed, v: 2 }],
      ["another type", { ...signed, type: "audit_accepted" }],
      ["an unknown field", { ...signed, extra: 1 }],
      [
        "an uppercase request id",
        { ...signed, request_id: signed.request_id.toUpperCase().replace("0X", "0x") },
      ],
      ["an empty provider peer id", { ...signed, provider_peer_id: "" }],
      ["a provider peer id over 128 characters", { ...signed, provider_peer_id: "x".repeat(129) }],
      ["a short signature", { ...signed, signature: signed.signature.slice(0, 100) }],
      ["no signature", { ...signed, signature: undefined }],
      ["a chat request without messages", { ...signed, request: { ...signed.request, messages: undefined } }],
      ["a receipt without signature", { ...signed, receipt: { ...signed.receipt, signature: undefined } }],
    ];
    for (const [what, frame] of bad)
      assert.ok(!auditSampleFrameSchema.safeParse(frame).success, `a frame with ${what} is refused`);
  });
});

describe("the wait between challenges (nextChallengeDelayMs)", () => {
  it("is the interval while challenges are cheap, and keeps them under challengeCpuShare of a core when costly", () => {
    assert.equal(nextChallengeDelayMs({ intervalMs: 60_000, cpuMs: 80 }), 60_000);
    const delay = nextChallengeDelayMs({ intervalMs: 60_000, cpuMs: 3_800 });
    assert.equal(delay, 380_000);
    assert.ok(3_800 / delay <= challengeCpuShare);
  });
});
