/**
 * The provider's evidence store, in SQLite: for each answer it signed, the evidence (tokens and fingerprints), the
 * request and the receipt, kept for a retention period so that validators can fetch it.
 */
import { join } from "node:path";
import type { Hex } from "viem";
import type { Evidence, InferenceRequest, SignedReceipt } from "../protocol/index.ts";
import { openDatabase } from "./database.ts";

/** Where a provider keeps its evidence (one file per provider address). */
export function providerEvidenceStorePath(home: string, address: string): string {
  return join(home, "provider", address.toLowerCase(), "evidence.sqlite");
}

/** One stored answer's evidence. */
export type StoredEvidence = {
  requestId: Hex;
  evidence: Evidence;
  request: InferenceRequest;
  receipt: SignedReceipt;
  createdAt: number;
};

/** The evidence store opened by {@link openEvidenceStore}. */
export type EvidenceStore = {
  readonly path: string;
  /** Stores an answer's evidence (a second answer with the same request id replaces the first). */
  save(parameters: Omit<StoredEvidence, "createdAt"> & { provider: Hex }): void;
  /** The evidence of a request, if still kept. */
  get(requestId: Hex): StoredEvidence | undefined;
  /** Deletes evidence created before `before` (ms since the epoch); returns how many were deleted. */
  prune(before: number): number;
  count(): number;
  close(): void;
};

type EvidenceRow = {
  request_id: string;
  evidence: string;
  request: string;
  receipt: string;
  created_at: number;
};

/** Opens (creating if needed) the evidence store at `path`. */
export function openEvidenceStore(parameters: { path: string }): EvidenceStore {
  const db = openDatabase(parameters.path);
  const insert = db.prepare(
    `INSERT OR REPLACE INTO evidence (request_id, provider, evidence, request, receipt, created_at)
     VALUES (?, ?, ?, ?, ?, ?)`,
  );
  const select = db.prepare("SELECT * FROM evidence WHERE request_id = ?");
  const remove = db.prepare("DELETE FROM evidence WHERE created_at < ?");
  const countAll = db.prepare("SELECT COUNT(*) AS count FROM evidence");
  return {
    path: parameters.path,
    save(input) {
      insert.run(
        input.requestId.toLowerCase(),
        input.provider.toLowerCase(),
        JSON.stringify(input.evidence),
        JSON.stringify(input.request),
        JSON.stringify(input.receipt),
        Date.now(),
      );
    },
    get(requestId) {
      const row = select.get(requestId.toLowerCase()) as EvidenceRow | undefined;
      if (!row) return undefined;
      return {
        requestId: row.request_id as Hex,
        evidence: JSON.parse(row.evidence) as Evidence,
        request: JSON.parse(row.request) as InferenceRequest,
        receipt: JSON.parse(row.receipt) as SignedReceipt,
        createdAt: row.created_at,
      };
    },
    prune: (before) => remove.run(before).changes,
    count: () => (countAll.get() as { count: number }).count,
    close: () => db.close(),
  };
}
