/**
 * The validator's store, in SQLite: every verdict with the input it was reached on (evidence for slashing), and the
 * score commitments of each epoch (written before they are sent, so that a restarted validator can still reveal).
 */
import { join } from "node:path";
import type { Hex } from "viem";
import { openDatabase } from "./database.ts";

/** Where a validator keeps its audits (one file per validator address). */
export function validatorStorePath(home: string, address: string): string {
  return join(home, "validator", address.toLowerCase(), "audits.sqlite");
}

/** One stored verdict. */
export type StoredAudit = {
  requestId: Hex;
  provider: Hex;
  modelHash: Hex;
  verdict: "pass" | "fail";
  reasons: { code: string; message: string }[];
  metrics: Record<string, unknown>;
  source: "sample" | "challenge" | "manual";
  /** The audit input (request, tokens, fingerprints, receipt). */
  input: unknown;
  auditedAt: number;
};

/** A committed score vector. */
export type StoredCommitment = {
  epoch: bigint;
  providers: Hex[];
  scores: number[];
  salt: Hex;
  committedAt: number;
  revealedAt: number | undefined;
};

/** The store opened by {@link openAuditStore}. */
export type AuditStore = {
  readonly path: string;
  /** Stores a verdict; false when this request of this provider was audited already (nothing changes). */
  saveAudit(audit: Omit<StoredAudit, "auditedAt"> & { auditedAt?: number }): boolean;
  /** Verdicts reached in [from, to) (ms since the epoch), oldest first. */
  auditsBetween(from: number, to: number): StoredAudit[];
  /** The latest verdicts, newest first. */
  recentAudits(limit: number): StoredAudit[];
  saveCommitment(commitment: Omit<StoredCommitment, "committedAt" | "revealedAt">): void;
  commitmentOf(epoch: bigint): StoredCommitment | undefined;
  markRevealed(epoch: bigint): void;
  close(): void;
};

type AuditRow = {
  request_id: string;
  provider: string;
  model_hash: string;
  verdict: "pass" | "fail";
  reasons: string;
  metrics: string;
  source: StoredAudit["source"];
  input: string;
  audited_at: number;
};

type CommitmentRow = {
  epoch: number;
  providers: string;
  scores: string;
  salt: string;
  committed_at: number;
  revealed_at: number | null;
};

function auditFromRow(row: AuditRow): StoredAudit {
  return {
    requestId: row.request_id as Hex,
    provider: row.provider as Hex,
    modelHash: row.model_hash as Hex,
    verdict: row.verdict,
    reasons: JSON.parse(row.reasons),
    metrics: JSON.parse(row.metrics),
    source: row.source,
    input: JSON.parse(row.input),
    auditedAt: row.audited_at,
  };
}

/** Opens (creating if needed) the validator store at `path`. */
export function openAuditStore(parameters: { path: string }): AuditStore {
  const db = openDatabase(parameters.path);
  const insertAudit = db.prepare(
    `INSERT OR IGNORE INTO audits (request_id, provider, model_hash, verdict, reasons, metrics, source, input, audited_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const between = db.prepare(
    "SELECT * FROM audits WHERE audited_at >= ? AND audited_at < ? ORDER BY audited_at, id",
  );
  const recent = db.prepare("SELECT * FROM audits ORDER BY audited_at DESC, id DESC LIMIT ?");
  const insertCommitment = db.prepare(
    `INSERT OR REPLACE INTO score_commitments (epoch, providers, scores, salt, committed_at, revealed_at)
     VALUES (?, ?, ?, ?, ?, NULL)`,
  );
  const selectCommitment = db.prepare("SELECT * FROM score_commitments WHERE epoch = ?");
  const revealed = db.prepare("UPDATE score_commitments SET revealed_at = ? WHERE epoch = ?");
  return {
    path: parameters.path,
    saveAudit(audit) {
      return (
        insertAudit.run(
          audit.requestId.toLowerCase(),
          audit.provider.toLowerCase(),
          audit.modelHash.toLowerCase(),
          audit.verdict,
          JSON.stringify(audit.reasons),
          JSON.stringify(audit.metrics),
          audit.source,
          JSON.stringify(audit.input),
          audit.auditedAt ?? Date.now(),
        ).changes === 1
      );
    },
    auditsBetween: (from, to) => (between.all(from, to) as AuditRow[]).map(auditFromRow),
    recentAudits: (limit) => (recent.all(limit) as AuditRow[]).map(auditFromRow),
    saveCommitment(commitment) {
      insertCommitment.run(
        Number(commitment.epoch),
        JSON.stringify(commitment.providers),
        JSON.stringify(commitment.scores),
        commitment.salt,
        Date.now(),
      );
    },
    commitmentOf(epoch) {
      const row = selectCommitment.get(Number(epoch)) as CommitmentRow | undefined;
      if (!row) return undefined;
      return {
        epoch: BigInt(row.epoch),
        providers: JSON.parse(row.providers),
        scores: JSON.parse(row.scores),
        salt: row.salt as Hex,
        committedAt: row.committed_at,
        revealedAt: row.revealed_at ?? undefined,
      };
    },
    markRevealed(epoch) {
      revealed.run(Date.now(), Number(epoch));
    },
    close: () => db.close(),
  };
}
