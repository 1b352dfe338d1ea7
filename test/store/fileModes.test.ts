/**
 * Databases are their owner's only: created 0600 (with their -wal and -shm) in 0700 folders, and an existing
 * database, WAL and folder found looser (an older Mycel's) tightened when opened; a shared sticky folder is left
 * alone.
 */
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { openEvidenceStore, openReceiptStore } from "../../src/store/index.ts";
import { temporaryHome } from "../helpers.ts";

const modeOf = (path: string) => (statSync(path).mode & 0o7777).toString(8);

describe("store: file modes", { skip: process.platform === "win32" }, () => {
  let directory: { home: string; remove: () => Promise<void> };
  before(async () => {
    directory = await temporaryHome("mycel-modes-");
  });
  after(async () => {
    await directory.remove();
  });

  it("creates a database, its WAL and its folders (all made now) owner-only", () => {
    const path = join(directory.home, "provider", "0xabc", "evidence.sqlite");
    const store = openEvidenceStore({ path });
    try {
      assert.equal(modeOf(path), "600");
      assert.equal(modeOf(`${path}-wal`), "600", "SQLite gives the WAL the database's mode");
      assert.equal(modeOf(`${path}-shm`), "600");
      assert.equal(modeOf(join(directory.home, "provider", "0xabc")), "700");
      assert.equal(modeOf(join(directory.home, "provider")), "700");
    } finally {
      store.close();
    }
  });

  it("tightens a database, WAL and folder an older Mycel left readable to all", () => {
    const folder = join(directory.home, "gateway");
    mkdirSync(folder, { mode: 0o755 });
    chmodSync(folder, 0o755);
    const path = join(folder, "receipts.sqlite");
    const old = new Database(path);
    old.pragma("journal_mode = WAL");
    old.exec("CREATE TABLE t (x INTEGER)");
    for (const file of [path, `${path}-wal`, `${path}-shm`]) chmodSync(file, 0o644);
    const store = openReceiptStore({ path });
    try {
      for (const file of [path, `${path}-wal`, `${path}-shm`]) assert.equal(modeOf(file), "600", file);
      assert.equal(modeOf(folder), "700");
    } finally {
      store.close();
      old.close();
    }
  });

  it("leaves a shared sticky folder (like /tmp) as it is", () => {
    const shared = join(directory.home, "shared");
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    const store = openReceiptStore({ path: join(shared, "receipts.sqlite") });
    try {
      assert.equal(modeOf(shared), "1777");
      assert.equal(modeOf(join(shared, "receipts.sqlite")), "600");
    } finally {
      store.close();
    }
  });
});
