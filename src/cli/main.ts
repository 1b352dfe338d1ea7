/** The `mycel` command: builds the command tree and runs it. Commands load what they use only when they run. */
import { Command, Option } from "commander";
import { type ConfigOverrides, roleDefaults } from "../config/index.ts";
import { describeError, MycelError } from "../errors/index.ts";
import type { ModelRecord, TestModelQuant, TestModelSize, TestModelTokenizer } from "../model/index.ts";
import { addChainCommands } from "./chain.ts";
import { addNetworkCommands } from "./network.ts";
import { addHttpLimitOptions, configFrom, type HttpLimitFlags, httpLimitsOf, integer } from "./options.ts";
import { printTable } from "./output.ts";
import { exitWithParent, stopOnSignal } from "./process.ts";
import { addVerifyCommands } from "./verify.ts";

const version = "0.1.0";

function formatCount(count: number) {
  if (count >= 1e9) return `${(count / 1e9).toFixed(1)}B`;
  if (count >= 1e6) return `${(count / 1e6).toFixed(1)}M`;
  if (count >= 1e3) return `${(count / 1e3).toFixed(1)}K`;
  return String(count);
}

function formatSize(bytes: number) {
  if (bytes >= 1 << 30) return `${(bytes / (1 << 30)).toFixed(2)} GiB`;
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

function describeModel(model: ModelRecord) {
  return `${model.name}  sha256:${model.hash}  (${model.architecture}, ${formatCount(model.parameterCount)} params, ${model.quantization}, ${formatSize(model.sizeBytes)})`;
}

type ServeFlags = HttpLimitFlags & {
  model: string[];
  host?: string;
  port?: number;
  parallelism?: number;
  threads?: number;
  contextSize?: number;
  maxQueue?: number;
  maxBody?: number;
};

function addServeOptions(command: Command) {
  return addHttpLimitOptions(command)
    .option("--host <address>", "address to listen on (default 127.0.0.1: this machine only)")
    .option("--port <n>", "port to listen on (default 8080; 0 picks a free one)", integer("--port", 0, 65535))
    .option("--parallelism <n>", "requests generated at once per model", integer("--parallelism", 1, 64))
    .option("--threads <n>", "llama.cpp threads per sequence", integer("--threads", 1, 256))
    .option("--context-size <n>", "context window per sequence, in tokens", integer("--context-size", 64))
    .option("--max-queue <n>", "requests that may wait before new ones get 503", integer("--max-queue", 0))
    .option("--max-body <bytes>", "largest request body", integer("--max-body", 1024));
}

function serveOverrides(flags: Omit<ServeFlags, "model">): ConfigOverrides {
  return {
    engine: {
      parallelism: flags.parallelism,
      threadsPerSequence: flags.threads,
      contextSize: flags.contextSize,
      maxQueue: flags.maxQueue,
    },
    serve: {
      host: flags.host,
      port: flags.port,
      maxBodyBytes: flags.maxBody,
      ...httpLimitsOf(flags),
    },
  };
}

function printEndpoint(url: string, model: ModelRecord) {
  const body = JSON.stringify({
    model: model.name,
    messages: [{ role: "user", content: "Hello!" }],
    max_tokens: 32,
  });
  console.log(`
Mycel is serving ${model.name} (sha256:${model.hash})
  OpenAI-compatible endpoint: ${url}/v1
  Health:                     ${url}/health

Try it:
  curl -s ${url}/v1/chat/completions -H 'content-type: application/json' \\
    -d '${body}'

Test models have random weights: their answers are noise, but real llama.cpp inference.
Press Ctrl-C to stop.
`);
}

/** Serves models from the store until SIGINT/SIGTERM. */
async function serveUntilStopped(parameters: {
  command: Command;
  flags: Omit<ServeFlags, "model">;
  models: () => Promise<string[]>;
  role: string;
}) {
  const config = configFrom(parameters.command, serveOverrides(parameters.flags));
  const { createLogger } = await import("../log/index.ts");
  const logger = createLogger().child({ role: parameters.role });
  exitWithParent({ logger });
  const { startLocalServer } = await import("../node/index.ts");
  const server = await startLocalServer({ config, models: await parameters.models(), logger });
  logger.info("listening", {
    url: `${server.url}/v1`,
    models: server.models.map((record) => record.name).join(","),
  });
  if (server.models[0]) printEndpoint(server.url, server.models[0]);
  stopOnSignal({ logger, close: server.close, limitMs: roleDefaults.shutdownSeconds * 1000 });
}

function addModelCommands(program: Command): Command {
  const model = program.command("model").description("manage the local model store");
  model
    .command("add")
    .description("add a GGUF model from a path, an https URL or hf:owner/repo/file.gguf (downloads resume)")
    .argument("<source>", "path | https://... | hf:owner/repo/file.gguf")
    .option("--name <name>", "name to list it under (default: the file name)")
    .action(async (source: string, flags: { name?: string }, command: Command) => {
      const { openModelStore } = await import("../model/index.ts");
      const { createProgressBar } = await import("./progress.ts");
      const store = openModelStore({ home: configFrom(command).home });
      const bar = createProgressBar({
        label: source.startsWith("hf:") || /^https?:/.test(source) ? "downloading" : "copying",
      });
      try {
        const { model: added, alreadyPresent } = await store.add({
          source,
          name: flags.name,
          onProgress: (progress) => bar.update(progress),
        });
        bar.done();
        console.log(`${alreadyPresent ? "already in the store" : "added"}: ${describeModel(added)}`);
      } catch (error) {
        bar.done();
        throw error;
      }
    });

  model
    .command("list")
    .description("list the models in the store")
    .option("--json", "print JSON")
    .action(async (flags: { json?: boolean }, command: Command) => {
      const { openModelStore } = await import("../model/index.ts");
      const models = await openModelStore({ home: configFrom(command).home }).list();
      if (flags.json) {
        console.log(JSON.stringify(models, null, 2));
        return;
      }
      if (models.length === 0) {
        console.log(
          "no models yet: add one with `mycel model add <path|url|hf:...>` or `mycel model make-test`",
        );
        return;
      }
      printTable([
        ["NAME", "HASH", "ARCH", "PARAMS", "QUANT", "SIZE", "LICENSE"],
        ...models.map((entry) => [
          entry.name,
          entry.hash.slice(0, 16),
          entry.architecture,
          formatCount(entry.parameterCount),
          entry.quantization,
          formatSize(entry.sizeBytes),
          entry.license ?? "-",
        ]),
      ]);
    });

  model
    .command("rm")
    .description("remove a model and its file from the store")
    .argument("<model>", "name, sha256 or unique hash prefix")
    .action(async (query: string, _flags: unknown, command: Command) => {
      const { openModelStore } = await import("../model/index.ts");
      const removed = await openModelStore({ home: configFrom(command).home }).remove(query);
      console.log(`removed: ${removed.name} sha256:${removed.hash}`);
    });

  model
    .command("make-test")
    .description(
      "write a deterministic test model (random weights, a test tokenizer, chat template) and add it",
    )
    .addOption(
      new Option(
        "--size <size>",
        "tiny (~115K params), small (~27.5M params) or medium (~0.5B params, gpt2's vocabulary by default; ~1 GB in f16)",
      )
        .choices(["tiny", "small", "medium"])
        .default("tiny"),
    )
    .option("--seed <n>", "seed of the random weights", integer("--seed", 0, 0xffffffff), 1)
    .addOption(
      new Option(
        "--quant <quant>",
        "weight encoding (default: f32 for tiny, q8_0 for small and medium)",
      ).choices(["f32", "f16", "q8_0"]),
    )
    .addOption(
      new Option(
        "--tokenizer <family>",
        "bytes (byte-level, ChatML), gpt2 (GPT-2 BPE, ChatML with tools), llama3 (GPT-2 BPE, Llama 3 template) or wide (gpt2 padded to 151,936 tokens: a large vocabulary's cost); default: bytes for tiny and small, gpt2 for medium",
      ).choices(["bytes", "gpt2", "llama3", "wide"]),
    )
    .action(
      async (
        flags: { size: TestModelSize; seed: number; quant?: TestModelQuant; tokenizer?: TestModelTokenizer },
        command: Command,
      ) => {
        const { defaultTestModelQuant, generateTestModel, openModelStore } = await import(
          "../model/index.ts"
        );
        const store = openModelStore({ home: configFrom(command).home });
        // A medium model takes a minute or so: say how far it is, a line per tenth, on stderr.
        let shownTenths = 0;
        const made = generateTestModel({
          size: flags.size,
          seed: flags.seed,
          quant: flags.quant ?? defaultTestModelQuant[flags.size],
          tokenizer: flags.tokenizer,
          onProgress: ({ done, total }) => {
            if (total < 100_000_000) return;
            const tenths = Math.floor((done / total) * 10);
            if (tenths <= shownTenths) return;
            shownTenths = tenths;
            process.stderr.write(
              `making the weights: ${tenths * 10}% (${(done / 1e6).toFixed(0)}M of ${(total / 1e6).toFixed(0)}M parameters)\n`,
            );
          },
        });
        const family = made.tokenizer === "bytes" ? "" : ` --tokenizer ${made.tokenizer}`;
        const { model: added, alreadyPresent } = await store.addBytes({
          bytes: made.bytes,
          name: made.name,
          source: `make-test --size ${made.size} --seed ${made.seed} --quant ${made.quant}${family}`,
        });
        console.log(`${alreadyPresent ? "already in the store" : "made"}: ${added.name}`);
        console.log(`sha256: ${added.hash}`);
      },
    );
  return model;
}

function addServeCommands(program: Command) {
  addServeOptions(
    program
      .command("serve")
      .description("serve models from the store through the OpenAI-compatible API")
      .requiredOption("--model <model...>", "name or hash of a model in the store (repeat for several)"),
  ).action(async (flags: ServeFlags, command: Command) => {
    await serveUntilStopped({ command, flags, models: async () => flags.model, role: "serve" });
  });

  addServeOptions(
    program
      .command("demo")
      .description("make the tiny test model if needed and serve it on this machine alone (no network)"),
  ).action(async (flags: Omit<ServeFlags, "model">, command: Command) => {
    await serveUntilStopped({
      command,
      flags,
      role: "demo",
      models: async () => {
        const { generateTestModel, openModelStore } = await import("../model/index.ts");
        const made = generateTestModel({ size: "tiny", seed: 1 });
        const { model } = await openModelStore({ home: configFrom(command).home }).addBytes({
          bytes: made.bytes,
          name: made.name,
          source: "make-test --size tiny --seed 1 --quant f32",
        });
        return [model.hash];
      },
    });
  });
}

/** Builds the command tree (exported for tests of argument handling). */
export function buildProgram(): Command {
  const program = new Command()
    .name("mycel")
    .description("Mycel: decentralized, verifiable AI inference with an OpenAI-compatible endpoint")
    .version(version)
    .option("--home <dir>", "Mycel's data directory (default: $MYCEL_HOME or ~/.mycel)")
    .showHelpAfterError("(run with --help for usage)");
  const model = addModelCommands(program);
  addServeCommands(program);
  const { provider } = addNetworkCommands(program);
  addChainCommands({ program, model, provider });
  addVerifyCommands({ program, configFrom, integer });
  return program;
}

/** Runs the CLI with process.argv; errors print one clear message (and the fix) and exit with code 1. */
export async function main(argv = process.argv) {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (error) {
    process.stderr.write(`error: ${error instanceof MycelError ? error.message : describeError(error)}\n`);
    if (!(error instanceof MycelError) && process.env.MYCEL_LOG_LEVEL === "debug" && error instanceof Error)
      process.stderr.write(`${error.stack}\n`);
    process.exitCode = 1;
  }
}
