#!/usr/bin/env node
// Compiles src/ to dist/ (what bin/mycel.js runs) with TypeScript, incrementally; `npm install` (prepare), `npm test`
// and `npm run build` run it. Without TypeScript (an install without dev dependencies) it says how to build later.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const tsc = fileURLToPath(new URL("../node_modules/typescript/bin/tsc", import.meta.url));
if (!existsSync(tsc)) {
  console.warn(
    "mycel: not compiled (TypeScript is not installed: it is a dev dependency).\n" +
      "       Run `npm install` with dev dependencies, then `npm run build`.",
  );
  process.exit(process.env.npm_lifecycle_event === "prepare" ? 0 : 1);
}
const result = spawnSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], {
  cwd: root,
  stdio: "inherit",
});
if (result.status === 0) console.log("mycel: compiled into dist");
process.exit(result.status ?? 1);
