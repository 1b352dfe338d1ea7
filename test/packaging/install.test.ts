/**
 * What `npm install` does on a fresh clone: it keeps the lockfile as committed, and every package it installs
 * runs on every Node version package.json promises (no EBADENGINE warning).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import semver from "semver";
import { repositoryRoot, temporaryHome } from "../helpers.ts";

const run = promisify(execFile);

type PackageJson = { name?: string; engines?: { node?: string } };

async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, "utf8")) as T;
}

describe("installing the project", () => {
  let directory: { home: string; remove: () => Promise<void> };
  before(async () => {
    directory = await temporaryHome("mycel-install-");
  });
  after(() => directory.remove());

  it("leaves package-lock.json as committed (every platform's optional packages are in it)", async () => {
    for (const entry of ["package.json", "package-lock.json", "packaging"])
      await cp(join(repositoryRoot, entry), join(directory.home, entry), { recursive: true });
    const before = await readFile(join(directory.home, "package-lock.json"), "utf8");
    await run(
      "npm",
      ["install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"],
      { cwd: directory.home, env: { ...process.env, npm_config_loglevel: "error" } },
    );
    const afterInstall = await readFile(join(directory.home, "package-lock.json"), "utf8");
    assert.equal(afterInstall, before, "npm install rewrote the lockfile: commit the lockfile it writes");
  });

  it("installs only packages that run on every Node version package.json's engines admit", async () => {
    const own = await readJson<PackageJson>(join(repositoryRoot, "package.json"));
    const promised = own.engines?.node;
    assert.ok(promised, "package.json names the Node versions it runs on");
    assert.ok(semver.satisfies(process.version, promised), `${process.version} is one of them: ${promised}`);
    const lock = await readJson<{ packages: Record<string, unknown> }>(
      join(repositoryRoot, "package-lock.json"),
    );
    const narrower: string[] = [];
    let checked = 0;
    for (const path of Object.keys(lock.packages)) {
      const manifest = join(repositoryRoot, path, "package.json");
      if (path === "" || !existsSync(manifest)) continue;
      const wanted = (await readJson<PackageJson>(manifest)).engines?.node;
      checked++;
      if (wanted && !semver.subset(promised, wanted)) narrower.push(`${path} wants node ${wanted}`);
    }
    assert.ok(checked > 100, `the installed packages were read (${checked})`);
    assert.deepEqual(narrower, [], `these packages do not run on all of ${promised}`);
  });
});
