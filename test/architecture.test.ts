/**
 * The architecture as docs/ARCHITECTURE.md states it: every folder of src/ is a part the table lists; a part imports
 * another only through its index.ts and only where the table allows; protocol/ does no I/O.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { repositoryRoot } from "./helpers.ts";

const source = join(repositoryRoot, "src");

/** The "may import" table of docs/ARCHITECTURE.md. */
function allowedImports(): Map<string, Set<string>> {
  const text = readFileSync(join(repositoryRoot, "docs", "ARCHITECTURE.md"), "utf8");
  const section = text.slice(text.indexOf("## Which part may import which"));
  const table = new Map<string, Set<string>>();
  for (const match of section.matchAll(/^\|\s*`([a-z0-9]+)`\s*\|(.+)\|\s*$/gm)) {
    const allowed = [...(match[2] ?? "").matchAll(/`([a-z0-9]+)`/g)].map((entry) => entry[1] as string);
    table.set(match[1] as string, new Set(allowed));
  }
  return table;
}

function filesUnder(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return filesUnder(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

/** Every module a file imports (static, dynamic and re-exports), as written. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const found = [
    ...text.matchAll(/\b(?:import|export)\s[^;]*?\sfrom\s+"([^"]+)"/gs),
    ...text.matchAll(/\bimport\s+"([^"]+)"/g),
    ...text.matchAll(/\bimport\(\s*"([^"]+)"\s*\)/g),
  ];
  return found.map((match) => match[1] as string);
}

const partOf = (file: string) => relative(source, file).split("/")[0] as string;

describe("architecture (docs/ARCHITECTURE.md against the code)", () => {
  const table = allowedImports();
  const parts = readdirSync(source, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();

  it("lists every part of src/, and no part that is not there", () => {
    assert.ok(table.size >= 15, `the table was read (${table.size} rows)`);
    assert.deepEqual([...table.keys()].sort(), parts);
  });

  it("imports other parts only through their index.ts, and only where the table allows", () => {
    const broken: string[] = [];
    for (const file of filesUnder(source)) {
      const part = partOf(file);
      for (const specifier of importsOf(file)) {
        if (!specifier.startsWith(".")) continue;
        const target = resolve(dirname(file), specifier);
        const targetPart = partOf(target);
        if (targetPart === part) continue;
        const where = `${relative(repositoryRoot, file)} imports ${specifier}`;
        if (relative(join(source, targetPart), target) !== "index.ts")
          broken.push(`${where}: not the part's index.ts`);
        else if (!table.get(part)?.has(targetPart))
          broken.push(`${where}: ${part} may not import ${targetPart}`);
      }
    }
    assert.deepEqual(broken, []);
  });

  it("keeps protocol/ pure: nothing but viem and zod, no node: modules", () => {
    const outside = filesUnder(join(source, "protocol")).flatMap((file) =>
      importsOf(file)
        .filter((specifier) => !specifier.startsWith(".") && !/^(viem|viem\/accounts|zod)$/.test(specifier))
        .map((specifier) => `${relative(repositoryRoot, file)} imports ${specifier}`),
    );
    assert.deepEqual(outside, []);
  });

  it("lets the web app import only the explorer's view types from src/", () => {
    const web = join(repositoryRoot, "web", "src");
    const reaching = filesUnder(web)
      .concat(
        readdirSync(web, { recursive: true, withFileTypes: true })
          .filter((e) => e.name.endsWith(".tsx"))
          .map((e) => join(e.parentPath, e.name)),
      )
      .flatMap((file) =>
        importsOf(file)
          .filter(
            (specifier) => specifier.startsWith(".") && resolve(dirname(file), specifier).startsWith(source),
          )
          .filter(
            (specifier) => !resolve(dirname(file), specifier).endsWith(join("src", "explorer", "types.ts")),
          )
          .map((specifier) => `${relative(repositoryRoot, file)} imports ${specifier}`),
      );
    assert.deepEqual(reaching, []);
  });
});
