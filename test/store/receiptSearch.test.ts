import assert from "node:assert/strict";
import { join } from "node:path";
import { after, afterEach, before, describe, it, mock } from "node:test";
import Database from "better-sqlite3";
import { type Address, getAddress, type Hex } from "viem";
import { InvalidInputError } from "../../src/errors/index.ts";
import {
  openReceiptStore,
  type ReceiptStore,
  type SearchReceiptsParameters,
  type StoredAuditVerdict,
  schemaVersion,
} from "../../src/store/index.ts";
import { undoChainBinding } from "../fixtures/legacyPaymentTables.ts";
import { temporaryHome } from "../helpers.ts";

const requestAlpha = `0xa1${"00".repeat(31)}` as Hex;
const requestBeta = `0xa2${"00".repeat(31)}` as Hex;
const requestGamma = `0xb0${"00".repeat(31)}` as Hex;
const requestDelta = `0xc0${"00".repeat(31)}` as Hex;
/** Mixed-case checksummed addresses, so that case-insensitive matching is put to the test. */
const providerA = getAddress("0xdeadbeef0000000000000000000000000000a11c");
const providerB = getAddress("0x5e1f00000000000000000000000000000000b0b0");
const validatorOne = getAddress("0x7a11da7000000000000000000000000000000001");
const validatorTwo = getAddress("0x7a11da7000000000000000000000000000000002");
const modelOne = `0x${"12".repeat(32)}`;
const modelTwo = `0x${"34".repeat(32)}`;

/** Makes the store's clock (Date.now) read `now` until the test ends. */
const clockAt = (now: number) => mock.method(Date, "now", () => now);

/** A store holding seven receipts (newest first: gamma, beta 1, beta 0, alpha 1, alpha 0, weird, other). */
function seed(store: ReceiptStore) {
  const save = (requestId: Hex, segment: number, provider: Address, modelHash: string, createdAt: number) =>
    store.saveReceipt({
      requestId,
      segment,
      provider,
      modelHash,
      receipt: { message: { requestId, segment } },
      createdAt,
    });
  save(requestAlpha, 0, providerA, modelOne, 1000);
  save(requestAlpha, 1, providerB, modelOne, 2000);
  save(requestBeta, 0, providerA, modelTwo, 3000);
  // Same time as beta 0: ties are broken by request id, then segment.
  save(requestBeta, 1, providerB, modelTwo, 3000);
  save(requestGamma, 0, providerB, modelOne, 4000);
  save(requestDelta, 0, providerA, "weird_%hash", 500);
  save(requestDelta, 1, providerA, "weirdXYhash", 400);
}

/** The (request, segment) pairs of a search, in order. */
function keysOf(store: ReceiptStore, parameters: Partial<SearchReceiptsParameters>) {
  return store
    .searchReceipts({ limit: 100, offset: 0, ...parameters })
    .receipts.map((receipt) => `${receipt.requestId.slice(0, 4)}/${receipt.segment}`);
}

function verdictOf(
  overrides: Partial<Omit<StoredAuditVerdict, "receivedAt">>,
): Omit<StoredAuditVerdict, "receivedAt"> {
  return {
    requestId: requestAlpha,
    segment: 0,
    provider: providerA,
    validator: validatorOne,
    verdict: "pass",
    reasons: [],
    metrics: { tokens: 12, worst_distance: 0.01 },
    auditedAt: 1_700_000_000_000,
    signature: `0x${"0f".repeat(65)}`,
    ...overrides,
  };
}

describe("receipt store: search, samples and verdicts", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let files = 0;
  /** A fresh store in its own file. */
  const freshStore = () => {
    files += 1;
    return openReceiptStore({ path: join(directory.home, `search-${files}.db`) });
  };

  before(async () => {
    directory = await temporaryHome("mycel-receipt-search-");
  });
  afterEach(() => mock.restoreAll());
  after(() => directory.remove());

  it("lists receipts newest first, with total, limit and offset", () => {
    const store = freshStore();
    try {
      assert.deepEqual(store.searchReceipts({ limit: 10, offset: 0 }), { total: 0, receipts: [] }, "empty");
      seed(store);
      const everything = ["0xb0/0", "0xa2/0", "0xa2/1", "0xa1/1", "0xa1/0", "0xc0/0", "0xc0/1"];
      assert.deepEqual(keysOf(store, {}), everything);
      const first = store.searchReceipts({ limit: 3, offset: 0 });
      assert.equal(first.total, 7, "total counts every match, not the page");
      assert.deepEqual(
        first.receipts.map((receipt) => receipt.createdAt),
        [4000, 3000, 3000],
      );
      const second = store.searchReceipts({ limit: 3, offset: 3 });
      assert.equal(second.total, 7);
      assert.deepEqual(
        second.receipts.map((receipt) => `${receipt.requestId.slice(0, 4)}/${receipt.segment}`),
        everything.slice(3, 6),
      );
      const last = store.searchReceipts({ limit: 3, offset: 6 });
      assert.deepEqual(
        last.receipts.map((receipt) => receipt.segment),
        [1],
        "the last page holds the rest",
      );
      assert.deepEqual(
        store.searchReceipts({ limit: 3, offset: 7 }),
        { total: 7, receipts: [] },
        "past the end",
      );
      const [newest] = first.receipts;
      assert.deepEqual(newest, {
        requestId: requestGamma,
        segment: 0,
        provider: providerB,
        modelHash: modelOne,
        receipt: { message: { requestId: requestGamma, segment: 0 } },
        createdAt: 4000,
        sampledTo: null,
        audit: null,
      });
    } finally {
      store.close();
    }
  });

  it("finds by request id prefix, with or without 0x, in any case", () => {
    const store = freshStore();
    try {
      seed(store);
      assert.deepEqual(keysOf(store, { query: "0xa" }), ["0xa2/0", "0xa2/1", "0xa1/1", "0xa1/0"]);
      assert.deepEqual(keysOf(store, { query: "0xa1" }), ["0xa1/1", "0xa1/0"]);
      assert.deepEqual(keysOf(store, { query: "a1" }), ["0xa1/1", "0xa1/0"], "without 0x");
      assert.deepEqual(keysOf(store, { query: "  0XA1  " }), ["0xa1/1", "0xa1/0"], "trimmed, any case");
      assert.deepEqual(keysOf(store, { query: requestBeta }), ["0xa2/0", "0xa2/1"], "a whole id");
      assert.deepEqual(keysOf(store, { query: "0xa3" }), [], "no such prefix");
      assert.deepEqual(keysOf(store, { query: "00" }), [], "a prefix, not a substring");
      const page = store.searchReceipts({ query: "0xa", limit: 1, offset: 1 });
      assert.equal(page.total, 4, "total counts the matches of the query");
      assert.equal(page.receipts[0]?.requestId, requestBeta);
      assert.equal(page.receipts[0]?.segment, 1);
    } finally {
      store.close();
    }
  });

  it("finds by provider address prefix, case-insensitively", () => {
    const store = freshStore();
    try {
      seed(store);
      const ofA = ["0xa2/0", "0xa1/0", "0xc0/0", "0xc0/1"];
      assert.deepEqual(keysOf(store, { query: "0xdeadbeef" }), ofA);
      assert.deepEqual(keysOf(store, { query: "0xDEADBEEF" }), ofA, "uppercase");
      assert.deepEqual(keysOf(store, { query: "deadbeef" }), ofA, "without 0x");
      assert.deepEqual(keysOf(store, { query: providerA }), ofA, "the whole checksummed address");
      assert.deepEqual(keysOf(store, { query: providerA.toLowerCase() }), ofA, "the whole lowercase address");
      assert.deepEqual(keysOf(store, { query: "0x5E1F" }), ["0xb0/0", "0xa2/1", "0xa1/1"]);
      for (const receipt of store.searchReceipts({ query: "0x5e1f", limit: 10, offset: 0 }).receipts)
        assert.equal(receipt.provider, providerB, "addresses come back checksummed");
    } finally {
      store.close();
    }
  });

  it("finds by model hash prefix, and by the extra model hashes given", () => {
    const store = freshStore();
    try {
      seed(store);
      assert.deepEqual(keysOf(store, { query: "0x3434" }), ["0xa2/0", "0xa2/1"]);
      assert.deepEqual(keysOf(store, { query: "3434" }), ["0xa2/0", "0xa2/1"], "without 0x");
      assert.deepEqual(keysOf(store, { query: "0x1212" }), ["0xb0/0", "0xa1/1", "0xa1/0"]);
      assert.deepEqual(keysOf(store, { query: "WEIRD" }), ["0xc0/0", "0xc0/1"], "any case");
      assert.deepEqual(keysOf(store, { query: "tiny-model" }), [], "a name matches nothing by itself");
      assert.deepEqual(
        keysOf(store, { query: "tiny-model", modelHashes: [modelTwo] }),
        ["0xa2/0", "0xa2/1"],
        "the hashes of the models whose names match",
      );
      assert.deepEqual(
        keysOf(store, { query: "tiny-model", modelHashes: [modelOne.toUpperCase().replace("0X", "0x")] }),
        ["0xb0/0", "0xa1/1", "0xa1/0"],
        "extra hashes match in any case",
      );
      assert.deepEqual(
        keysOf(store, { query: "0xb0", modelHashes: [modelTwo] }),
        ["0xb0/0", "0xa2/0", "0xa2/1"],
        "the query's own matches and the extra hashes' together",
      );
      assert.equal(
        store.searchReceipts({ query: "tiny", modelHashes: [modelTwo], limit: 1, offset: 0 }).total,
        2,
      );
      assert.deepEqual(
        keysOf(store, { query: "tiny-model", modelHashes: [`0x${"34".repeat(31)}`] }),
        [],
        "extra hashes match whole, not as a prefix",
      );
    } finally {
      store.close();
    }
  });

  it("matches LIKE's wildcards in a query literally", () => {
    const store = freshStore();
    try {
      seed(store);
      assert.deepEqual(keysOf(store, { query: "%" }), [], "% is not 'anything'");
      assert.deepEqual(keysOf(store, { query: "_" }), [], "_ is not 'any character'");
      assert.deepEqual(keysOf(store, { query: "0x_1" }), [], "not 0xa1...");
      assert.deepEqual(keysOf(store, { query: "0x%" }), []);
      assert.deepEqual(
        keysOf(store, { query: "weird_" }),
        ["0xc0/0"],
        "an underscore matches an underscore only",
      );
      assert.deepEqual(keysOf(store, { query: "weird_%" }), ["0xc0/0"]);
      assert.deepEqual(keysOf(store, { query: "weird%hash" }), [], "a percent sign is not a gap");
      assert.deepEqual(keysOf(store, { query: "\\" }), [], "the escape character itself is literal too");
      assert.equal(store.searchReceipts({ query: "%", limit: 10, offset: 0 }).total, 0);
    } finally {
      store.close();
    }
  });

  it("records which validator a segment was sampled to, the first one kept, and shows it in searches", () => {
    const store = freshStore();
    try {
      seed(store);
      assert.equal(store.sampledTo({ requestId: requestAlpha, segment: 1 }), undefined, "not sampled yet");
      store.markSampled({ requestId: requestAlpha, segment: 1, validatorPeer: "16Uiu2HAmValidatorOne" });
      store.markSampled({
        requestId: requestAlpha.toUpperCase().replace("0X", "0x") as Hex,
        segment: 1,
        validatorPeer: "16Uiu2HAmValidatorTwo",
      });
      assert.equal(store.sampledTo({ requestId: requestAlpha, segment: 1 }), "16Uiu2HAmValidatorOne");
      assert.equal(store.sampledTo({ requestId: requestAlpha, segment: 0 }), undefined, "per segment");
      const found = store.searchReceipts({ query: requestAlpha, limit: 10, offset: 0 }).receipts;
      assert.deepEqual(
        found.map((receipt) => [receipt.segment, receipt.sampledTo]),
        [
          [1, "16Uiu2HAmValidatorOne"],
          [0, null],
        ],
      );
      assert.equal(store.searchReceipts({ limit: 100, offset: 0 }).total, 7, "sampling adds no rows");
    } finally {
      store.close();
    }
  });

  it("stores a validator's verdict once: the same validator's second one is refused and the first kept", () => {
    const store = freshStore();
    try {
      seed(store);
      clockAt(7_000);
      assert.equal(store.saveAuditVerdict(verdictOf({ verdict: "pass" })), true);
      clockAt(8_000);
      assert.equal(
        store.saveAuditVerdict(
          verdictOf({
            verdict: "fail",
            validator: validatorOne.toLowerCase() as Address,
            reasons: [{ code: "mismatch", message: "changed its mind" }],
          }),
        ),
        false,
        "the same validator, whatever its address's case",
      );
      assert.deepEqual(store.auditVerdicts(requestAlpha), [
        { ...verdictOf({ verdict: "pass" }), receivedAt: 7_000 },
      ]);
    } finally {
      store.close();
    }
  });

  it("returns a request's verdicts by segment then arrival, and finds audited and unaudited segments", () => {
    const store = freshStore();
    try {
      seed(store);
      clockAt(9_000);
      assert.equal(store.saveAuditVerdict(verdictOf({ segment: 1, provider: providerB })), true);
      clockAt(8_000);
      assert.equal(store.saveAuditVerdict(verdictOf({ segment: 0, validator: validatorTwo })), true);
      clockAt(8_500);
      assert.equal(
        store.saveAuditVerdict(
          verdictOf({ requestId: requestBeta.toUpperCase().replace("0X", "0x") as Hex }),
        ),
        true,
      );
      assert.deepEqual(
        store.auditVerdicts(requestAlpha).map((verdict) => [verdict.segment, verdict.receivedAt]),
        [
          [0, 8_000],
          [1, 9_000],
        ],
      );
      assert.equal(
        store.auditVerdicts(requestBeta)[0]?.requestId,
        requestBeta,
        "request ids stored lowercase",
      );
      assert.deepEqual(store.auditVerdicts(requestGamma), [], "none");
      assert.deepEqual(keysOf(store, { audited: true }), ["0xa2/0", "0xa1/1", "0xa1/0"]);
      assert.deepEqual(keysOf(store, { audited: false }), ["0xb0/0", "0xa2/1", "0xc0/0", "0xc0/1"]);
      assert.deepEqual(keysOf(store, { audited: undefined }).length, 7, "both");
      assert.deepEqual(keysOf(store, { query: "0xa1", audited: false }), [], "with a query too");
      assert.deepEqual(keysOf(store, { query: "0xa2", audited: false }), ["0xa2/1"]);
      assert.equal(store.searchReceipts({ audited: true, limit: 1, offset: 0 }).total, 3);
      const [audited] = store.searchReceipts({
        query: requestBeta,
        audited: true,
        limit: 10,
        offset: 0,
      }).receipts;
      assert.deepEqual(audited?.audit, {
        ...verdictOf({ requestId: requestBeta }),
        receivedAt: 8_500,
      });
    } finally {
      store.close();
    }
  });

  it("shows the failing verdict when validators disagree, whichever came first", () => {
    const store = freshStore();
    try {
      seed(store);
      const failure = [{ code: "fingerprint_mismatch", message: "token 3 differs" }];
      clockAt(1_000);
      store.saveAuditVerdict(
        verdictOf({ segment: 0, validator: validatorOne, verdict: "fail", reasons: failure }),
      );
      store.saveAuditVerdict(
        verdictOf({ segment: 1, validator: validatorOne, verdict: "pass", provider: providerB }),
      );
      clockAt(2_000);
      store.saveAuditVerdict(verdictOf({ segment: 0, validator: validatorTwo, verdict: "pass" }));
      store.saveAuditVerdict(
        verdictOf({
          segment: 1,
          validator: validatorTwo,
          verdict: "fail",
          provider: providerB,
          reasons: failure,
        }),
      );
      assert.equal(store.auditVerdicts(requestAlpha).length, 4, "both validators' verdicts are kept");
      const found = store.searchReceipts({ query: requestAlpha, limit: 10, offset: 0 }).receipts;
      assert.deepEqual(
        found.map((receipt) => [receipt.segment, receipt.audit?.verdict, receipt.audit?.validator]),
        [
          [1, "fail", validatorTwo],
          [0, "fail", validatorOne],
        ],
      );
      assert.deepEqual(found[1]?.audit?.reasons, failure);
      assert.equal(keysOf(store, { audited: true }).length, 2, "a segment with two verdicts is listed once");
    } finally {
      store.close();
    }
  });

  it("keeps samples and verdicts across close and reopen", () => {
    const path = join(directory.home, "reopen.db");
    const first = openReceiptStore({ path });
    let saved: StoredAuditVerdict[];
    try {
      seed(first);
      first.markSampled({ requestId: requestGamma, segment: 0, validatorPeer: "16Uiu2HAmKept" });
      first.saveAuditVerdict(
        verdictOf({
          requestId: requestGamma,
          provider: providerB,
          verdict: "fail",
          reasons: [{ code: "output_hash", message: "the output hash differs" }],
          metrics: { tokens: 40, label: "f16", exact: false, missing: null },
        }),
      );
      saved = first.auditVerdicts(requestGamma);
      assert.equal(saved.length, 1);
    } finally {
      first.close();
    }
    const reopened = openReceiptStore({ path });
    try {
      assert.deepEqual(reopened.auditVerdicts(requestGamma), saved);
      assert.deepEqual(saved[0]?.metrics, { tokens: 40, label: "f16", exact: false, missing: null });
      assert.equal(reopened.sampledTo({ requestId: requestGamma, segment: 0 }), "16Uiu2HAmKept");
      const [gamma] = reopened.searchReceipts({ query: requestGamma, limit: 1, offset: 0 }).receipts;
      assert.equal(gamma?.sampledTo, "16Uiu2HAmKept");
      assert.deepEqual(gamma?.audit, saved[0]);
      assert.equal(
        reopened.saveAuditVerdict(verdictOf({ requestId: requestGamma, provider: providerB })),
        false,
        "still refuses the same validator's second verdict",
      );
    } finally {
      reopened.close();
    }
  });

  it("refuses bad request ids with InvalidInputError and changes nothing", () => {
    const store = freshStore();
    try {
      seed(store);
      store.markSampled({ requestId: requestAlpha, segment: 0, validatorPeer: "16Uiu2HAmFirst" });
      store.saveAuditVerdict(verdictOf({}));
      const before = store.searchReceipts({ limit: 100, offset: 0 });
      const verdictsBefore = store.auditVerdicts(requestAlpha);
      const badIds = ["0x12", requestAlpha.slice(2), `${requestAlpha}00`, `0x${"zz".repeat(32)}`, ""];
      for (const bad of badIds) {
        const requestId = bad as Hex;
        assert.throws(
          () => store.markSampled({ requestId, segment: 0, validatorPeer: "16Uiu2HAmBad" }),
          InvalidInputError,
          `markSampled(${bad})`,
        );
        assert.throws(
          () => store.sampledTo({ requestId, segment: 0 }),
          InvalidInputError,
          `sampledTo(${bad})`,
        );
        assert.throws(() => store.saveAuditVerdict(verdictOf({ requestId })), InvalidInputError, bad);
        assert.throws(() => store.auditVerdicts(requestId), InvalidInputError, `auditVerdicts(${bad})`);
      }
      assert.throws(
        () => store.auditVerdicts(undefined as unknown as Hex),
        (error: unknown) => {
          assert.ok(error instanceof InvalidInputError);
          assert.match(error.hint ?? "", /32 bytes/);
          return true;
        },
      );
      assert.deepEqual(store.searchReceipts({ limit: 100, offset: 0 }), before);
      assert.deepEqual(store.auditVerdicts(requestAlpha), verdictsBefore);
      assert.equal(store.sampledTo({ requestId: requestAlpha, segment: 0 }), "16Uiu2HAmFirst");
    } finally {
      store.close();
    }
  });
});

describe("receipt store: schema version 5", () => {
  let directory: { home: string; remove: () => Promise<void> };

  before(async () => {
    directory = await temporaryHome("mycel-receipt-schema-");
  });
  after(() => directory.remove());

  /** The names of a database's tables and indexes. */
  function objectsOf(path: string) {
    const raw = new Database(path, { readonly: true });
    try {
      return {
        version: raw.pragma("user_version", { simple: true }),
        names: raw
          .prepare<[], { name: string }>("SELECT name FROM sqlite_schema WHERE type IN ('table', 'index')")
          .all()
          .map((row) => row.name),
      };
    } finally {
      raw.close();
    }
  }

  it("creates the audit tables in a new database", () => {
    const path = join(directory.home, "fresh.db");
    openReceiptStore({ path }).close();
    const { version, names } = objectsOf(path);
    assert.equal(schemaVersion, 7);
    assert.equal(version, schemaVersion);
    for (const name of ["audit_samples", "audit_verdicts", "receipts_by_time", "receipts"])
      assert.ok(names.includes(name), `${name} exists`);
  });

  it("upgrades a database at version 4, keeping its receipts", () => {
    const path = join(directory.home, "version4.db");
    const store = openReceiptStore({ path });
    store.saveReceipt({
      requestId: requestAlpha,
      segment: 0,
      provider: providerA,
      modelHash: modelOne,
      receipt: { kept: true },
      createdAt: 1234,
    });
    store.close();
    // Undo migrations 7, 6 and 5: what is left is what the first four migrations made.
    const raw = new Database(path);
    undoChainBinding(raw);
    raw.exec("DROP TABLE audit_samples; DROP TABLE audit_verdicts; DROP INDEX receipts_by_time;");
    raw.pragma("user_version = 4");
    raw.close();
    const atFour = objectsOf(path);
    assert.equal(atFour.version, 4);
    assert.equal(atFour.names.includes("audit_verdicts"), false);

    const upgraded = openReceiptStore({ path });
    try {
      assert.deepEqual(
        upgraded.getReceipts(requestAlpha).map((receipt) => receipt.receipt),
        [{ kept: true }],
      );
      assert.equal(upgraded.saveAuditVerdict(verdictOf({})), true, "the new tables are usable");
      upgraded.markSampled({ requestId: requestAlpha, segment: 0, validatorPeer: "16Uiu2HAmAfterUpgrade" });
      const [receipt] = upgraded.searchReceipts({ audited: true, limit: 10, offset: 0 }).receipts;
      assert.equal(receipt?.sampledTo, "16Uiu2HAmAfterUpgrade");
      assert.equal(receipt?.audit?.verdict, "pass");
    } finally {
      upgraded.close();
    }
    const after = objectsOf(path);
    assert.equal(after.version, schemaVersion);
    for (const name of ["audit_samples", "audit_verdicts", "receipts_by_time"])
      assert.ok(after.names.includes(name), `${name} exists after the upgrade`);
  });
});
