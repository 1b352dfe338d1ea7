/** `mycel gateway keys create|list|revoke`: the API keys of a gateway that others use over the network. */
import type { Command } from "commander";
import { configFrom, integer } from "./options.ts";
import { printTable } from "./output.ts";

/** When a key was made or revoked, to the minute, in UTC. */
function when(ms: number | undefined): string {
  return ms === undefined ? "-" : `${new Date(ms).toISOString().slice(0, 16).replace("T", " ")}Z`;
}

/** Adds `keys create|list|revoke` under `mycel gateway`. */
export function addGatewayKeyCommands(gateway: Command) {
  const keys = gateway
    .command("keys")
    .description(
      "API keys for this gateway's users (needed when it listens beyond loopback; stored hashed in MYCEL_HOME/gateway)",
    );
  keys
    .command("create")
    .description("make a key and print it once: give it to its user, it cannot be shown again")
    .requiredOption("--name <name>", "who or what the key is for (letters, digits, . _ - @)")
    .option("--budget <tokens>", "the most its requests may cost, in tokens (e.g. 5 or 5 MYC); 402 beyond it")
    .option(
      "--rate <requests>",
      "completion requests per minute; 429 with Retry-After beyond it",
      integer("--rate", 1),
    )
    .action(async (flags: { name: string; budget?: string; rate?: number }, command: Command) => {
      const config = configFrom(command);
      const apikeys = await import("../apikeys/index.ts");
      // Commander gives `--budget` to `mycel gateway` (whose own --budget it also is) unless the program parses
      // options positionally: given on the command line, it is this key's budget.
      const budget =
        flags.budget ??
        (gateway.getOptionValueSource("budget") === "cli" ? String(gateway.opts().budget) : undefined);
      const { key, stored } = apikeys.createApiKey({
        home: config.home,
        name: flags.name,
        budget: budget === undefined ? undefined : apikeys.parseBudget(budget),
        ratePerMinute: flags.rate,
      });
      console.log(key);
      console.error(
        `API key "${stored.name}" (${stored.id}) created${stored.budget === undefined ? "" : `, budget ${apikeys.formatBudget(stored.budget)} tokens`}${stored.ratePerMinute === undefined ? "" : `, ${stored.ratePerMinute} requests per minute`}.\n` +
          "This is the only time it is shown: only its hash is kept. The user sends it as `Authorization: Bearer <key>`.",
      );
    });
  keys
    .command("list")
    .description("every key with what it used and spent (revoked ones too)")
    .option("--json", "print JSON")
    .action(async (flags: { json?: boolean }, command: Command) => {
      const config = configFrom(command);
      const apikeys = await import("../apikeys/index.ts");
      const all = apikeys.listApiKeys({ home: config.home });
      if (flags.json) {
        console.log(JSON.stringify(all.map(apikeys.keyUsageOf), null, 2));
        return;
      }
      if (all.length === 0) {
        console.log("no API keys: make one with `mycel gateway keys create --name <name>`");
        return;
      }
      const budget = (amount: bigint | undefined) =>
        amount === undefined ? "-" : apikeys.formatBudget(amount);
      printTable([
        ["NAME", "ID", "PREFIX", "CREATED", "REQUESTS", "SPENT", "BUDGET", "RATE/MIN", "REVOKED"],
        ...all.map((key) => [
          key.name,
          key.id,
          `${key.prefix}...`,
          when(key.createdAt),
          String(key.requests),
          apikeys.formatBudget(key.spent),
          budget(key.budget),
          key.ratePerMinute === undefined ? "-" : String(key.ratePerMinute),
          when(key.revokedAt),
        ]),
      ]);
    });
  keys
    .command("revoke")
    .description("stop a key at once (a running gateway refuses it from its next request)")
    .argument("<name-or-id>", "the key's name or id (see `mycel gateway keys list`)")
    .action(async (nameOrId: string, _flags: unknown, command: Command) => {
      const config = configFrom(command);
      const apikeys = await import("../apikeys/index.ts");
      const revoked = apikeys.revokeApiKey({ home: config.home, nameOrId });
      console.log(`API key "${revoked.name}" (${revoked.id}) revoked`);
    });
}
