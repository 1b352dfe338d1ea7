/** The network commands of `mycel`: init, provider, gateway and devnet. */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { type Command, InvalidArgumentError } from "commander";
import type { Hex } from "viem";
import { startApiServer } from "../api/index.ts";
import type { ConfigOverrides, MycelConfig } from "../config/index.ts";
import { createEngine } from "../engine/index.ts";
import { describeError, MycelError } from "../errors/index.ts";
import { startGateway } from "../gateway/index.ts";
import {
  createKeystore,
  devPrivateKey,
  KeystoreExistsError,
  loadKeystore,
  promptPassword,
  resolvePassword,
} from "../identity/index.ts";
import { createLogger, type Logger } from "../log/index.ts";
import { generateTestModel, type ModelRecord, openModelStore } from "../model/index.ts";
import { createMycelNode, libp2pKeyFromSecp256k1 } from "../p2p/index.ts";
import { startProvider } from "../provider/index.ts";
import { openReceiptStore } from "../store/index.ts";

/** Default price per 1M tokens, in the payment token's smallest unit (1e12 = 0.000001 of an 18-decimal token). */
export const defaultPricePerMillion = 1_000_000_000_000n;

/** The password devnet keystores are encrypted with: they hold dev-only keys. */
const devnetPassword = "mycel-devnet";

function price(value: string) {
  if (!/^(0|[1-9][0-9]{0,30})$/.test(value))
    throw new InvalidArgumentError("a price is a whole number of the token's smallest unit per 1M tokens");
  return BigInt(value);
}

function collect(value: string, previous: string[] = []) {
  return [...previous, value];
}

async function loadKey(parameters: { home: string; name: string }): Promise<Hex> {
  const password = await resolvePassword({
    prompt: () => promptPassword(`password for key "${parameters.name}": `),
  });
  const { privateKey } = await loadKeystore({ home: parameters.home, name: parameters.name, password });
  return privateKey;
}

/** Prints a machine-readable line that `mycel devnet` (and tests) wait for. */
function printReady(fields: Record<string, unknown>) {
  console.log(`MYCEL_READY ${JSON.stringify(fields)}`);
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

function onShutdown(logger: Logger, close: () => Promise<void>) {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("shutting down", { signal });
    const force = setTimeout(() => process.exit(0), 5_000);
    force.unref();
    await close().catch((error) => logger.warn("shutdown failed", { error: describeError(error) }));
    process.exit(0);
  };
  process.once("SIGINT", () => void stop("SIGINT"));
  process.once("SIGTERM", () => void stop("SIGTERM"));
}

type ProviderFlags = {
  model: string[];
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
};

type GatewayFlags = {
  host?: string;
  port?: number;
  listen?: string[];
  bootstrap?: string[];
  key: string;
  stallTimeout?: number;
};

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

/** Adds init, provider, gateway and devnet to the program. */
export function addNetworkCommands(parameters: {
  program: Command;
  configFrom: (command: Command, overrides?: ConfigOverrides) => MycelConfig;
  integer: (name: string, minimum?: number, maximum?: number) => (value: string) => number;
}) {
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

  addPeerOptions(
    program
      .command("provider")
      .description("sell inference: serve models to the network over libp2p, with signed receipts")
      .requiredOption("--model <model...>", "name or hash of a model in the store (repeat for several)")
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
    .action(async (flags: ProviderFlags, command: Command) => {
      const config = configFrom(command, {
        engine: {
          parallelism: flags.parallelism,
          threadsPerSequence: flags.threads,
          contextSize: flags.contextSize,
          maxQueue: flags.maxQueue,
        },
      });
      const logger = createLogger().child({ role: "provider" });
      exitWithParent(logger);
      const privateKey = await loadKey({ home: config.home, name: flags.key });
      const store = openModelStore({ home: config.home });
      const records: ModelRecord[] = [];
      for (const query of flags.model) records.push(await store.resolve(query));
      const engine = createEngine({ options: config.engine, logger });
      const models = [];
      for (const record of records)
        models.push(
          await engine.loadModel({ hash: record.hash, path: store.pathOf(record.hash), name: record.name }),
        );
      const node = await createMycelNode({
        privateKey: libp2pKeyFromSecp256k1(privateKey),
        listen: flags.listen,
        bootstrap: flags.bootstrap,
        logger: logger.child({ part: "p2p" }),
      });
      const fallback = flags.price ?? defaultPricePerMillion;
      const provider = await startProvider({
        engine,
        models,
        node,
        privateKey,
        price: { input: flags.priceInput ?? fallback, output: flags.priceOutput ?? fallback },
        version: program.version() ?? "0",
        limits: flags.idleTimeout ? { idleTimeoutMs: flags.idleTimeout } : undefined,
        logger,
      });
      for (const address of node.multiaddrs()) {
        if (!/\/ip4\/127\.|\/ip6\/::1\//.test(address))
          logger.warn("listening beyond this machine", { address });
      }
      printReady({
        role: "provider",
        peerId: node.peerId,
        address: provider.address,
        multiaddrs: node.multiaddrs(),
      });
      onShutdown(logger, async () => {
        await provider.stop();
        await node.stop();
        await engine.close();
      });
    });

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
  )
    .option(
      "--stall-timeout <ms>",
      "silence between tokens before failing over",
      integer("--stall-timeout", 100),
    )
    .action(async (flags: GatewayFlags, command: Command) => {
      const config = configFrom(command, { serve: { host: flags.host, port: flags.port } });
      const logger = createLogger().child({ role: "gateway" });
      exitWithParent(logger);
      const privateKey = await loadKey({ home: config.home, name: flags.key });
      const running = await runGateway({
        config,
        privateKey,
        logger,
        listen: flags.listen,
        bootstrap: flags.bootstrap,
        stallMs: flags.stallTimeout,
      });
      printReady({ role: "gateway", url: running.url, peerId: running.peerId });
      console.log(
        `Mycel gateway\n  OpenAI-compatible endpoint: ${running.url}/v1\n  Receipts: ${running.url}/mycel/v1/receipts/<request id>`,
      );
      onShutdown(logger, running.close);
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
      "--stall-timeout <ms>",
      "silence between tokens before the gateway fails over",
      integer("--stall-timeout", 100),
    )
    .action(
      async (
        flags: { providers: number; port?: number; model?: string; stallTimeout?: number },
        command: Command,
      ) => {
        const config = configFrom(command, { serve: { port: flags.port } });
        await runDevnet({
          config,
          providers: flags.providers,
          model: flags.model,
          stallMs: flags.stallTimeout,
        });
      },
    );
}

/** Starts a gateway (node, receipts, API) in this process. */
async function runGateway(parameters: {
  config: MycelConfig;
  privateKey: Hex;
  logger: Logger;
  listen?: string[];
  bootstrap?: string[];
  stallMs?: number;
}) {
  const { config, logger } = parameters;
  const node = await createMycelNode({
    privateKey: libp2pKeyFromSecp256k1(parameters.privateKey),
    listen: parameters.listen,
    bootstrap: parameters.bootstrap,
    logger: logger.child({ part: "p2p" }),
  });
  const receipts = openReceiptStore({ path: join(config.home, "gateway", "receipts.sqlite") });
  const gateway = startGateway({
    node,
    privateKey: parameters.privateKey,
    receipts,
    logger,
    timeouts: parameters.stallMs ? { stallMs: parameters.stallMs } : undefined,
  });
  const server = await startApiServer({
    backend: gateway.backend,
    host: config.serve.host,
    port: config.serve.port,
    maxBodyBytes: config.serve.maxBodyBytes,
    logger: logger.child({ part: "api" }),
  });
  if (!["127.0.0.1", "localhost", "::1"].includes(config.serve.host))
    logger.warn("the API listens beyond this machine: anyone who can reach it spends your funds", {
      host: config.serve.host,
    });
  return {
    url: server.url,
    peerId: node.peerId,
    gateway,
    async close() {
      await server.close();
      await gateway.stop();
      await node.stop();
      receipts.close();
    },
  };
}

/** A child role process of the devnet, with its output prefixed. */
type RoleProcess = {
  name: string;
  child: ChildProcess;
  ready: Promise<{ peerId: string; multiaddrs: string[]; address: string }>;
};

function spawnRole(parameters: { name: string; args: string[]; home: string; keyName: string }): RoleProcess {
  const bin = join(import.meta.dirname, "..", "..", "bin", "mycel.js");
  const child = spawn(
    process.execPath,
    [bin, "--home", parameters.home, ...parameters.args, "--key", parameters.keyName],
    {
      env: {
        ...process.env,
        MYCEL_PASSWORD: devnetPassword,
        MYCEL_EXIT_WITH_PARENT: "1",
        MYCEL_HOME: parameters.home,
      },
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  const prefix = `[${parameters.name}]`;
  const ready = new Promise<{ peerId: string; multiaddrs: string[]; address: string }>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      if (line.startsWith("MYCEL_READY ")) resolve(JSON.parse(line.slice("MYCEL_READY ".length)));
      else process.stdout.write(`${prefix} ${line}\n`);
    });
    child.on("exit", (code, signal) =>
      reject(
        new MycelError(`${parameters.name} exited (${signal ?? code}) before it was ready`, {
          hint: "see its log lines above",
        }),
      ),
    );
  });
  ready.catch(() => undefined);
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", (line) =>
    process.stderr.write(`${prefix} ${line}\n`),
  );
  return { name: parameters.name, child, ready };
}

async function ensureDevKey(home: string, name: string): Promise<Hex> {
  const privateKey = devPrivateKey(name);
  try {
    await createKeystore({ home, name, password: devnetPassword, privateKey });
  } catch (error) {
    if (!(error instanceof KeystoreExistsError)) throw error;
  }
  return privateKey;
}

/** Runs the devnet until SIGINT/SIGTERM: N provider processes and a gateway, all on loopback. */
async function runDevnet(parameters: {
  config: MycelConfig;
  providers: number;
  model?: string;
  stallMs?: number;
}) {
  const { config } = parameters;
  const logger = createLogger({ write: (line) => process.stderr.write(`[devnet] ${line}\n`) });
  const store = openModelStore({ home: config.home });
  let model: ModelRecord;
  if (parameters.model) model = await store.resolve(parameters.model);
  else {
    const made = generateTestModel({ size: "tiny", seed: 1 });
    model = (
      await store.addBytes({
        bytes: made.bytes,
        name: made.name,
        source: "make-test --size tiny --seed 1 --quant f32",
      })
    ).model;
  }
  const roles: RoleProcess[] = [];
  let gatewayClose: (() => Promise<void>) | undefined;
  let stopping = false;
  const stopAll = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("stopping the devnet", { signal });
    await gatewayClose?.().catch(() => undefined);
    await Promise.all(
      roles.map(
        (role) =>
          new Promise<void>((resolve) => {
            if (role.child.exitCode !== null || role.child.signalCode !== null) return resolve();
            const kill = setTimeout(() => role.child.kill("SIGKILL"), 5_000);
            role.child.once("exit", () => {
              clearTimeout(kill);
              resolve();
            });
            role.child.kill("SIGTERM");
          }),
      ),
    );
    process.exit(0);
  };
  process.once("SIGINT", () => void stopAll("SIGINT"));
  process.once("SIGTERM", () => void stopAll("SIGTERM"));
  try {
    const started = performance.now();
    logger.info("starting", { providers: parameters.providers, model: model.name });
    const providerArgs = (index: number) => [
      "provider",
      "--model",
      model.hash,
      "--price",
      String(defaultPricePerMillion * BigInt(index)),
    ];
    await ensureDevKey(config.home, "devnet-provider-1");
    const first = spawnRole({
      name: "provider-1",
      args: providerArgs(1),
      home: config.home,
      keyName: "devnet-provider-1",
    });
    roles.push(first);
    const firstReady = await first.ready;
    const bootstrap = firstReady.multiaddrs.slice(0, 1);
    for (let index = 2; index <= parameters.providers; index++) {
      const name = `devnet-provider-${index}`;
      await ensureDevKey(config.home, name);
      roles.push(
        spawnRole({
          name: `provider-${index}`,
          args: [...providerArgs(index), ...bootstrap.flatMap((address) => ["--bootstrap", address])],
          home: config.home,
          keyName: name,
        }),
      );
    }
    const ready = await Promise.all(roles.map((role) => role.ready));
    const gatewayKey = await ensureDevKey(config.home, "devnet-gateway");
    const running = await runGateway({
      config,
      privateKey: gatewayKey,
      logger: createLogger({ write: (line) => process.stderr.write(`[gateway] ${line}\n`) }),
      bootstrap: ready
        .map((entry) => entry.multiaddrs[0])
        .filter((entry): entry is string => entry !== undefined),
      stallMs: parameters.stallMs,
    });
    gatewayClose = running.close;
    await running.gateway.waitForProviders({
      count: parameters.providers,
      modelHash: model.hash,
      timeoutMs: 60_000,
    });
    logger.info("ready", { seconds: ((performance.now() - started) / 1000).toFixed(1) });
    printDevnet({ url: running.url, model, providers: ready });
  } catch (error) {
    process.stderr.write(`error: ${describeError(error)}\n`);
    await stopAll("error");
  }
}

function printDevnet(parameters: {
  url: string;
  model: ModelRecord;
  providers: { peerId: string; address: string }[];
}) {
  const { url, model } = parameters;
  const body = JSON.stringify({
    model: model.name,
    messages: [{ role: "user", content: "Hello!" }],
    max_tokens: 32,
  });
  console.log(`
Mycel devnet is up: ${parameters.providers.length} providers and a gateway, all on 127.0.0.1
${parameters.providers.map((p, i) => `  provider-${i + 1}: ${p.address} (peer ${p.peerId})`).join("\n")}
  OpenAI-compatible endpoint: ${url}/v1
  Providers seen by the gateway: ${url}/mycel/v1/providers
  Receipts: ${url}/mycel/v1/receipts/<request id>

Try it with curl:
  curl -s ${url}/v1/chat/completions -H 'content-type: application/json' \\
    -d '${body}'

Or with the openai package (node, ESM):
  import OpenAI from "openai";
  const client = new OpenAI({ baseURL: "${url}/v1", apiKey: "unused" });
  const answer = await client.chat.completions.create({ model: "${model.name}", messages: [{ role: "user", content: "Hello!" }] });
  console.log(answer.choices[0].message.content, answer.mycel?.receipts);

Test models have random weights: their answers are noise, but real llama.cpp inference over real libp2p.
Press Ctrl-C to stop everything.
`);
}
