// Builds the explorer web app (web/ -> web/dist) with Vite; `npm install` runs it (prepare) and so does `npm test`.
// Without Vite (an install without dev dependencies) it says how to build later instead of failing the install.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const vite = fileURLToPath(new URL("../node_modules/vite/bin/vite.js", import.meta.url));
if (!existsSync(vite)) {
  console.warn(
    "mycel: the explorer web app is not built (Vite is not installed: it is a dev dependency).\n" +
      "       Run `npm install` with dev dependencies, then `npm run build:web`; the API works without it.",
  );
  process.exit(process.env.npm_lifecycle_event === "prepare" ? 0 : 1);
}
const result = spawnSync(process.execPath, [vite, "build", "web", "--logLevel", "warn"], {
  cwd: root,
  stdio: "inherit",
});
if (result.status === 0) console.log("mycel: explorer built into web/dist");
process.exit(result.status ?? 1);
