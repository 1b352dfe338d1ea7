#!/usr/bin/env node
// The `mycel` command: runs the compiled JavaScript in dist/ (built by `npm install` and `npm run build`).
import { existsSync } from "node:fs";

const entry = new URL("../dist/cli/index.js", import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write(
    "error: mycel is not built (dist/cli/index.js is missing)\nHint: run `npm run build` in the package folder (`npm install` builds it too)\n",
  );
  process.exit(1);
}
const { main } = await import(entry.href);
await main();
