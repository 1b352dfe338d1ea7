/**
 * A gateway's API keys, in SQLite (WAL, synchronous=FULL): each key's SHA-256 (never the key), its name, budget and
 * rate, when it was revoked, and what its requests used and cost. The CLI writes keys while the gateway runs; the
 * gateway sees a change at its next request (`changed()` tells it when another connection wrote).
 */
import { join } from "node:path";
import { InvalidInputError } from "../errors/index.ts";
import { openDatabase } from "./database.ts";

/** Where a gateway keeps its API keys (default store folder MYCEL_HOME/gateway). */
export function apiKeyStorePath(parameters: { home: string; storeDirectory?: string }): string {
  return join(parameters.storeDirectory ?? join(parameters.home, "gateway"), "api-keys.sqlite");
}

/** One API key as stored: its hash, never the key itself. */
export type StoredApiKey = {
  /** A public id (`key_` and 12 hex digits), safe to show and log. */
  id: string;
  name: string;
  /** SHA-256 of the key, 64 hex digits. */
  keyHash: string;
  /** The key's first characters, to tell keys apart in lists (`mycel_sk_AbCd`). */
  prefix: string;
  createdAt: number;
  /** The most its requests may cost, in the token's smallest unit; undefined: no budget. */
  budget: bigint | undefined;
  /** Completion requests per minute; undefined: no limit. */
  ratePerMinute: number | undefined;
  revokedAt: number | undefined;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  /** What its requests cost (the receipts' prices), in the token's smallest unit. */
  spent: bigint;
};

/** The API key store of one gateway. */
export type ApiKeyStore = {
  /** Adds a key; 400 when an active key has the same name. */
  create(
    key: Pick<StoredApiKey, "id" | "name" | "keyHash" | "prefix" | "budget" | "ratePerMinute">,
  ): StoredApiKey;
  /** Every key, revoked ones too, oldest first. */
  list(): StoredApiKey[];
  /** Revokes the active key with this name, or the key with this id; undefined when there is none. */
  revoke(nameOrId: string): StoredApiKey | undefined;
  /** Adds one request's tokens and cost to a key's usage. */
  recordUsage(parameters: { id: string; promptTokens: number; completionTokens: number; cost: bigint }): void;
  /** Whether another connection (the CLI) wrote since the last call. */
  changed(): boolean;
  close(): void;
};

type Row = {
  id: string;
  name: string;
  key_hash: string;
  prefix: string;
  created_at: number;
  budget: string | null;
  rate_per_minute: number | null;
  revoked_at: number | null;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  spent: string;
};

function fromRow(row: Row): StoredApiKey {
  return {
    id: row.id,
    name: row.name,
    keyHash: row.key_hash,
    prefix: row.prefix,
    createdAt: row.created_at,
    budget: row.budget === null ? undefined : BigInt(row.budget),
    ratePerMinute: row.rate_per_minute ?? undefined,
    revokedAt: row.revoked_at ?? undefined,
    requests: row.requests,
    promptTokens: row.prompt_tokens,
    completionTokens: row.completion_tokens,
    spent: BigInt(row.spent),
  };
}

/** Opens (creating it 0600 in a 0700 folder) the API key store at `path`. */
export function openApiKeyStore(parameters: { path: string }): ApiKeyStore {
  const db = openDatabase(parameters.path);
  const insert = db.prepare(
    `INSERT INTO api_keys (id, name, key_hash, prefix, created_at, budget, rate_per_minute)
     VALUES (?, ?, ?, ?, ?, ?, ?)`,
  );
  const selectAll = db.prepare<[], Row>("SELECT * FROM api_keys ORDER BY created_at, rowid");
  const selectById = db.prepare<[string], Row>("SELECT * FROM api_keys WHERE id = ?");
  const selectActiveByName = db.prepare<[string], Row>(
    "SELECT * FROM api_keys WHERE name = ? AND revoked_at IS NULL",
  );
  const markRevoked = db.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL");
  const updateUsage = db.prepare(
    `UPDATE api_keys SET requests = requests + 1, prompt_tokens = prompt_tokens + ?,
       completion_tokens = completion_tokens + ?, spent = ? WHERE id = ?`,
  );
  // IMMEDIATE: the read of `spent` and its update are one step even when the CLI writes at the same time.
  const addUsage = db.transaction((usage: Parameters<ApiKeyStore["recordUsage"]>[0]) => {
    const row = selectById.get(usage.id);
    if (!row) return;
    updateUsage.run(
      usage.promptTokens,
      usage.completionTokens,
      (BigInt(row.spent) + usage.cost).toString(),
      usage.id,
    );
  });
  let dataVersion = db.pragma("data_version", { simple: true }) as number;
  return {
    create(key) {
      if (selectActiveByName.get(key.name))
        throw new InvalidInputError(`an API key named "${key.name}" exists`, {
          code: "duplicate_key_name",
          param: "name",
          hint: `pick another --name, or revoke the old key first (mycel gateway keys revoke ${key.name})`,
        });
      insert.run(
        key.id,
        key.name,
        key.keyHash,
        key.prefix,
        Date.now(),
        key.budget === undefined ? null : key.budget.toString(),
        key.ratePerMinute ?? null,
      );
      return fromRow(selectById.get(key.id) as Row);
    },
    list: () => selectAll.all().map(fromRow),
    revoke(nameOrId) {
      const row = selectActiveByName.get(nameOrId) ?? selectById.get(nameOrId);
      if (!row) return undefined;
      markRevoked.run(Date.now(), row.id);
      return fromRow(selectById.get(row.id) as Row);
    },
    recordUsage: (usage) => addUsage.immediate(usage),
    changed() {
      const now = db.pragma("data_version", { simple: true }) as number;
      if (now === dataVersion) return false;
      dataVersion = now;
      return true;
    },
    close: () => db.close(),
  };
}
