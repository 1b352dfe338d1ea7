/**
 * Engine benchmark: node-llama-cpp used directly vs the same model served through Mycel's OpenAI-compatible
 * HTTP API (openai client, streaming), interleaved in one run; then aggregate API throughput at 1, 2 and 4
 * concurrent streams. Run with `npm run bench:engine`; see bench/engine/README.md.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type { LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { startApiServer } from "../../src/api/index.ts";
import { createEngine, type Engine, getSharedLlama } from "../../src/engine/index.ts";
import {
  generateTestModel,
  openModelStore,
  type TestModelTokenizer,
  testModelTokenizers,
} from "../../src/model/index.ts";
import {
  formatTable,
  machineBusyMs,
  median,
  roundDown,
  roundUp,
  summarizeSamples,
  verdict,
} from "../shared/report.ts";
import type { ClientRequest, ClientResponse, Sample } from "./client.ts";

const rounds = 9;
const maxTokens = 256;
const concurrentMaxTokens = 128;
const concurrencyLevels = [1, 2, 4] as const;
const concurrencyRepeats = 3;
const seed = 42;
const contextSize = 2048;
/** A user message: both the engine's ChatMessage and the openai client's message type accept it. */
const messages: { role: "user"; content: string }[] = [
  {
    role: "user",
    content:
      "Write a short story about a mycelium network that carries messages between the trees of a forest.",
  },
];
const targets = { throughputRatio: 0.95, firstTokenOverheadMs: 5 };

/** The test model's vocabulary: bytes by default, or a real one (MYCEL_BENCH_ENGINE_TOKENIZER=gpt2|llama3). */
function benchTokenizer(): TestModelTokenizer {
  const chosen = process.env.MYCEL_BENCH_ENGINE_TOKENIZER ?? "bytes";
  if (!testModelTokenizers.includes(chosen as TestModelTokenizer))
    throw new Error(`MYCEL_BENCH_ENGINE_TOKENIZER must be one of ${testModelTokenizers.join(", ")}`);
  return chosen as TestModelTokenizer;
}

/** Runs the HTTP clients in a worker thread (see client.ts) and returns their samples. */
function startClientWorker() {
  const worker = new Worker(new URL("./client-worker.mjs", import.meta.url));
  let failure: Error | undefined;
  const pending = new Map<
    number,
    { resolve: (response: ClientResponse) => void; reject: (error: Error) => void }
  >();
  let nextId = 0;
  worker.on("message", (response: ClientResponse) => {
    const waiter = pending.get(response.id);
    pending.delete(response.id);
    if (response.error) waiter?.reject(new Error(response.error));
    else waiter?.resolve(response);
  });
  const failAll = (error: Error) => {
    failure ??= error;
    for (const waiter of pending.values()) waiter.reject(error);
    pending.clear();
  };
  worker.on("error", failAll);
  worker.on("exit", (code) => failAll(new Error(`the client worker exited (code ${code})`)));
  return {
    call(request: Omit<ClientRequest, "id">) {
      const id = nextId++;
      return new Promise<ClientResponse>((resolve, reject) => {
        if (failure) {
          reject(failure);
          return;
        }
        pending.set(id, { resolve, reject });
        worker.postMessage({ ...request, id });
      });
    },
    async close() {
      if (failure) return;
      const exited = new Promise((resolve) => worker.once("exit", resolve));
      worker.postMessage("close");
      await exited;
    },
  };
}
type ClientWorker = ReturnType<typeof startClientWorker>;

async function runThroughClient(parameters: {
  client: ClientWorker;
  kind: "openai" | "node-http";
  url: string;
  model: string;
}): Promise<Sample> {
  const response = await parameters.client.call({
    kind: parameters.kind,
    url: parameters.url,
    model: parameters.model,
    messages,
    maxTokens,
    seed,
  });
  const sample = response.samples?.[0];
  if (!sample) throw new Error("the client worker returned no sample");
  return sample;
}

/** `count` concurrent streams through the API (openai client): total completion tokens / wall time. */
async function runConcurrent(parameters: {
  client: ClientWorker;
  url: string;
  model: string;
  count: number;
}) {
  const response = await parameters.client.call({
    kind: "concurrent",
    url: parameters.url,
    model: parameters.model,
    messages,
    maxTokens: concurrentMaxTokens,
    seed,
    count: parameters.count,
  });
  const wallMs = response.wallMs ?? Number.NaN;
  const tokens = (response.samples ?? []).reduce((sum, sample) => sum + sample.completionTokens, 0);
  return { tokens, wallMs, tokensPerSecond: tokens / (wallMs / 1000) };
}

/** node-llama-cpp on its own: one context, one sequence, greedy, detokenizing each token as it arrives. */
async function runDirect(parameters: {
  model: LlamaModel;
  sequence: LlamaContextSequence;
  promptTokens: readonly number[];
}): Promise<Sample> {
  const { model, sequence } = parameters;
  await sequence.clearHistory();
  const started = performance.now();
  let firstTokenMs: number | undefined;
  const tokens: Token[] = [];
  let text = "";
  for await (const token of sequence.evaluate([...parameters.promptTokens] as Token[], {
    temperature: 0,
    seed,
    yieldEogToken: true,
  })) {
    firstTokenMs ??= performance.now() - started;
    tokens.push(token);
    if (model.isEogToken(token)) break;
    text += model.detokenize([token], false, tokens.slice(-5, -1));
    if (tokens.length >= maxTokens) break;
  }
  const totalMs = performance.now() - started;
  return { firstTokenMs: firstTokenMs ?? totalMs, totalMs, completionTokens: tokens.length, text };
}

/** Mycel's engine called in-process (no HTTP), streaming through onDelta: for reference. */
async function runEngine(parameters: {
  engine: Engine;
  modelHash: string;
  promptTokens: readonly number[];
}): Promise<Sample> {
  const started = performance.now();
  let firstTokenMs: number | undefined;
  const result = await parameters.engine.generate({
    modelHash: parameters.modelHash,
    promptTokens: parameters.promptTokens,
    maxTokens,
    temperature: 0,
    seed,
    onDelta: (delta) => {
      if (delta.text) firstTokenMs ??= performance.now() - started;
    },
  });
  const totalMs = performance.now() - started;
  const completionTokens = result.usage.completionTokens;
  return { firstTokenMs: firstTokenMs ?? totalMs, totalMs, completionTokens, text: result.text };
}

type Summary = ReturnType<typeof summarizeSamples>;

/** CPU time of all cores (ms) spent outside idle, from the kernel's counters. */

/** Starts watching the machine; `stop()` returns the share of all cores' time used by other processes. */
function watchOtherProcessesCpu() {
  const started = performance.now();
  const busyAtStart = machineBusyMs();
  const ownAtStart = process.cpuUsage();
  return {
    stop() {
      const own = process.cpuUsage(ownAtStart);
      const otherMs = machineBusyMs() - busyAtStart - (own.user + own.system) / 1000;
      return Math.max(0, otherMs / ((performance.now() - started) * cpus().length));
    },
  };
}

async function main() {
  const home = await mkdtemp(join(tmpdir(), "mycel-bench-engine-"));
  process.env.MYCEL_HOME = home;
  const cleanups: (() => Promise<void>)[] = [];
  try {
    const generated = generateTestModel({ size: "small", tokenizer: benchTokenizer() });
    const store = openModelStore({ home });
    const { model: record } = await store.addBytes({
      bytes: generated.bytes,
      name: generated.name,
      source: "make-test small (bench/engine)",
    });
    const path = store.pathOf(record.hash);

    const engine = createEngine({ options: { parallelism: 4, threadsPerSequence: 1, contextSize } });
    cleanups.push(() => engine.close());
    const info = await engine.loadModel({ hash: record.hash, path, name: record.name });
    const promptTokens = engine.tokenizeChat({ modelHash: info.hash, messages });

    const llama = await getSharedLlama();
    const directModel = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
    cleanups.push(() => directModel.dispose());
    const directContext = await directModel.createContext({ contextSize, threads: 1, sequences: 1 });
    cleanups.push(() => directContext.dispose());
    const directSequence = directContext.getSequence();

    const server = await startApiServer({ engine, host: "127.0.0.1", port: 0 });
    cleanups.push(() => server.close());
    const client = startClientWorker();
    cleanups.push(() => client.close());

    console.log(
      `model ${info.name}: ${(generated.parameterCount / 1e6).toFixed(1)}M params, ${generated.quant}, ` +
        `prompt ${promptTokens.length} tokens, max_tokens ${maxTokens}, temperature 0, seed ${seed}`,
    );
    console.log(
      `engine: ${engine.options.parallelism} sequences x ${engine.options.threadsPerSequence} thread, ` +
        `context ${info.contextSize}; direct: 1 sequence x 1 thread, context ${directContext.contextSize}`,
    );
    console.log(`rounds: 1 warm-up + ${rounds} measured, order reversed every other round\n`);
    const cpuWatch = watchOtherProcessesCpu();

    const variants = [
      {
        label: "direct node-llama-cpp",
        run: () => runDirect({ model: directModel, sequence: directSequence, promptTokens }),
      },
      {
        label: "HTTP API (openai client, streaming)",
        run: () => runThroughClient({ client, kind: "openai", url: server.url, model: info.name }),
      },
      {
        label: "  ref: engine.generate, in-process",
        run: () => runEngine({ engine, modelHash: info.hash, promptTokens }),
      },
      {
        label: "  ref: HTTP API, node:http client",
        run: () => runThroughClient({ client, kind: "node-http", url: server.url, model: info.name }),
      },
    ];
    const samples = new Map(variants.map((variant) => [variant, [] as Sample[]]));
    const texts = new Set<string>();
    for (const variant of variants) texts.add((await variant.run()).text);
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? variants : [...variants].reverse();
      for (const variant of order) {
        const sample = await variant.run();
        samples.get(variant)?.push(sample);
        texts.add(sample.text);
      }
    }
    const summaries = variants.map((variant) => summarizeSamples(samples.get(variant) ?? []));

    console.log(
      formatTable(
        ["path", "first token (ms)", "tokens/s", "completion tokens", "total (ms)"],
        summaries.map((figures, index) => [
          variants[index]?.label ?? "",
          figures.firstTokenMs.toFixed(1),
          figures.tokensPerSecond.toFixed(1),
          String(figures.completionTokens),
          figures.totalMs.toFixed(0),
        ]),
      ),
    );
    console.log(
      `(medians of ${rounds} rounds; same greedy text on every path: ${texts.size === 1 ? "yes" : "NO"})\n`,
    );

    const concurrentRows: string[][] = [];
    let singleStream: number | undefined;
    for (const count of concurrencyLevels) {
      const runs = [];
      for (let repeat = 0; repeat < concurrencyRepeats; repeat++)
        runs.push(await runConcurrent({ client, url: server.url, model: info.name, count }));
      const aggregate = median(runs.map((run) => run.tokensPerSecond));
      singleStream ??= aggregate;
      concurrentRows.push([
        String(count),
        aggregate.toFixed(1),
        (aggregate / singleStream).toFixed(2),
        String(median(runs.map((run) => run.tokens))),
        median(runs.map((run) => run.wallMs)).toFixed(0),
      ]);
    }
    console.log(
      formatTable(
        ["concurrent streams", "aggregate tokens/s", "x 1 stream", "tokens", "wall (ms)"],
        concurrentRows,
      ),
    );
    console.log(
      `(API with the openai client, max_tokens ${concurrentMaxTokens} per stream, ` +
        `medians of ${concurrencyRepeats} runs per level)\n`,
    );

    const otherCpu = cpuWatch.stop();
    console.log(
      `other processes used ${(otherCpu * 100).toFixed(0)}% of the machine's CPU during the measurements` +
        (otherCpu > 0.05 ? ": the figures are noisier than on an idle machine\n" : "\n"),
    );

    const [direct, api, engineOnly, nodeHttp] = summaries as [Summary, Summary, Summary, Summary];
    const throughputRatio = api.tokensPerSecond / direct.tokensPerSecond;
    const firstTokenOverheadMs = api.firstTokenMs - direct.firstTokenMs;
    const signed = (value: number) => `${value >= 0 ? "+" : ""}${value.toFixed(1)} ms`;
    const scaling = concurrentRows.map((cells) => `${cells[0]}: ${cells[2]}x`).join(", ");
    console.log("ratios");
    console.log(`  tokens/s, API / direct:                  ${throughputRatio.toFixed(3)}`);
    console.log(
      `  tokens/s, engine / direct:               ${(engineOnly.tokensPerSecond / direct.tokensPerSecond).toFixed(3)}`,
    );
    console.log(
      `  tokens/s, node:http API / direct:        ${(nodeHttp.tokensPerSecond / direct.tokensPerSecond).toFixed(3)}`,
    );
    console.log(
      `  first token, API / direct:               ${(api.firstTokenMs / direct.firstTokenMs).toFixed(3)}`,
    );
    console.log(
      `  first-token overhead split:              engine ${signed(engineOnly.firstTokenMs - direct.firstTokenMs)}, ` +
        `HTTP ${signed(nodeHttp.firstTokenMs - engineOnly.firstTokenMs)}, ` +
        `openai client ${signed(api.firstTokenMs - nodeHttp.firstTokenMs)}`,
    );
    console.log(`  aggregate vs 1 stream (API):             ${scaling}\n`);

    console.log(
      `throughput ratio (API / direct): ${roundDown(throughputRatio, 2).toFixed(2)} ` +
        `(target >= ${targets.throughputRatio}) ${verdict(throughputRatio >= targets.throughputRatio)}`,
    );
    console.log(
      `first-token overhead (API - direct): ${roundUp(firstTokenOverheadMs, 1).toFixed(1)} ms ` +
        `(target <= ${targets.firstTokenOverheadMs} ms) ${verdict(firstTokenOverheadMs <= targets.firstTokenOverheadMs)}`,
    );
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch((error) => console.error(error));
    await rm(home, { recursive: true, force: true });
  }
}

await main();
