/** The validator's store: verdicts with their inputs, and the score commitments of each epoch. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Hex } from "viem";
import {
  type AuditStore,
  openAuditStore,
  type StoredAudit,
  validatorStorePath,
} from "../../src/store/index.ts";
import { temporaryHome } from "../helpers.ts";

const requestOf = (index: number) => `0x${index.toString(16).padStart(64, "0")}` as Hex;
const alice = "0xA1a1A1a1a1A1a1a1A1A1a1a1A1a1a1a1a1A1A1A1" as Hex;
const bob = "0xb2B2b2B2B2b2b2b2B2b2b2B2B2b2b2b2B2b2B2b2" as Hex;
const modelHash = `0x${"AB".repeat(32)}` as Hex;

function audit(parameters: {
  index: number;
  provider?: Hex;
  verdict?: "pass" | "fail";
  auditedAt?: number;
  source?: StoredAudit["source"];
}): Omit<StoredAudit, "auditedAt"> & { auditedAt?: number } {
  const verdict = parameters.verdict ?? "pass";
  return {
    requestId: requestOf(parameters.index),
    provider: parameters.provider ?? alice,
    modelHash,
    verdict,
    reasons: verdict === "fail" ? [{ code: "fingerprint_mismatch", message: "chunk 0 is off" }] : [],
    metrics: { outputTokens: 8, worstChunkGapError: 0.01 },
    source: parameters.source ?? "sample",
    input: { request: { kind: "chat" }, outputTokens: [1, 2, parameters.index] },
    ...(parameters.auditedAt === undefined ? {} : { auditedAt: parameters.auditedAt }),
  };
}

describe("store: validator audits", () => {
  let directory: { home: string; remove: () => Promise<void> };
  const open: AuditStore[] = [];
  const memory = () => {
    const store = openAuditStore({ path: ":memory:" });
    open.push(store);
    return store;
  };

  before(async () => {
    directory = await temporaryHome("mycel-audits-");
  });

  after(async () => {
    for (const store of open) store.close();
    await directory.remove();
  });

  it("stores a verdict with its reasons, metrics and input, addresses and hashes lowercased", () => {
    const store = memory();
    const saved = audit({ index: 1, verdict: "fail", auditedAt: 1_000, source: "challenge" });
    assert.equal(store.saveAudit(saved), true, "a new verdict is stored");
    const [stored] = store.recentAudits(10);
    assert.deepEqual(stored, {
      ...saved,
      provider: alice.toLowerCase(),
      modelHash: modelHash.toLowerCase(),
      auditedAt: 1_000,
    });
    const before = Date.now();
    store.saveAudit(audit({ index: 2 }));
    const latest = store.recentAudits(1)[0];
    assert.ok(
      latest && latest.auditedAt >= before && latest.auditedAt <= Date.now(),
      `auditedAt defaults to now: ${latest?.auditedAt}`,
    );
  });

  it("ignores a second verdict on the same request of the same provider, and says so", () => {
    const store = memory();
    assert.equal(store.saveAudit(audit({ index: 1, verdict: "fail", auditedAt: 10 })), true);
    assert.equal(store.saveAudit(audit({ index: 1, verdict: "pass", auditedAt: 20 })), false, "a duplicate");
    assert.equal(
      store.saveAudit({ ...audit({ index: 1, auditedAt: 30 }), provider: alice.toUpperCase() as Hex }),
      false,
      "the same provider in another case is a duplicate",
    );
    assert.equal(
      store.saveAudit({
        ...audit({ index: 1, auditedAt: 40 }),
        requestId: requestOf(1).toUpperCase() as Hex,
      }),
      false,
      "the same request id in another case is a duplicate",
    );
    assert.equal(
      store.saveAudit(audit({ index: 1, provider: bob, auditedAt: 50 })),
      true,
      "another provider",
    );
    const stored = store.recentAudits(10);
    assert.equal(stored.length, 2);
    const alices = stored.filter((entry) => entry.provider === alice.toLowerCase());
    assert.deepEqual(
      alices.map((entry) => [entry.verdict, entry.auditedAt]),
      [["fail", 10]],
      "the first verdict stays",
    );
  });

  it("lists verdicts reached in [from, to), oldest first", () => {
    const store = memory();
    for (const [index, auditedAt] of [
      [1, 300],
      [2, 100],
      [3, 200],
      [4, 200],
      [5, 400],
    ] as const)
      store.saveAudit(audit({ index, auditedAt }));
    const window = store.auditsBetween(200, 400);
    assert.deepEqual(
      window.map((entry) => entry.requestId),
      [requestOf(3), requestOf(4), requestOf(1)],
      "from is included, to is not; equal times keep their insertion order",
    );
    assert.deepEqual(store.auditsBetween(0, 100), [], "nothing before the first");
    assert.equal(store.auditsBetween(0, Number.MAX_SAFE_INTEGER).length, 5);
    assert.deepEqual(store.auditsBetween(300, 300), [], "an empty window");
  });

  it("lists the latest verdicts newest first, up to a limit", () => {
    const store = memory();
    for (const [index, auditedAt] of [
      [1, 300],
      [2, 100],
      [3, 200],
      [4, 200],
    ] as const)
      store.saveAudit(audit({ index, auditedAt }));
    assert.deepEqual(
      store.recentAudits(10).map((entry) => entry.requestId),
      [requestOf(1), requestOf(4), requestOf(3), requestOf(2)],
      "newest first; among equal times the later insert first",
    );
    assert.deepEqual(
      store.recentAudits(2).map((entry) => entry.requestId),
      [requestOf(1), requestOf(4)],
    );
    assert.deepEqual(store.recentAudits(0), []);
  });

  it("keeps score commitments by epoch, with the epoch as a bigint, and marks them revealed", () => {
    const store = memory();
    const commitment = {
      epoch: 7n,
      providers: [alice, bob],
      scores: [10_000, 1_250],
      salt: `0x${"5a".repeat(32)}` as Hex,
    };
    const before = Date.now();
    store.saveCommitment(commitment);
    const stored = store.commitmentOf(7n);
    assert.ok(stored, "the commitment is found");
    assert.equal(stored.epoch, 7n);
    assert.equal(typeof stored.epoch, "bigint");
    assert.deepEqual(stored.providers, [alice, bob], "providers keep their case");
    assert.deepEqual(stored.scores, [10_000, 1_250]);
    assert.equal(stored.salt, commitment.salt);
    assert.ok(stored.committedAt >= before, `committedAt is now: ${stored.committedAt}`);
    assert.equal(stored.revealedAt, undefined, "not revealed yet");
    assert.equal(store.commitmentOf(8n), undefined, "another epoch has none");
    assert.equal(store.commitmentOf(0n), undefined);

    store.markRevealed(7n);
    const revealed = store.commitmentOf(7n);
    assert.ok(
      revealed?.revealedAt !== undefined && revealed.revealedAt >= before,
      `revealedAt is set: ${revealed?.revealedAt}`,
    );
    store.markRevealed(9n);
    assert.equal(store.commitmentOf(9n), undefined, "marking an unknown epoch creates nothing");

    // A new commitment for the same epoch (scores changed before the epoch ended) replaces the old one.
    store.saveCommitment({ ...commitment, scores: [10_000, 0], salt: `0x${"6b".repeat(32)}` });
    const replaced = store.commitmentOf(7n);
    assert.deepEqual(replaced?.scores, [10_000, 0]);
    assert.equal(replaced?.salt, `0x${"6b".repeat(32)}`);
    assert.equal(replaced?.revealedAt, undefined, "a replaced commitment is not revealed");
  });

  it("keeps everything in its file across a reopen", () => {
    const address = "0xC3c3C3c3c3c3C3c3c3c3c3C3c3c3C3c3c3c3c3C3";
    const path = validatorStorePath(directory.home, address);
    assert.equal(path, join(directory.home, "validator", address.toLowerCase(), "audits.sqlite"));
    const first = openAuditStore({ path });
    first.saveAudit(audit({ index: 1, verdict: "fail", auditedAt: 500 }));
    first.saveAudit(audit({ index: 2, provider: bob, auditedAt: 600, source: "manual" }));
    first.saveCommitment({ epoch: 3n, providers: [alice], scores: [0], salt: `0x${"77".repeat(32)}` });
    first.markRevealed(3n);
    first.close();

    const second = openAuditStore({ path });
    open.push(second);
    assert.equal(second.path, path);
    const stored = second.auditsBetween(0, 1_000);
    assert.deepEqual(
      stored.map((entry) => [entry.requestId, entry.provider, entry.verdict, entry.source]),
      [
        [requestOf(1), alice.toLowerCase(), "fail", "sample"],
        [requestOf(2), bob.toLowerCase(), "pass", "manual"],
      ],
    );
    assert.deepEqual(stored[0]?.input, audit({ index: 1 }).input, "the input survives");
    assert.equal(
      second.saveAudit(audit({ index: 1, auditedAt: 700 })),
      false,
      "still a duplicate after reopen",
    );
    const commitment = second.commitmentOf(3n);
    assert.deepEqual(commitment?.scores, [0]);
    assert.ok(commitment?.revealedAt !== undefined, "still revealed after reopen");
  });
});
