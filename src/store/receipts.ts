/** The receipt store: every signed receipt a gateway accepted, one row per (request, provider segment), in SQLite. */
import type Database from "better-sqlite3";
import { type Address, getAddress, type Hex, isAddress } from "viem";
import { InvalidInputError } from "../errors/index.ts";
import { openDatabase } from "./database.ts";
import { ReceiptConflictError } from "./errors.ts";

const requestIdPattern = /^0x[0-9a-fA-F]{64}$/;

/** Parameters of {@link ReceiptStore.saveReceipt}. */
export type SaveReceiptParameters = {
  /** The request's id, bytes32 hex. */
  requestId: Hex;
  /** Which provider segment of the request: 0, 1, 2... (a failover starts a new segment). */
  segment: number;
  /** The provider's address that signed the receipt. */
  provider: Address;
  /** The model's weight hash as the receipt names it. */
  modelHash: string;
  /** The full signed receipt ({domain, types, message, signature}); stored as JSON, bigints as decimal strings. */
  receipt: unknown;
  /** Milliseconds since the epoch; defaults to now. */
  createdAt?: number;
};

/** What {@link ReceiptStore.saveReceipt} returns: `created` is false when the same receipt was already stored. */
export type SaveReceiptReturnType = { created: boolean };

/** One stored receipt. */
export type StoredReceipt = {
  /** Lowercase bytes32 hex. */
  requestId: Hex;
  segment: number;
  /** Checksummed. */
  provider: Address;
  modelHash: string;
  /** The receipt as parsed from its stored JSON (bigints come back as decimal strings). */
  receipt: unknown;
  createdAt: number;
};

/** A validator's verdict on one segment of a request, as the gateway received it (signed by the validator). */
export type StoredAuditVerdict = {
  requestId: Hex;
  segment: number;
  provider: Address;
  validator: Address;
  verdict: "pass" | "fail";
  reasons: { code: string; message: string }[];
  metrics: Record<string, unknown>;
  auditedAt: number;
  signature: Hex;
  receivedAt: number;
};

/** Parameters of {@link ReceiptStore.searchReceipts}. */
export type SearchReceiptsParameters = {
  /** Matches a request id prefix, a provider address prefix, or a model hash prefix (case-insensitive); empty: all. */
  query?: string;
  /** Also matches receipts of these model hashes (e.g. those whose name matches the query). */
  modelHashes?: readonly string[];
  /** true: only audited segments; false: only segments without a verdict; undefined: both. */
  audited?: boolean;
  limit: number;
  offset: number;
};

/** A receipt with what is known of its audit. */
export type SearchedReceipt = StoredReceipt & {
  sampledTo: string | null;
  audit: StoredAuditVerdict | null;
};

/** A receipt store opened by {@link openReceiptStore}. */
export type ReceiptStore = {
  /** The database file. */
  readonly path: string;
  /** Stores a receipt; a no-op when the same one is stored, a {@link ReceiptConflictError} when a different one is. */
  saveReceipt(parameters: SaveReceiptParameters): SaveReceiptReturnType;
  /** Returns the receipts of a request ordered by segment; [] when there are none. */
  getReceipts(requestId: Hex): StoredReceipt[];
  /** Returns how many receipts are stored. */
  countReceipts(): number;
  /** What the receipts add up to, per (provider, model): segments, tokens and price (smallest units). */
  spending(): ReceiptSpending[];
  /** Remembers that a provider cheated (by address: its key is its identity), so a restart forgets nothing. */
  markUntrusted(parameters: { address: Address; peerId: string; reason: string }): void;
  /** The providers caught cheating, oldest first. */
  untrustedProviders(): UntrustedProvider[];
  /** Receipts newest first, filtered, with their audit state; `total` counts every match. */
  searchReceipts(parameters: SearchReceiptsParameters): { total: number; receipts: SearchedReceipt[] };
  /** A request's receipts ordered by segment, each with its audit state as {@link searchReceipts} gives it. */
  receiptsWithAudits(requestId: Hex): SearchedReceipt[];
  /** Records that a segment was sent to a validator for audit. */
  markSampled(parameters: { requestId: Hex; segment: number; validatorPeer: string }): void;
  /** Forgets that a segment was sent to `validatorPeer` (it could not take it): it may be sent to another. */
  unmarkSampled(parameters: { requestId: Hex; segment: number; validatorPeer: string }): void;
  /** Which validator peer a segment was sent to, if any. */
  sampledTo(parameters: { requestId: Hex; segment: number }): string | undefined;
  /** Stores a validator's verdict; false when the same validator's verdict on it was already stored. */
  saveAuditVerdict(verdict: Omit<StoredAuditVerdict, "receivedAt">): boolean;
  /** The verdicts on a request's segments, oldest first. */
  auditVerdicts(requestId: Hex): StoredAuditVerdict[];
  /** Closes the database; the store cannot be used afterwards. */
  close(): void;
};

/** The receipts of one provider for one model, added up. */
export type ReceiptSpending = {
  provider: Address;
  modelHash: string;
  /** Distinct requests (a failover splits one request over several providers). */
  requests: number;
  segments: number;
  promptTokens: number;
  completionTokens: number;
  price: bigint;
};

/** A provider caught cheating (a forged or mismatched receipt, a frame that breaks the protocol). */
export type UntrustedProvider = { address: Address; peerId: string; reason: string; markedAt: number };

/** Parameters of {@link openReceiptStore}. */
export type OpenReceiptStoreParameters = {
  /** The SQLite file, e.g. `<MYCEL_HOME>/mycel.db`; its folder is created if missing. */
  path: string;
};

type ReceiptRow = {
  request_id: string;
  segment: number;
  provider: string;
  model_hash: string;
  receipt: string;
  created_at: number;
};

/**
 * Serializes to JSON with object keys sorted (so equal receipts give equal text whatever their key order)
 * and bigints as decimal strings.
 */
function canonicalJson(value: unknown): string | undefined {
  return JSON.stringify(value, (_key, item: unknown) => {
    if (typeof item === "bigint") return item.toString();
    if (item !== null && typeof item === "object" && !Array.isArray(item)) {
      const record = item as Record<string, unknown>;
      return Object.fromEntries(
        Object.keys(record)
          .sort()
          .map((key) => [key, record[key]]),
      );
    }
    return item;
  });
}

function checkRequestId(requestId: unknown): Hex {
  if (typeof requestId !== "string" || !requestIdPattern.test(requestId)) {
    throw new InvalidInputError(`invalid request id ${JSON.stringify(requestId)}`, {
      param: "requestId",
      hint: "a request id is 32 bytes as 0x-prefixed hex (66 characters)",
    });
  }
  return requestId.toLowerCase() as Hex;
}

function invalid(param: string, message: string, hint: string) {
  return new InvalidInputError(message, { param, hint });
}

type VerdictRow = {
  request_id: string;
  segment: number;
  provider: string;
  validator: string;
  verdict: "pass" | "fail";
  reasons: string;
  metrics: string;
  audited_at: number;
  signature: string;
  received_at: number;
};

function toStoredVerdict(row: VerdictRow): StoredAuditVerdict {
  return {
    requestId: row.request_id as Hex,
    segment: row.segment,
    provider: row.provider as Address,
    validator: row.validator as Address,
    verdict: row.verdict,
    reasons: JSON.parse(row.reasons),
    metrics: JSON.parse(row.metrics),
    auditedAt: row.audited_at,
    signature: row.signature as Hex,
    receivedAt: row.received_at,
  };
}

/** Escapes LIKE's wildcards so that a query matches literally. */
function likePrefix(text: string): string {
  return `${text.replace(/[\\%_]/g, (character) => `\\${character}`)}%`;
}

function toStoredReceipt(row: ReceiptRow): StoredReceipt {
  return {
    requestId: row.request_id as Hex,
    segment: row.segment,
    provider: row.provider as Address,
    modelHash: row.model_hash,
    receipt: JSON.parse(row.receipt),
    createdAt: row.created_at,
  };
}

/** Opens (creating if needed) the receipt store in the SQLite file at `path`. */
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a store is one closure over its database and prepared statements; each method is one short query over them, not a role
export function openReceiptStore(parameters: OpenReceiptStoreParameters): ReceiptStore {
  const { path } = parameters;
  const db: Database.Database = openDatabase(path);
  const insert = db.prepare(
    `INSERT INTO receipts (request_id, segment, provider, model_hash, receipt, created_at)
     VALUES (@request_id, @segment, @provider, @model_hash, @receipt, @created_at)
     ON CONFLICT (request_id, segment) DO NOTHING`,
  );
  const selectOne = db.prepare<[string, number], ReceiptRow>(
    "SELECT * FROM receipts WHERE request_id = ? AND segment = ?",
  );
  const selectByRequest = db.prepare<[string], ReceiptRow>(
    "SELECT * FROM receipts WHERE request_id = ? ORDER BY segment",
  );
  const count = db.prepare<[], { n: number }>("SELECT count(*) AS n FROM receipts");
  const selectSpending = db.prepare<
    [],
    {
      provider: string;
      model_hash: string;
      request_id: string;
      price: string;
      prompt: number;
      completion: number;
    }
  >(
    `SELECT provider, model_hash, request_id, json_extract(receipt, '$.message.price') AS price,
       json_extract(receipt, '$.message.promptTokens') AS prompt,
       json_extract(receipt, '$.message.completionTokens') AS completion
     FROM receipts`,
  );
  const insertUntrusted = db.prepare(
    `INSERT INTO untrusted_providers (address, peer_id, reason, marked_at) VALUES (?, ?, ?, ?)
     ON CONFLICT (address) DO NOTHING`,
  );
  const selectUntrusted = db.prepare<
    [],
    { address: string; peer_id: string; reason: string; marked_at: number }
  >("SELECT * FROM untrusted_providers ORDER BY marked_at, address");

  const insertSample = db.prepare(
    `INSERT INTO audit_samples (request_id, segment, validator_peer, sent_at) VALUES (?, ?, ?, ?)
     ON CONFLICT (request_id, segment) DO NOTHING`,
  );
  const deleteSample = db.prepare(
    "DELETE FROM audit_samples WHERE request_id = ? AND segment = ? AND validator_peer = ?",
  );
  const selectSample = db.prepare<[string, number], { validator_peer: string }>(
    "SELECT validator_peer FROM audit_samples WHERE request_id = ? AND segment = ?",
  );
  const insertVerdict = db.prepare(
    `INSERT INTO audit_verdicts (request_id, segment, provider, validator, verdict, reasons, metrics, audited_at,
       signature, received_at)
     VALUES (@request_id, @segment, @provider, @validator, @verdict, @reasons, @metrics, @audited_at, @signature,
       @received_at)
     ON CONFLICT (request_id, segment, validator) DO NOTHING`,
  );
  const selectVerdicts = db.prepare<[string], VerdictRow>(
    "SELECT * FROM audit_verdicts WHERE request_id = ? ORDER BY segment, received_at",
  );

  const selectWithSamples = db.prepare<[string], ReceiptRow & { sampled_to: string | null }>(
    `SELECT r.*, s.validator_peer AS sampled_to FROM receipts r
     LEFT JOIN audit_samples s ON s.request_id = r.request_id AND s.segment = r.segment
     WHERE r.request_id = ? ORDER BY r.segment`,
  );

  /** Receipt rows with where they were sent for audit and the verdict to show for each. */
  function withAudits(rows: (ReceiptRow & { sampled_to: string | null })[]): SearchedReceipt[] {
    const verdicts = new Map<string, StoredAuditVerdict>();
    for (const requestId of new Set(rows.map((row) => row.request_id)))
      for (const row of selectVerdicts.all(requestId)) {
        const key = `${row.request_id}:${row.segment}`;
        // A failed verdict is the one to show when validators disagree.
        if (!verdicts.has(key) || row.verdict === "fail") verdicts.set(key, toStoredVerdict(row));
      }
    return rows.map((row) => ({
      ...toStoredReceipt(row),
      sampledTo: row.sampled_to,
      audit: verdicts.get(`${row.request_id}:${row.segment}`) ?? null,
    }));
  }

  const save = db.transaction((row: ReceiptRow): SaveReceiptReturnType => {
    if (insert.run(row).changes === 1) return { created: true };
    const stored = selectOne.get(row.request_id, row.segment);
    if (
      stored &&
      stored.provider === row.provider &&
      stored.model_hash === row.model_hash &&
      stored.receipt === row.receipt
    ) {
      return { created: false };
    }
    const differs = [
      stored?.provider !== row.provider ? "provider" : undefined,
      stored?.model_hash !== row.model_hash ? "modelHash" : undefined,
      stored?.receipt !== row.receipt ? "receipt" : undefined,
    ].filter(Boolean);
    throw new ReceiptConflictError({
      requestId: row.request_id,
      segment: row.segment,
      details: `stored receipts are never replaced; the stored one was kept (differs in: ${differs.join(", ")})`,
    });
  });

  return {
    path,
    saveReceipt(receiptParameters) {
      const requestId = checkRequestId(receiptParameters.requestId);
      const { segment, provider, modelHash } = receiptParameters;
      if (!Number.isSafeInteger(segment) || segment < 0) {
        throw invalid("segment", `invalid segment ${segment}`, "a segment is an integer 0, 1, 2...");
      }
      if (typeof provider !== "string" || !isAddress(provider, { strict: false })) {
        throw invalid(
          "provider",
          `invalid provider address ${JSON.stringify(provider)}`,
          "pass a 20-byte 0x address",
        );
      }
      if (typeof modelHash !== "string" || modelHash === "") {
        throw invalid(
          "modelHash",
          "the model hash is empty",
          "pass the model's weight hash from the receipt",
        );
      }
      const createdAt = receiptParameters.createdAt ?? Date.now();
      if (!Number.isSafeInteger(createdAt)) {
        throw invalid("createdAt", `invalid createdAt ${createdAt}`, "pass milliseconds since the epoch");
      }
      let receipt: string | undefined;
      try {
        receipt = canonicalJson(receiptParameters.receipt);
      } catch (cause) {
        throw new InvalidInputError("the receipt cannot be serialized to JSON", {
          param: "receipt",
          details: cause instanceof Error ? cause.message : String(cause),
          hint: "pass a plain object (no cycles)",
          cause,
        });
      }
      if (receipt === undefined) {
        throw invalid("receipt", "the receipt is missing", "pass the signed receipt object");
      }
      return save.immediate({
        request_id: requestId,
        segment,
        provider: getAddress(provider),
        model_hash: modelHash,
        receipt,
        created_at: createdAt,
      });
    },
    getReceipts(requestId) {
      return selectByRequest.all(checkRequestId(requestId)).map(toStoredReceipt);
    },
    countReceipts() {
      return count.get()?.n ?? 0;
    },
    spending() {
      // Prices are uint256 decimal strings: added up here as bigints (SQLite's sum would round them).
      const totals = new Map<string, ReceiptSpending & { requestIds: Set<string> }>();
      for (const row of selectSpending.iterate()) {
        const key = `${row.provider}:${row.model_hash}`;
        let total = totals.get(key);
        if (!total) {
          total = {
            provider: row.provider as Address,
            modelHash: row.model_hash,
            requests: 0,
            segments: 0,
            promptTokens: 0,
            completionTokens: 0,
            price: 0n,
            requestIds: new Set(),
          };
          totals.set(key, total);
        }
        total.requestIds.add(row.request_id);
        total.segments += 1;
        total.promptTokens += Number(row.prompt);
        total.completionTokens += Number(row.completion);
        total.price += BigInt(row.price);
      }
      return [...totals.values()].map(({ requestIds, ...total }) => ({
        ...total,
        requests: requestIds.size,
      }));
    },
    markUntrusted(input) {
      insertUntrusted.run(getAddress(input.address), input.peerId, input.reason.slice(0, 500), Date.now());
    },
    untrustedProviders() {
      return selectUntrusted.all().map((row) => ({
        address: row.address as Address,
        peerId: row.peer_id,
        reason: row.reason,
        markedAt: row.marked_at,
      }));
    },
    searchReceipts(search) {
      if (
        !Number.isSafeInteger(search.limit) ||
        search.limit < 1 ||
        !Number.isSafeInteger(search.offset) ||
        search.offset < 0
      )
        throw invalid(
          "limit",
          `invalid page: limit ${search.limit}, offset ${search.offset}`,
          "limit >= 1 and offset >= 0, whole numbers",
        );
      const conditions: string[] = [];
      const values: (string | number)[] = [];
      const query = (search.query ?? "").trim().toLowerCase();
      if (query !== "") {
        const hashes = (search.modelHashes ?? []).map((hash) => hash.toLowerCase());
        conditions.push(
          `(r.request_id LIKE ? ESCAPE '\\' OR lower(r.provider) LIKE ? ESCAPE '\\'
            OR lower(r.model_hash) LIKE ? ESCAPE '\\'
            ${hashes.length ? `OR lower(r.model_hash) IN (${hashes.map(() => "?").join(", ")})` : ""})`,
        );
        // Hex without its 0x matches too (hashes are shown both ways).
        const pattern = likePrefix(/^[0-9a-f]+$/.test(query) ? `0x${query}` : query);
        values.push(pattern, pattern, pattern, ...hashes);
      }
      const audited =
        "EXISTS (SELECT 1 FROM audit_verdicts v WHERE v.request_id = r.request_id AND v.segment = r.segment)";
      if (search.audited === true) conditions.push(audited);
      if (search.audited === false) conditions.push(`NOT ${audited}`);
      const where = conditions.length ? `WHERE ${conditions.join(" AND ")}` : "";
      const total =
        db.prepare<unknown[], { n: number }>(`SELECT count(*) AS n FROM receipts r ${where}`).get(...values)
          ?.n ?? 0;
      const rows = db
        .prepare<unknown[], ReceiptRow & { sampled_to: string | null }>(
          `SELECT r.*, s.validator_peer AS sampled_to FROM receipts r
           LEFT JOIN audit_samples s ON s.request_id = r.request_id AND s.segment = r.segment
           ${where} ORDER BY r.created_at DESC, r.request_id, r.segment LIMIT ? OFFSET ?`,
        )
        .all(...values, search.limit, search.offset);
      return { total, receipts: withAudits(rows) };
    },
    receiptsWithAudits(requestId) {
      return withAudits(selectWithSamples.all(checkRequestId(requestId)));
    },
    markSampled(sample) {
      if (!Number.isSafeInteger(sample.segment) || sample.segment < 0)
        throw invalid("segment", `invalid segment ${sample.segment}`, "a segment is an integer 0, 1, 2...");
      insertSample.run(checkRequestId(sample.requestId), sample.segment, sample.validatorPeer, Date.now());
    },
    unmarkSampled(sample) {
      deleteSample.run(checkRequestId(sample.requestId), sample.segment, sample.validatorPeer);
    },
    sampledTo(sample) {
      return selectSample.get(checkRequestId(sample.requestId), sample.segment)?.validator_peer;
    },
    saveAuditVerdict(verdict) {
      if (!Number.isSafeInteger(verdict.segment) || verdict.segment < 0)
        throw invalid("segment", `invalid segment ${verdict.segment}`, "a segment is an integer 0, 1, 2...");
      for (const [param, address] of [
        ["provider", verdict.provider],
        ["validator", verdict.validator],
      ] as const)
        if (!isAddress(address, { strict: false }))
          throw invalid(
            param,
            `invalid ${param} address ${JSON.stringify(address)}`,
            "pass a 20-byte 0x address",
          );
      return (
        insertVerdict.run({
          request_id: checkRequestId(verdict.requestId),
          segment: verdict.segment,
          provider: getAddress(verdict.provider),
          validator: getAddress(verdict.validator),
          verdict: verdict.verdict,
          reasons: JSON.stringify(verdict.reasons),
          metrics: JSON.stringify(verdict.metrics),
          audited_at: verdict.auditedAt,
          signature: verdict.signature,
          received_at: Date.now(),
        }).changes === 1
      );
    },
    auditVerdicts(requestId) {
      return selectVerdicts.all(checkRequestId(requestId)).map(toStoredVerdict);
    },
    close() {
      if (db.open) db.close();
    },
  };
}
