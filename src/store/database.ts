/** Opening Mycel's SQLite database: durable pragmas and schema migrations tracked in `user_version`. */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { DatabaseError } from "./errors.ts";

/**
 * The schema, one migration per entry; entry i moves `user_version` from i to i + 1. Append new entries,
 * never edit a released one.
 */
const migrations: readonly string[] = [
  `CREATE TABLE receipts (
     request_id TEXT NOT NULL,
     segment INTEGER NOT NULL CHECK (segment >= 0),
     provider TEXT NOT NULL,
     model_hash TEXT NOT NULL,
     receipt TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     PRIMARY KEY (request_id, segment)
   ) STRICT;
   CREATE INDEX receipts_by_provider ON receipts (provider, created_at);`,
  `CREATE TABLE untrusted_providers (
     address TEXT PRIMARY KEY,
     peer_id TEXT NOT NULL,
     reason TEXT NOT NULL,
     marked_at INTEGER NOT NULL
   ) STRICT;`,
  `CREATE TABLE received_vouchers (
     channel_id TEXT PRIMARY KEY,
     provider TEXT NOT NULL,
     client TEXT NOT NULL,
     cumulative_amount TEXT NOT NULL,
     signature TEXT NOT NULL,
     received_at INTEGER NOT NULL,
     settled_amount TEXT NOT NULL,
     unsettled_since INTEGER,
     settled_at INTEGER,
     forfeited_amount TEXT NOT NULL DEFAULT '0'
   ) STRICT;
   CREATE INDEX received_vouchers_by_provider ON received_vouchers (provider, unsettled_since);
   CREATE TABLE client_channels (
     channel_id TEXT PRIMARY KEY,
     client TEXT NOT NULL,
     provider TEXT NOT NULL,
     deposit TEXT NOT NULL,
     signed_amount TEXT NOT NULL,
     acknowledged_amount TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('open', 'closing', 'closed')),
     opened_at INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX client_channels_by_client ON client_channels (client, provider, state);`,
  `CREATE TABLE evidence (
     request_id TEXT PRIMARY KEY,
     provider TEXT NOT NULL,
     evidence TEXT NOT NULL,
     request TEXT NOT NULL,
     receipt TEXT NOT NULL,
     created_at INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX evidence_by_time ON evidence (created_at);
   CREATE TABLE audits (
     id INTEGER PRIMARY KEY,
     request_id TEXT NOT NULL,
     provider TEXT NOT NULL,
     model_hash TEXT NOT NULL,
     verdict TEXT NOT NULL CHECK (verdict IN ('pass', 'fail')),
     reasons TEXT NOT NULL,
     metrics TEXT NOT NULL,
     source TEXT NOT NULL CHECK (source IN ('sample', 'challenge', 'manual')),
     input TEXT NOT NULL,
     audited_at INTEGER NOT NULL,
     UNIQUE (request_id, provider)
   ) STRICT;
   CREATE INDEX audits_by_provider ON audits (provider, audited_at);
   CREATE TABLE score_commitments (
     epoch INTEGER PRIMARY KEY,
     providers TEXT NOT NULL,
     scores TEXT NOT NULL,
     salt TEXT NOT NULL,
     committed_at INTEGER NOT NULL,
     revealed_at INTEGER
   ) STRICT;`,
  `CREATE INDEX receipts_by_time ON receipts (created_at);
   CREATE TABLE audit_samples (
     request_id TEXT NOT NULL,
     segment INTEGER NOT NULL,
     validator_peer TEXT NOT NULL,
     sent_at INTEGER NOT NULL,
     PRIMARY KEY (request_id, segment)
   ) STRICT;
   CREATE TABLE audit_verdicts (
     request_id TEXT NOT NULL,
     segment INTEGER NOT NULL,
     provider TEXT NOT NULL,
     validator TEXT NOT NULL,
     verdict TEXT NOT NULL CHECK (verdict IN ('pass', 'fail')),
     reasons TEXT NOT NULL,
     metrics TEXT NOT NULL,
     audited_at INTEGER NOT NULL,
     signature TEXT NOT NULL,
     received_at INTEGER NOT NULL,
     PRIMARY KEY (request_id, segment, validator)
   ) STRICT;`,
  // Channels are bound to their chain (chain id, PaymentChannels, genesis hash): channel ids repeat on a fresh
  // chain. Rows from before have no binding ('') and are never used again on any chain.
  `CREATE TABLE received_vouchers_bound (
     chain TEXT NOT NULL,
     channel_id TEXT NOT NULL,
     provider TEXT NOT NULL,
     client TEXT NOT NULL,
     cumulative_amount TEXT NOT NULL,
     signature TEXT NOT NULL,
     received_at INTEGER NOT NULL,
     settled_amount TEXT NOT NULL,
     unsettled_since INTEGER,
     settled_at INTEGER,
     forfeited_amount TEXT NOT NULL DEFAULT '0',
     PRIMARY KEY (chain, channel_id)
   ) STRICT;
   INSERT INTO received_vouchers_bound SELECT '', * FROM received_vouchers;
   DROP TABLE received_vouchers;
   ALTER TABLE received_vouchers_bound RENAME TO received_vouchers;
   CREATE INDEX received_vouchers_by_provider ON received_vouchers (chain, provider, unsettled_since);
   CREATE TABLE client_channels_bound (
     chain TEXT NOT NULL,
     channel_id TEXT NOT NULL,
     client TEXT NOT NULL,
     provider TEXT NOT NULL,
     deposit TEXT NOT NULL,
     signed_amount TEXT NOT NULL,
     acknowledged_amount TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('open', 'closing', 'closed', 'unknown')),
     opened_at INTEGER NOT NULL,
     PRIMARY KEY (chain, channel_id)
   ) STRICT;
   INSERT INTO client_channels_bound SELECT '', * FROM client_channels;
   DROP TABLE client_channels;
   ALTER TABLE client_channels_bound RENAME TO client_channels;
   CREATE INDEX client_channels_by_client ON client_channels (chain, client, provider, state);`,
  // A gateway's API keys: only a key's SHA-256 is kept, with its budget, rate and what it used and spent.
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     key_hash TEXT NOT NULL UNIQUE,
     prefix TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     budget TEXT,
     rate_per_minute INTEGER,
     revoked_at INTEGER,
     requests INTEGER NOT NULL DEFAULT 0,
     prompt_tokens INTEGER NOT NULL DEFAULT 0,
     completion_tokens INTEGER NOT NULL DEFAULT 0,
     spent TEXT NOT NULL DEFAULT '0'
   ) STRICT;
   CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;`,
];

/** The schema version this Mycel writes. */
export const schemaVersion = migrations.length;

/** Mode of a database file and of its -wal and -shm files: read and written by its owner only. */
export const privateFileMode = 0o600;
/** Mode of a folder that holds databases: its owner's only. */
export const privateFolderMode = 0o700;

/**
 * Makes the database at `path` its owner's only: its folder (and every folder created for it) 0700, the file
 * created 0600 before SQLite opens it (SQLite gives the -wal and -shm files the database's mode), and an existing
 * database, -wal and -shm tightened to 0600. Receipts, payments and evidence (which holds conversations) live here.
 */
export function preparePrivateDatabaseFile(path: string) {
  if (process.platform === "win32") {
    mkdirSync(dirname(path), { recursive: true });
    return;
  }
  const folder = dirname(path);
  const created = mkdirSync(folder, { recursive: true, mode: privateFolderMode });
  // Folders made now got 0700 less the umask; each of them is set exactly.
  for (let made = folder; created !== undefined && made.length >= created.length; made = dirname(made))
    chmodSync(made, privateFolderMode);
  // A folder that was there is tightened when it is this user's own and not a shared one (sticky, like /tmp).
  const existing = statSync(folder);
  if (existing.uid === process.getuid?.() && (existing.mode & 0o1000) === 0)
    chmodSync(folder, privateFolderMode);
  closeSync(openSync(path, "a", privateFileMode));
  for (const file of [path, `${path}-wal`, `${path}-shm`])
    if (existsSync(file) && statSync(file).uid === process.getuid?.()) chmodSync(file, privateFileMode);
}

/** Opens (creating it and its folder if needed) the database at `path`, in WAL mode with synchronous=FULL, migrated to {@link schemaVersion}. */
export function openDatabase(path: string): Database.Database {
  let db: Database.Database;
  try {
    if (path !== ":memory:") preparePrivateDatabaseFile(path);
    db = new Database(path);
  } catch (cause) {
    throw new DatabaseError(`cannot open the database at ${path}`, {
      code: "database_open_failed",
      details: cause instanceof Error ? cause.message : String(cause),
      hint: "check that the folder is writable and the file is a Mycel database",
      cause,
    });
  }
  try {
    // First: every statement after it, the switch to WAL included, waits for a process that holds the file (two
    // roles of one home opening it at once) instead of failing with "database is locked".
    db.pragma("busy_timeout = 5000");
    db.pragma("journal_mode = WAL");
    // FULL: a committed receipt survives a power loss, not only a process crash.
    db.pragma("synchronous = FULL");
    db.pragma("foreign_keys = ON");
    migrate(db, path);
  } catch (error) {
    db.close();
    if (error instanceof DatabaseError) throw error;
    throw new DatabaseError(`cannot use the database at ${path}`, {
      code: "database_invalid",
      details: error instanceof Error ? error.message : String(error),
      hint: "the file may be corrupt or not a Mycel database: move it away and start again, or restore a backup",
      cause: error,
    });
  }
  return db;
}

function migrate(db: Database.Database, path: string) {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current > migrations.length) {
    throw new DatabaseError(
      `the database at ${path} has schema version ${current}, newer than this Mycel's`,
      {
        code: "database_too_new",
        hint: `upgrade Mycel (this one reads schema version ${migrations.length} and older)`,
      },
    );
  }
  for (let version = current; version < migrations.length; version += 1) {
    const sql = migrations[version] as string;
    // IMMEDIATE: two processes opening a fresh file do not both run the same migration.
    db.transaction(() => {
      if ((db.pragma("user_version", { simple: true }) as number) !== version) return;
      db.exec(sql);
      db.pragma(`user_version = ${version + 1}`);
    }).immediate();
  }
}
