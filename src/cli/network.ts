import { type Command, InvalidArgumentError } from "commander";
import type { Hex } from "viem";
import type { ConfigOverrides, MycelConfig } from "../config/index.ts";
import { MycelError } from "../errors/index.ts";
import { createKeystore, loadKeystore, promptPassword, resolvePassword } from "../identity/index.ts";
import type { Logger } from "../log/index.ts";
import { addChainOptions, type ChainFlags } from "./chain.ts";

/** Default price per 1M tokens, in the payment token's smallest unit (1e12 = 0.000001 of an 18-decimal token). */
export const defaultPricePerMillion = 1_000_000_000_000n;

/** The password devnet keystores are encrypted with: they hold dev-only keys. */
export const devnetPassword = "mycel-devnet";

function price(value: string) {
  if (!/^(0|[1-9][0-9]{0,30})$/.test(value))
    throw new InvalidArgumentError("a price is a whole number of the token's smallest unit per 1M tokens");
  return BigInt(value);
}

function collect(value: string, previous: string[] = []) {
  return [...previous, value];
}

/** Loads a keystore's private key, asking for the password unless MYCEL_PASSWORD is set. */
export async function loadKey(parameters: { home: string; name: string }): Promise<Hex> {
  const password = await resolvePassword({
    prompt: () => promptPassword(`password for key "${parameters.name}": `),
  });
  const { privateKey } = await loadKeystore({ home: parameters.home, name: parameters.name, password });
  return privateKey;
}

/** Exits when the parent process goes away (its end of our stdin closes): no orphans after a devnet dies. */
export function exitWithParent(logger: Logger) {
  if (process.env.MYCEL_EXIT_WITH_PARENT !== "1") return;
  process.stdin.on("data", () => undefined);
  process.stdin.on("close", () => {
    logger.info("parent process gone: exiting");
    process.exit(0);
  });
}

/** Flags of `mycel provider`. */
export type ProviderFlags = ChainFlags & {
  model?: string[];
  price?: bigint;
  priceInput?: bigint;
  priceOutput?: bigint;
  listen?: string[];
  bootstrap?: string[];
  key: string;
  parallelism?: number;
  threads?: number;
  contextSize?: number;
  maxQueue?: number;
  idleTimeout?: number;
  creditTokens: number;
  settleThreshold?: bigint;
  settleInterval: number;
  settleCheck: number;
};

/** Flags of `mycel gateway`. */
export type GatewayFlags = ChainFlags & {
  host?: string;
  port?: number;
  listen?: string[];
  bootstrap?: string[];
  key: string;
  stallTimeout?: number;
  deposit: string;
  budget: string;
  validator?: string[];
  auditRate: number;
  minReputation: number;
};

/** Flags of `mycel validator`. */
export type ValidatorFlags = ChainFlags & {
  listen?: string[];
  bootstrap?: string[];
  key: string;
  challengeKey?: string;
  stake?: string;
  threads?: number;
  challengeInterval: number;
  epochCheck: number;
  slashPercent: number;
  deposit: string;
  budget: string;
};

function fraction(name: string) {
  return (value: string) => {
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed < 0 || parsed > 1)
      throw new InvalidArgumentError(`${name} must be a number from 0 to 1`);
    return parsed;
  };
}

/** Default deposit per provider channel and total budget of a gateway, in whole tokens. */
export const defaultGatewayDeposit = "10";
export const defaultGatewayBudget = "100";

/** The options every libp2p role takes: where to listen, whom to join through, which key to use. */
function addPeerOptions(command: Command): Command {
  return command
    .option(
      "--listen <multiaddr>",
      "libp2p address to listen on (repeatable; default /ip4/127.0.0.1/tcp/0)",
      collect,
    )
    .option(
      "--bootstrap <multiaddr>",
      "peer to join the network through, with /p2p/<id> (repeatable)",
      collect,
    )
    .option("--key <name>", "keystore name (see `mycel init`)", "default");
}

/** Adds init, provider, gateway and devnet to the program; returns the provider command (chain subcommands hang off it). */
export function addNetworkCommands(parameters: {
  program: Command;
  configFrom: (command: Command, overrides?: ConfigOverrides) => MycelConfig;
  integer: (name: string, minimum?: number, maximum?: number) => (value: string) => number;
}): { provider: Command } {
  const { program, configFrom, integer } = parameters;

  program
    .command("init")
    .description("create this node's key (secp256k1, an Ethereum address) in an encrypted keystore")
    .option("--key <name>", "keystore name", "default")
    .action(async (flags: { key: string }, command: Command) => {
      const config = configFrom(command);
      const password = await resolvePassword({
        prompt: async () => {
          const first = await promptPassword("new keystore password: ");
          const again = await promptPassword("repeat it: ");
          if (first !== again)
            throw new MycelError("the passwords differ", { hint: "run `mycel init` again" });
          return first;
        },
      });
      const created = await createKeystore({ home: config.home, name: flags.key, password });
      console.log(`created key "${flags.key}": address ${created.address}`);
      console.log(`keystore: ${created.path} (scrypt + AES-256-GCM; keep the password safe)`);
    });

  const provider = addPeerOptions(
    program
      .command("provider")
      .description(
        "sell inference: serve models to the network over libp2p, with signed receipts (subcommands: stake, unbond, withdraw, status)",
      )
      .option("--model <model...>", "name or hash of a model in the store (repeat for several)")
      .option("--price <n>", "price per 1M tokens, input and output, in the token's smallest unit", price)
      .option("--price-input <n>", "price per 1M prompt tokens (overrides --price)", price)
      .option("--price-output <n>", "price per 1M completion tokens (overrides --price)", price),
  )
    .option("--parallelism <n>", "requests generated at once per model", integer("--parallelism", 1, 64))
    .option("--threads <n>", "llama.cpp threads per sequence", integer("--threads", 1, 256))
    .option("--context-size <n>", "context window per sequence, in tokens", integer("--context-size", 64))
    .option("--max-queue <n>", "requests that may wait for a sequence", integer("--max-queue", 0))
    .option(
      "--idle-timeout <ms>",
      "drop a stream silent for this long (default 15000)",
      integer("--idle-timeout", 100),
    )
    .option(
      "--credit-tokens <n>",
      "output tokens served on credit before a client must pay (with --rpc-url)",
      integer("--credit-tokens", 32, 1_000_000),
      512,
    )
    .option(
      "--settle-threshold <n>",
      "settle a channel once this much is unsettled, in the token's smallest unit (default 10^18: 1 token)",
      price,
    )
    .option(
      "--settle-interval <seconds>",
      "settle whatever has been unsettled this long",
      integer("--settle-interval", 1),
      600,
    )
    .option(
      "--settle-check <seconds>",
      "how often unsettled channels are checked (a client closing one is settled before its challenge ends)",
      integer("--settle-check", 1, 3600),
      10,
    );
  addChainOptions(provider).action(async (flags: ProviderFlags, command: Command) => {
    const config = configFrom(command, {
      engine: {
        parallelism: flags.parallelism,
        threadsPerSequence: flags.threads,
        contextSize: flags.contextSize,
        maxQueue: flags.maxQueue,
      },
    });
    if (!flags.model?.length)
      throw new MycelError("name the models to serve", {
        hint: "run `mycel provider --model <name|hash>` (see `mycel model list`)",
      });
    const { runProviderRole } = await import("./roles.ts");
    await runProviderRole({ flags, config, version: program.version() ?? "0" });
  });

  addChainOptions(
    addPeerOptions(
      program
        .command("gateway")
        .description("use the network: an OpenAI-compatible API on this machine, routed to providers")
        .option("--host <address>", "address to listen on (default 127.0.0.1: this machine only)")
        .option(
          "--port <n>",
          "port to listen on (default 8080; 0 picks a free one)",
          integer("--port", 0, 65535),
        ),
    ),
  )
    .option(
      "--stall-timeout <ms>",
      "silence between tokens before failing over",
      integer("--stall-timeout", 100),
    )
    .option(
      "--deposit <tokens>",
      "deposited in each provider's payment channel, and added when it runs low (with --rpc-url)",
      defaultGatewayDeposit,
    )
    .option(
      "--budget <tokens>",
      "the most kept deposited across all payment channels (with --rpc-url)",
      defaultGatewayBudget,
    )
    .option(
      "--validator <multiaddr>",
      "validator to send audit samples to, with /p2p/<id> (repeatable)",
      collect,
    )
    .option(
      "--audit-rate <p>",
      "share of answers sent to a validator for audit, decided after each answer (docs/VERIFICATION.md)",
      fraction("--audit-rate"),
      0.05,
    )
    .option(
      "--min-reputation <r>",
      "do not route to providers whose on-chain reputation (0..1) is below this (with --rpc-url)",
      fraction("--min-reputation"),
      0.5,
    )
    .action(async (flags: GatewayFlags, command: Command) => {
      const config = configFrom(command, { serve: { host: flags.host, port: flags.port } });
      const { runGatewayRole } = await import("./roles.ts");
      await runGatewayRole({ flags, config });
    });

  addChainOptions(
    addPeerOptions(
      program
        .command("validator")
        .description(
          "keep the network honest: audit answers gateways sample and your own challenge requests, post scores each epoch, slash cheaters",
        ),
    ),
  )
    .option(
      "--stake <tokens>",
      "register as a validator with this stake first, if not registered (with --rpc-url)",
    )
    .option(
      "--challenge-key <name>",
      "keystore that sends and pays for challenge requests (default: the validator's key, which providers could recognise)",
    )
    .option(
      "--threads <n>",
      "llama.cpp threads for audits (default: every core)",
      integer("--threads", 1, 256),
    )
    .option(
      "--challenge-interval <seconds>",
      "send a challenge request this often (0: never)",
      integer("--challenge-interval", 0),
      60,
    )
    .option(
      "--epoch-check <seconds>",
      "how often the chain is checked to commit, reveal, finalize and vote",
      integer("--epoch-check", 1, 3600),
      10,
    )
    .option(
      "--slash-percent <n>",
      "share of a cheating provider's stake a slashing proposal asks for",
      integer("--slash-percent", 1, 100),
      10,
    )
    .option(
      "--deposit <tokens>",
      "deposit per provider channel for challenge requests",
      defaultGatewayDeposit,
    )
    .option("--budget <tokens>", "the most deposited for challenge requests", defaultGatewayBudget)
    .action(async (flags: ValidatorFlags, command: Command) => {
      const config = configFrom(command);
      const { runValidatorRole } = await import("./roles.ts");
      await runValidatorRole({ flags, config });
    });

  program
    .command("devnet")
    .description(
      "a local network on this machine: providers in their own processes and a gateway (what `npm start` runs)",
    )
    .option("--providers <n>", "providers to start", integer("--providers", 1, 32), 3)
    .option("--port <n>", "gateway API port (default 8080; 0 picks a free one)", integer("--port", 0, 65535))
    .option("--model <model>", "model every provider serves (default: the tiny test model, made if needed)")
    .option(
      "--rpc-port <n>",
      "port of the local chain (anvil) on 127.0.0.1 (default 8545; 0 picks a free one)",
      integer("--rpc-port", 0, 65535),
      8545,
    )
    .option(
      "--stall-timeout <ms>",
      "silence between tokens before the gateway fails over",
      integer("--stall-timeout", 100),
    )
    .action(
      async (
        flags: { providers: number; port?: number; model?: string; stallTimeout?: number; rpcPort: number },
        command: Command,
      ) => {
        const config = configFrom(command, { serve: { port: flags.port } });
        const { runDevnet } = await import("./roles.ts");
        await runDevnet({
          config,
          providers: flags.providers,
          model: flags.model,
          stallMs: flags.stallTimeout,
          rpcPort: flags.rpcPort,
        });
      },
    );
  return { provider };
}
