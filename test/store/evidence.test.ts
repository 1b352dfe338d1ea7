import assert from "node:assert/strict";
import { join } from "node:path";
import { after, afterEach, before, describe, it, mock } from "node:test";
import type { Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  buildFingerprints,
  type Evidence,
  evidenceCommitment,
  hashRequest,
  hashTokenIds,
  type InferenceRequest,
  receiptDomain,
  type SignedReceipt,
  signReceipt,
} from "../../src/protocol/index.ts";
import { openEvidenceStore, providerEvidenceStorePath } from "../../src/store/index.ts";
import { temporaryHome } from "../helpers.ts";

const providerKey: Hex = `0x${"5a".repeat(32)}`;
const provider = privateKeyToAccount(providerKey).address;
const modelHash = `0x${"12".repeat(32)}` as Hex;
const requestIds = [`0x${"a1".repeat(32)}`, `0x${"b2".repeat(32)}`, `0x${"c3".repeat(32)}`] as const;

/** An answer of `outputLength` tokens: its evidence, request and signed receipt. */
async function answer(parameters: {
  requestId: Hex;
  outputLength: number;
  finishReason?: "stop" | "length";
}) {
  const request: InferenceRequest = {
    model_hash: modelHash,
    kind: "chat",
    messages: [{ role: "user", content: `question ${parameters.requestId.slice(2, 6)}` }],
    max_tokens: parameters.outputLength,
    temperature: 0.5,
    top_p: 1,
    top_k: 0,
    seed: 42,
    stop: [],
  };
  const outputTokens = Array.from({ length: parameters.outputLength }, (_, index) => 100 + index);
  const evidence: Evidence = {
    modelHash,
    promptTokens: [1, 2, 3, 4],
    outputTokens,
    fingerprints: buildFingerprints(
      outputTokens.map((token) => ({ ids: [token, token + 1, token + 2, token + 3], gaps: [0.5, 1.25, 2] })),
    ),
    finishReason: parameters.finishReason ?? "length",
  };
  const receipt = await signReceipt({
    privateKey: providerKey,
    domain: receiptDomain(),
    message: {
      requestId: parameters.requestId,
      client: `0x${"22".repeat(20)}`,
      provider,
      modelHash,
      requestHash: hashRequest(request),
      promptHash: hashTokenIds(evidence.promptTokens),
      outputHash: hashTokenIds(outputTokens),
      commitment: evidenceCommitment(evidence),
      promptTokens: evidence.promptTokens.length,
      completionTokens: outputTokens.length,
      price: 1234n,
      timestamp: 1_700_000_000n,
    },
  });
  return { requestId: parameters.requestId, evidence, request, receipt, provider };
}

/** Makes the store's clock (Date.now) read `now` until the test ends. */
const savingAt = (now: number) => mock.method(Date, "now", () => now);

/** The receipt as JSON storage hands it back (types included, bigints as strings). */
const asJson = (receipt: SignedReceipt) => JSON.parse(JSON.stringify(receipt));

describe("evidence store", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let path: string;

  before(async () => {
    directory = await temporaryHome("mycel-evidence-store-");
    path = providerEvidenceStorePath(directory.home, provider);
  });
  afterEach(() => mock.restoreAll());
  after(() => directory.remove());

  it("keeps a provider's evidence in its own folder", () => {
    assert.equal(
      path,
      join(directory.home, "provider", provider.toLowerCase(), "evidence.sqlite"),
      "one file per provider address, lowercased",
    );
  });

  it("saves and returns an answer's evidence, request and receipt unchanged", async () => {
    savingAt(5_000);
    const saved = await answer({ requestId: requestIds[0], outputLength: 40, finishReason: "stop" });
    const store = openEvidenceStore({ path });
    try {
      assert.equal(store.path, path);
      assert.equal(store.count(), 0, "empty at first");
      assert.equal(store.get(requestIds[0]), undefined, "nothing to get yet");
      store.save(saved);
      const stored = store.get(requestIds[0]);
      assert.ok(stored, "found by request id");
      assert.deepEqual(stored, {
        requestId: requestIds[0],
        evidence: saved.evidence,
        request: saved.request,
        receipt: asJson(saved.receipt),
        createdAt: 5_000,
      });
      assert.equal(stored.evidence.fingerprints.length, 2, "both chunks of a 40-token answer");
      assert.equal(
        evidenceCommitment(stored.evidence),
        stored.receipt.message.commitment,
        "the stored fingerprints still match the receipt's commitment",
      );
      assert.deepEqual(
        store.get(requestIds[0].toUpperCase().replace("0X", "0x") as Hex),
        stored,
        "request ids are case-insensitive",
      );
      assert.equal(store.get(requestIds[1]), undefined, "another request id finds nothing");
      assert.equal(store.count(), 1);
    } finally {
      store.close();
    }
  });

  it("replaces the evidence of a request id saved again", async () => {
    savingAt(6_000);
    const store = openEvidenceStore({ path });
    try {
      const second = await answer({ requestId: requestIds[0], outputLength: 3 });
      store.save(second);
      assert.equal(store.count(), 1, "still one answer");
      const stored = store.get(requestIds[0]);
      assert.deepEqual(stored?.evidence, second.evidence, "the second answer's evidence");
      assert.deepEqual(stored?.receipt, asJson(second.receipt), "and its receipt");
      assert.equal(stored?.createdAt, 6_000, "saved at the second time");
    } finally {
      store.close();
    }
  });

  it("prunes evidence older than a cutoff and counts what is left", async () => {
    const store = openEvidenceStore({ path });
    try {
      savingAt(10_000);
      store.save(await answer({ requestId: requestIds[1], outputLength: 5 }));
      savingAt(20_000);
      store.save(await answer({ requestId: requestIds[2], outputLength: 7 }));
      assert.equal(store.count(), 3, "saved at 6 s, 10 s and 20 s");
      assert.equal(store.prune(6_000), 0, "the cutoff is exclusive: nothing before 6 s");
      assert.equal(store.prune(10_001), 2, "drops the answers of 6 s and 10 s");
      assert.equal(store.count(), 1);
      assert.equal(store.get(requestIds[0]), undefined, "pruned");
      assert.equal(store.get(requestIds[1]), undefined, "pruned");
      assert.equal(store.get(requestIds[2])?.createdAt, 20_000, "the newer one is kept");
      assert.equal(store.prune(10_001), 0, "pruning again deletes nothing");
    } finally {
      store.close();
    }
  });

  it("keeps its evidence across close and reopen of the file", async () => {
    const reopened = openEvidenceStore({ path });
    try {
      assert.equal(reopened.count(), 1);
      const stored = reopened.get(requestIds[2]);
      assert.deepEqual(stored?.evidence.outputTokens, [100, 101, 102, 103, 104, 105, 106]);
      assert.equal(stored?.request.max_tokens, 7);
      reopened.save(await answer({ requestId: requestIds[0], outputLength: 2 }));
    } finally {
      reopened.close();
    }
    const again = openEvidenceStore({ path });
    try {
      assert.equal(again.count(), 2, "the answer saved before closing is there");
      assert.ok(again.get(requestIds[0]), "found after reopening");
      assert.equal(again.prune(Number.MAX_SAFE_INTEGER), 2, "prunes everything with a cutoff in the future");
      assert.equal(again.count(), 0);
    } finally {
      again.close();
    }
  });

  it("works in memory too", async () => {
    const store = openEvidenceStore({ path: ":memory:" });
    try {
      const saved = await answer({ requestId: requestIds[1], outputLength: 1 });
      store.save(saved);
      assert.deepEqual(store.get(requestIds[1])?.evidence, saved.evidence, "round trip in memory");
    } finally {
      store.close();
    }
  });
});
