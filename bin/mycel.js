#!/usr/bin/env node
// The `mycel` command: TypeScript sources run through tsx, so there is no build step to forget.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli/index.ts");
await main();
