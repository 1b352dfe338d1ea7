import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { getAddress } from "viem";
import { InvalidInputError } from "../../src/errors/index.ts";
import {
  DatabaseError,
  openReceiptStore,
  ReceiptConflictError,
  type SaveReceiptParameters,
  schemaVersion,
} from "../../src/store/index.ts";
import { temporaryHome } from "../helpers.ts";

const requestId = `0x${"ab".repeat(32)}` as const;
const otherRequestId = `0x${"cd".repeat(32)}` as const;
const providerA = "0x1111111111111111111111111111111111111111";
const providerB = "0x2222222222222222222222222222222222222222";
const modelHash = `0x${"12".repeat(32)}`;

function signedReceipt(segment: number, outputTokens: bigint) {
  return {
    domain: { name: "Mycel", version: "1", chainId: 31337n },
    types: { Receipt: [{ name: "outputTokens", type: "uint256" }] },
    message: { requestId, segment, outputTokens },
    signature: `0x${"0f".repeat(65)}`,
  };
}

describe("receipt store", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let path: string;

  before(async () => {
    directory = await temporaryHome("mycel-receipts-");
    path = join(directory.home, "nested", "folder", "mycel.db");
  });
  after(() => directory.remove());

  it("saves receipts and returns them ordered by segment, bigints as decimal strings", () => {
    const store = openReceiptStore({ path });
    try {
      assert.deepEqual(
        store.saveReceipt({
          requestId,
          segment: 1,
          provider: providerB,
          modelHash,
          receipt: signedReceipt(1, 7n),
          createdAt: 2000,
        }),
        { created: true },
      );
      store.saveReceipt({
        requestId,
        segment: 0,
        provider: providerA,
        modelHash,
        receipt: signedReceipt(0, 12345678901234567890n),
        createdAt: 1000,
      });
      store.saveReceipt({
        requestId: otherRequestId,
        segment: 0,
        provider: providerA,
        modelHash,
        receipt: signedReceipt(0, 1n),
      });
      const receipts = store.getReceipts(requestId);
      assert.deepEqual(
        receipts.map((r) => [r.segment, r.provider, r.createdAt]),
        [
          [0, getAddress(providerA), 1000],
          [1, getAddress(providerB), 2000],
        ],
      );
      assert.equal(receipts[0]?.requestId, requestId);
      assert.equal(receipts[0]?.modelHash, modelHash);
      assert.deepEqual(receipts[0]?.receipt, {
        domain: { name: "Mycel", version: "1", chainId: "31337" },
        types: { Receipt: [{ name: "outputTokens", type: "uint256" }] },
        message: { requestId, segment: 0, outputTokens: "12345678901234567890" },
        signature: `0x${"0f".repeat(65)}`,
      });
      assert.equal(store.countReceipts(), 3);
      assert.deepEqual(store.getReceipts(`0x${"00".repeat(32)}`), []);
      assert.deepEqual(
        store.getReceipts(requestId.toUpperCase().replace("0X", "0x") as `0x${string}`).length,
        2,
        "request ids are case-insensitive",
      );
    } finally {
      store.close();
    }
  });

  it("is idempotent: saving the same receipt again is a no-op, whatever its key order or time", () => {
    const store = openReceiptStore({ path });
    try {
      const { domain, types, message, signature } = signedReceipt(0, 12345678901234567890n);
      const result = store.saveReceipt({
        requestId,
        segment: 0,
        provider: providerA.toUpperCase().replace("0X", "0x") as `0x${string}`,
        modelHash,
        receipt: { signature, message, types, domain },
        createdAt: 9999,
      });
      assert.deepEqual(result, { created: false });
      assert.equal(store.countReceipts(), 3);
      assert.equal(store.getReceipts(requestId)[0]?.createdAt, 1000);
    } finally {
      store.close();
    }
  });

  it("throws ReceiptConflictError for a different receipt under a stored key and changes nothing", () => {
    const store = openReceiptStore({ path });
    try {
      const before = store.getReceipts(requestId);
      assert.throws(
        () =>
          store.saveReceipt({
            requestId,
            segment: 0,
            provider: providerA,
            modelHash,
            receipt: signedReceipt(0, 1n),
          }),
        (error: unknown) => {
          assert.ok(error instanceof ReceiptConflictError);
          assert.equal(error.segment, 0);
          assert.match(error.details ?? "", /receipt/);
          return true;
        },
      );
      assert.throws(
        () =>
          store.saveReceipt({
            requestId,
            segment: 1,
            provider: providerA,
            modelHash,
            receipt: signedReceipt(1, 7n),
          }),
        ReceiptConflictError,
      );
      assert.deepEqual(store.getReceipts(requestId), before);
      assert.equal(store.countReceipts(), 3);
    } finally {
      store.close();
    }
  });

  it("keeps everything across close and reopen, in WAL mode", () => {
    const store = openReceiptStore({ path });
    store.close();
    store.close();
    const reopened = openReceiptStore({ path });
    try {
      assert.equal(reopened.countReceipts(), 3);
      assert.deepEqual(
        reopened.getReceipts(requestId).map((r) => r.segment),
        [0, 1],
      );
    } finally {
      reopened.close();
    }
    const raw = new Database(path, { readonly: true });
    try {
      assert.equal(raw.pragma("journal_mode", { simple: true }), "wal");
      assert.equal(raw.pragma("user_version", { simple: true }), schemaVersion);
    } finally {
      raw.close();
    }
  });

  it("rejects malformed input", () => {
    const store = openReceiptStore({ path });
    try {
      const valid: SaveReceiptParameters = {
        requestId,
        segment: 5,
        provider: providerA,
        modelHash,
        receipt: {},
      };
      assert.throws(() => store.saveReceipt({ ...valid, requestId: "0x1234" }), InvalidInputError);
      assert.throws(() => store.saveReceipt({ ...valid, segment: -1 }), InvalidInputError);
      assert.throws(() => store.saveReceipt({ ...valid, segment: 1.5 }), InvalidInputError);
      assert.throws(() => store.saveReceipt({ ...valid, provider: "0xnope" }), InvalidInputError);
      assert.throws(() => store.saveReceipt({ ...valid, receipt: undefined }), InvalidInputError);
      assert.throws(() => store.getReceipts("0x12"), InvalidInputError);
      assert.equal(store.countReceipts(), 3);
    } finally {
      store.close();
    }
  });

  it("refuses a database written by a newer Mycel", () => {
    const newer = join(directory.home, "newer.db");
    const raw = new Database(newer);
    raw.pragma(`user_version = ${schemaVersion + 1}`);
    raw.close();
    assert.throws(
      () => openReceiptStore({ path: newer }),
      (error: unknown) => {
        assert.ok(error instanceof DatabaseError);
        assert.match(error.hint ?? "", /upgrade Mycel/);
        return true;
      },
    );
  });

  it("remembers untrusted providers across a reopen, once per address", () => {
    const file = join(directory.home, "untrusted.db");
    const first = openReceiptStore({ path: file });
    try {
      assert.deepEqual(first.untrustedProviders(), []);
      first.markUntrusted({
        address: providerA,
        peerId: "16Uiu2HAmA",
        reason: "receipt rejected: output hash",
      });
      first.markUntrusted({
        address: providerA.toUpperCase().replace("0X", "0x") as `0x${string}`,
        peerId: "16Uiu2HAmB",
        reason: "again",
      });
    } finally {
      first.close();
    }
    const reopened = openReceiptStore({ path: file });
    try {
      const untrusted = reopened.untrustedProviders();
      assert.equal(untrusted.length, 1, "one row per address, the first reason kept");
      assert.equal(untrusted[0]?.address, getAddress(providerA));
      assert.equal(untrusted[0]?.peerId, "16Uiu2HAmA");
      assert.match(untrusted[0]?.reason ?? "", /output hash/);
    } finally {
      reopened.close();
    }
  });
});
