/** The network roles of `mycel`: init, provider, gateway, validator, relay and devnet. Flags in, node/ does the work. */
import type { Command } from "commander";
import { type MycelConfig, roleDefaults } from "../config/index.ts";
import { MycelError } from "../errors/index.ts";
import { createLogger } from "../log/index.ts";
import { addGatewayKeyCommands } from "./gatewayKeys.ts";
import {
  addChainOptions,
  addHttpLimitOptions,
  addPeerOptions,
  addRelayOptions,
  addRelayServiceOptions,
  addShutdownOption,
  addUpnpOption,
  type ChainFlags,
  collect,
  configFrom,
  fraction,
  type HttpLimitFlags,
  httpLimitsOf,
  integer,
  price,
  type RelayFlags,
  relayServiceOf,
} from "./options.ts";
import { exitWithParent, stopOnSignal, survivePeerStreamErrors } from "./process.ts";

/** Flags of `mycel provider`. */
export type ProviderFlags = ChainFlags &
  RelayFlags & {
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
    firstFrameTimeout?: number;
    evidenceRetention: number;
    creditTokens: number;
    settleThreshold?: bigint;
    settleInterval: number;
    settleCheck: number;
    shutdownTimeout: number;
  };

/** Flags of `mycel gateway`. */
export type GatewayFlags = ChainFlags &
  HttpLimitFlags & {
    host?: string;
    port?: number;
    listen?: string[];
    bootstrap?: string[];
    upnp?: boolean;
    announce?: string[];
    key: string;
    stallTimeout?: number;
    queueLength: number;
    queueTimeout: number;
    deposit: string;
    budget: string;
    validator?: string[];
    auditRate: number;
    minReputation: number;
    /** Parsed by `price` when given; the default is its decimal string (help output cannot show a bigint). */
    maxPrice: bigint | string;
    allowUnstaked?: boolean;
    insecureNoAuth?: boolean;
    shutdownTimeout: number;
  };

/** Flags of `mycel validator`. */
export type ValidatorFlags = ChainFlags &
  RelayFlags & {
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
    shutdownTimeout: number;
  };

/** What every role command does first: its logger, exiting with its parent, its key, and its chain if asked. */
async function setUpRole(parameters: {
  config: MycelConfig;
  flags: ChainFlags & { key: string };
  role: string;
}) {
  const { config, flags } = parameters;
  const logger = createLogger().child({ role: parameters.role });
  exitWithParent({ logger });
  survivePeerStreamErrors({ logger });
  const node = await import("../node/index.ts");
  const privateKey = await node.loadKey({ home: config.home, name: flags.key });
  const chain = node.chainRequested(flags)
    ? await node.openChain({ home: config.home, location: flags, privateKey })
    : undefined;
  return { logger, node, privateKey, chain };
}

/** Where a role joins the network: its --bootstrap flags, else the bootstrap list of its chain's deployments file. */
function bootstrapOf(
  flags: { bootstrap?: string[] },
  chain: { deployments: { bootstrap?: string[] } } | undefined,
): string[] | undefined {
  return flags.bootstrap?.length ? flags.bootstrap : chain?.deployments.bootstrap;
}

/** The peer options every role that joins the network shares: where it listens and announces, and its first peers. */
function peerNodeOptionsOf(
  flags: { listen?: string[]; bootstrap?: string[]; upnp?: boolean; announce?: string[] },
  chain: { deployments: { bootstrap?: string[] } } | undefined,
) {
  return {
    listen: flags.listen,
    bootstrap: bootstrapOf(flags, chain),
    upnp: flags.upnp === true,
    announce: flags.announce,
  };
}

/** Prints the machine-readable line that `mycel devnet` (and tests) wait for. */
async function printReady(fields: Record<string, unknown>) {
  const { readyLine } = await import("../node/index.ts");
  console.log(readyLine(fields));
}

function addInitCommand(program: Command) {
  program
    .command("init")
    .description("create this node's key (secp256k1, an Ethereum address) in an encrypted keystore")
    .option("--key <name>", "keystore name", "default")
    .action(async (flags: { key: string }, command: Command) => {
      const config = configFrom(command);
      const { createKeystore, promptPassword, resolvePassword } = await import("../identity/index.ts");
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
}

function addProviderCommand(program: Command): Command {
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
      "--first-frame-timeout <ms>",
      "drop a new stream whose request frame has not come within this long (default 2000)",
      integer("--first-frame-timeout", 100),
    )
    .option(
      "--evidence-retention <hours>",
      "keep the evidence of each answer (it holds the conversation) this long for its client and validators",
      integer("--evidence-retention", 1, 24 * 366),
      roleDefaults.evidenceRetentionHours,
    )
    .option(
      "--credit-tokens <n>",
      "output tokens served on credit before a client must pay (with --rpc-url)",
      integer("--credit-tokens", 32, 1_000_000),
      roleDefaults.creditTokens,
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
      roleDefaults.settleIntervalSeconds,
    )
    .option(
      "--settle-check <seconds>",
      "how often unsettled channels are checked (a client closing one is settled before its challenge ends)",
      integer("--settle-check", 1, 3600),
      roleDefaults.settleCheckSeconds,
    );
  addShutdownOption(addRelayServiceOptions(addChainOptions(provider))).action(
    async (flags: ProviderFlags, command: Command) => {
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
      const { logger, node, privateKey, chain } = await setUpRole({ config, flags, role: "provider" });
      const fallback = flags.price ?? roleDefaults.pricePerMillion;
      const running = await node.startProviderNode({
        config,
        privateKey,
        models: flags.model,
        price: { input: flags.priceInput ?? fallback, output: flags.priceOutput ?? fallback },
        version: program.version() ?? "0",
        logger,
        ...peerNodeOptionsOf(flags, chain),
        relay: relayServiceOf(flags, "when-reachable"),
        chain,
        creditTokens: flags.creditTokens,
        settlement: {
          ...(flags.settleThreshold === undefined ? {} : { thresholdAmount: flags.settleThreshold }),
          maxAgeMs: flags.settleInterval * 1000,
          checkIntervalMs: flags.settleCheck * 1000,
        },
        firstFrameTimeoutMs: flags.firstFrameTimeout,
        evidenceRetentionMs: flags.evidenceRetention * 3600_000,
        shutdownLimitMs: flags.shutdownTimeout * 1000,
      });
      await printReady({
        role: "provider",
        peerId: running.peerId,
        address: running.address,
        multiaddrs: running.multiaddrs,
      });
      stopOnSignal({ logger, close: running.close, limitMs: flags.shutdownTimeout * 1000 });
    },
  );
  return provider;
}

function addGatewayCommand(program: Command) {
  const gateway = addChainOptions(
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
      "--queue-length <n>",
      "requests held while every provider of their model is at capacity; one more gets 503 with Retry-After",
      integer("--queue-length", 0),
      roleDefaults.gatewayQueueLength,
    )
    .option(
      "--queue-timeout <ms>",
      "the longest a request waits for a provider with room (from its arrival) before 503 with Retry-After",
      integer("--queue-timeout", 1),
      roleDefaults.gatewayQueueTimeoutMs,
    )
    .option(
      "--deposit <tokens>",
      "deposited in each provider's payment channel, and added when it runs low (with --rpc-url)",
      roleDefaults.gatewayDeposit,
    )
    .option(
      "--budget <tokens>",
      "the most kept deposited across all payment channels (with --rpc-url)",
      roleDefaults.gatewayBudget,
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
      roleDefaults.auditRate,
    )
    .option(
      "--min-reputation <r>",
      "do not route to providers whose on-chain reputation (0..1) is below this (with --rpc-url)",
      fraction("--min-reputation"),
      roleDefaults.minimumReputation,
    )
    .option(
      "--max-price <n>",
      "never pay more than this per 1M tokens, input or output, in the token's smallest unit; providers above it are not routed to",
      (value: string): bigint | string => price(value),
      roleDefaults.maxPricePerMillion.toString(),
    )
    .option(
      "--allow-unstaked",
      "also route to providers not staked on chain, or whose on-chain offer differs from their announced price (with --rpc-url; off: nothing is at risk for them)",
    )
    .option(
      "--insecure-no-auth",
      "with a --host beyond loopback, start without API keys: anyone who reaches the port spends your funds (warned on every start)",
    );
  addGatewayKeyCommands(gateway);
  addShutdownOption(addUpnpOption(addHttpLimitOptions(gateway))).action(
    async (flags: GatewayFlags, command: Command) => {
      const config = configFrom(command, {
        serve: {
          host: flags.host,
          port: flags.port,
          ...httpLimitsOf(flags),
        },
      });
      const { logger, node, privateKey, chain } = await setUpRole({ config, flags, role: "gateway" });
      if (chain)
        logger.info("chain", { chainId: chain.deployments.chainId, rpcUrl: chain.connection.rpcUrl });
      const running = await node.startGatewayNode({
        config,
        privateKey,
        chain: chain ? { ...chain, deposit: flags.deposit, budget: flags.budget } : undefined,
        logger,
        ...peerNodeOptionsOf(flags, chain),
        stallMs: flags.stallTimeout,
        queue: { maxWaiting: flags.queueLength, timeoutMs: flags.queueTimeout },
        audit: { rate: flags.auditRate, validators: flags.validator ?? [] },
        minReputation: flags.minReputation,
        maxPricePerMillion: BigInt(flags.maxPrice),
        allowUnstaked: flags.allowUnstaked === true,
        insecureNoAuth: flags.insecureNoAuth === true,
      });
      if ((flags.validator ?? []).length === 0 && flags.auditRate > 0)
        logger.info("no --validator given: answers are not sent for audit");
      await printReady({ role: "gateway", url: running.url, peerId: running.peerId });
      console.log(
        `Mycel gateway\n  Explorer (web app): ${running.url}/\n  OpenAI-compatible endpoint: ${running.url}/v1\n  Receipts: ${running.url}/mycel/v1/receipts/<request id>`,
      );
      stopOnSignal({ logger, close: running.close, limitMs: flags.shutdownTimeout * 1000 });
    },
  );
}

function addValidatorCommand(program: Command) {
  const validator = addChainOptions(
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
      roleDefaults.challengeIntervalSeconds,
    )
    .option(
      "--epoch-check <seconds>",
      "how often the chain is checked to commit, reveal, finalize and vote",
      integer("--epoch-check", 1, 3600),
      roleDefaults.epochCheckSeconds,
    )
    .option(
      "--slash-percent <n>",
      "share of a cheating provider's stake a slashing proposal asks for",
      integer("--slash-percent", 1, 100),
      roleDefaults.slashPercent,
    )
    .option(
      "--deposit <tokens>",
      "deposit per provider channel for challenge requests",
      roleDefaults.gatewayDeposit,
    )
    .option("--budget <tokens>", "the most deposited for challenge requests", roleDefaults.gatewayBudget);
  addShutdownOption(addRelayServiceOptions(validator)).action(
    async (flags: ValidatorFlags, command: Command) => {
      const config = configFrom(command);
      const { logger, node, privateKey, chain } = await setUpRole({ config, flags, role: "validator" });
      const challengeKey = flags.challengeKey
        ? await node.loadKey({ home: config.home, name: flags.challengeKey })
        : undefined;
      if (!flags.challengeKey && flags.challengeInterval > 0)
        logger.warn(
          "challenges are sent with the validator's own key: give --challenge-key so providers cannot tell them apart",
        );
      const running = await node.startValidatorNode({
        config,
        privateKey,
        challengeKey,
        logger,
        ...peerNodeOptionsOf(flags, chain),
        relay: relayServiceOf(flags, "when-reachable"),
        chain,
        stake: flags.stake,
        threads: flags.threads,
        options: {
          challengeIntervalMs: flags.challengeInterval * 1000,
          epochCheckMs: flags.epochCheck * 1000,
          slashBps: flags.slashPercent * 100,
        },
        challengeDeposit: flags.deposit,
        challengeBudget: flags.budget,
      });
      await printReady({
        role: "validator",
        peerId: running.peerId,
        address: running.address,
        multiaddrs: running.multiaddrs,
      });
      stopOnSignal({ logger, close: running.close, limitMs: flags.shutdownTimeout * 1000 });
    },
  );
}

/** Flags of `mycel relay`. */
export type RelayCommandFlags = RelayFlags & {
  listen?: string[];
  announce?: string[];
  bootstrap?: string[];
  key: string;
  shutdownTimeout: number;
};

function addRelayCommand(program: Command) {
  const relay = addRelayOptions(
    addPeerOptions(
      program
        .command("relay")
        .description(
          "relay for providers and gateways that cannot be dialled (behind NAT): circuit relay v2 with limits, no model and no chain",
        ),
    ),
  );
  addShutdownOption(relay).action(async (flags: RelayCommandFlags, command: Command) => {
    const config = configFrom(command);
    const logger = createLogger().child({ role: "relay" });
    exitWithParent({ logger });
    survivePeerStreamErrors({ logger });
    const node = await import("../node/index.ts");
    const privateKey = await node.loadKey({ home: config.home, name: flags.key });
    const { offer: _always, ...limits } = relayServiceOf(flags, "always");
    const running = await node.startRelayNode({
      privateKey,
      logger,
      ...peerNodeOptionsOf(flags, undefined),
      relay: limits,
    });
    await printReady({ role: "relay", peerId: running.peerId, multiaddrs: running.multiaddrs });
    stopOnSignal({ logger, close: running.close, limitMs: flags.shutdownTimeout * 1000 });
  });
}

type DevnetFlags = {
  providers: number;
  port?: number;
  model?: string[];
  stallTimeout?: number;
  rpcPort: number;
};

/** Everything the devnet started is down within this long of a signal. */
const devnetStopLimitMs = 5_000;

function addDevnetCommand(program: Command) {
  program
    .command("devnet")
    .description(
      "a local network on this machine: providers in their own processes and a gateway (what `npm start` runs)",
    )
    .option("--providers <n>", "providers to start", integer("--providers", 1, 32), 3)
    .option("--port <n>", "gateway API port (default 8080; 0 picks a free one)", integer("--port", 0, 65535))
    .option(
      "--model <model...>",
      "model every provider serves, by name, hash or path in the store (repeat for several; default: the tiny test model, made if needed)",
    )
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
    .action(async (flags: DevnetFlags, command: Command) => {
      const config = configFrom(command, { serve: { port: flags.port } });
      const prefixed = (prefix: string) =>
        createLogger({ write: (line) => process.stderr.write(`${prefix} ${line}\n`) });
      const logger = prefixed("[devnet]");
      const node = await import("../node/index.ts");
      const { printDevnet } = await import("./devnetBanner.ts");
      const starting = new AbortController();
      const devnet = node.startDevnet({
        config,
        providers: flags.providers,
        models: flags.model,
        stallMs: flags.stallTimeout,
        rpcPort: flags.rpcPort,
        logger,
        gatewayLogger: prefixed("[gateway]"),
        write: {
          stdout: (line) => process.stdout.write(`${line}\n`),
          stderr: (line) => process.stderr.write(`${line}\n`),
        },
        signal: starting.signal,
      });
      // Whichever process of the tree is stopped, everything stops: on a signal (during start-up too), when a part
      // exits on its own, and when this process loses its parent (npm or the shell that started it).
      const shutdown = stopOnSignal({
        logger,
        limitMs: devnetStopLimitMs,
        close: async () => {
          starting.abort(new MycelError("the devnet was stopped while it started"));
          await devnet.then(
            (running) => running.stop(),
            () => undefined,
          );
        },
        ended: devnet.then(
          (running) => running.ended,
          () => new Promise<string>(() => undefined),
        ),
      });
      exitWithParent({ logger, watchParent: true, onGone: () => void shutdown.stop("parent gone") });
      survivePeerStreamErrors({ logger });
      printDevnet(await devnet);
    });
}

/** Adds init, provider, gateway, validator, relay and devnet; returns the provider command (chain subcommands hang off it). */
export function addNetworkCommands(program: Command): { provider: Command } {
  addInitCommand(program);
  const provider = addProviderCommand(program);
  addGatewayCommand(program);
  addValidatorCommand(program);
  addRelayCommand(program);
  addDevnetCommand(program);
  return { provider };
}
