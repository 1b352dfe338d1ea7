/**
 * Embeddings benchmark: inputs/s of `/v1/embeddings` through gateway -> libp2p -> provider vs the same model from
 * `mycel serve`, real processes on 127.0.0.1. Each round measures both paths back to back (order alternating), and
 * the target is the median of the rounds' ratios, so that a machine whose speed drifts between rounds (a shared
 * VM's does by 10-20%) is compared with itself. Each request carries `inputsPerRequest` inputs of about
 * `wordsPerInput` words (the small test model, 1 thread each side), and a second table sends one input of one
 * word to show the fixed cost per request. The provider is free here (no chain): what is measured is routing,
 * the wire and the receipt over the vectors. Run with `npm run bench:embeddings` (see bench/embeddings/README.md).
 */
import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createKeystore, devPrivateKey } from "../../src/identity/index.ts";
import {
  onAbruptExit,
  spawnMycel,
  stopAll,
  watchOtherProcessesCpu,
  whenReady,
} from "../network/processes.ts";
import { formatTable, median, roundDown, verdict } from "../shared/report.ts";
import { addTestModel } from "../shared/testModels.ts";

const rounds = 11;
const target = 0.9;
const password = "mycel-bench-embeddings";
const childEnv = { MYCEL_PASSWORD: password, MYCEL_LOG_LEVEL: "warn" };
const words = "mycelium spreads beneath the forest floor joining roots and trading sugar for water".split(
  " ",
);

/** What one round sends down each path: `requests` requests one after another, of `inputs` inputs of `words` words. */
type Shape = { name: string; requests: number; inputs: number; words: number };
/** The target's shape: requests with several inputs of a sentence each, as a retrieval app sends them. */
const typical: Shape = { name: "8 inputs x 8 words", requests: 2, inputs: 8, words: 8 };
/** The fixed cost per request: one input of one word, where the model's work is almost nothing. */
const tiny: Shape = { name: "1 input x 1 word", requests: 10, inputs: 1, words: 1 };

/** The inputs of request `index`: different texts each time (nothing is cached anywhere, but be sure). */
function inputsOf(shape: Shape, index: number): string[] {
  return Array.from({ length: shape.inputs }, (_, input) =>
    Array.from(
      { length: shape.words },
      (_, word) => words[(index * 7 + input * 3 + word) % words.length],
    ).join(" "),
  );
}

/** Sends one round of `shape` to `url`; returns inputs/s and ms per request. */
async function measure(parameters: { url: string; model: string; shape: Shape; round: number }) {
  const { url, model, shape } = parameters;
  const started = performance.now();
  for (let index = 0; index < shape.requests; index++) {
    const response = await fetch(`${url}/v1/embeddings`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model, input: inputsOf(shape, parameters.round * shape.requests + index) }),
    });
    const body = (await response.json()) as { data?: unknown[]; error?: { message: string } };
    if (!response.ok || body.data?.length !== shape.inputs)
      throw new Error(
        `${url} answered ${response.status}: ${body.error?.message ?? "wrong number of vectors"}`,
      );
  }
  const ms = performance.now() - started;
  return {
    inputsPerSecond: (shape.requests * shape.inputs) / (ms / 1000),
    msPerRequest: ms / shape.requests,
  };
}

/** Rounds of `shape` on both paths, back to back in alternating order; medians per path and of the rounds' ratios. */
async function compare(parameters: { serveUrl: string; gatewayUrl: string; model: string; shape: Shape }) {
  const { shape } = parameters;
  const ms = { serve: [] as number[], gateway: [] as number[] };
  const ratios: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? (["serve", "gateway"] as const) : (["gateway", "serve"] as const);
    const speed = { serve: 0, gateway: 0 };
    for (const path of order) {
      const url = path === "serve" ? parameters.serveUrl : parameters.gatewayUrl;
      const result = await measure({ url, model: parameters.model, shape, round });
      speed[path] = result.inputsPerSecond;
      ms[path].push(result.msPerRequest);
    }
    ratios.push(speed.gateway / speed.serve);
  }
  const serveMs = median(ms.serve);
  const gatewayMs = median(ms.gateway);
  return {
    row: [
      shape.name,
      ((shape.inputs * 1000) / serveMs).toFixed(1),
      ((shape.inputs * 1000) / gatewayMs).toFixed(1),
      serveMs.toFixed(1),
      gatewayMs.toFixed(1),
      (gatewayMs - serveMs).toFixed(1),
      `${roundDown(median(ratios), 2).toFixed(2)} (${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`,
    ],
    ratio: median(ratios),
  };
}

async function main() {
  const home = await mkdtemp(join(tmpdir(), "mycel-bench-embeddings-"));
  onAbruptExit(() => rmSync(home, { recursive: true, force: true }));
  try {
    const { model, made } = await addTestModel({ home, size: "small", source: "bench/embeddings" });
    for (const name of ["provider", "gateway"])
      await createKeystore({ home, name, password, privateKey: devPrivateKey(`bench-embeddings:${name}`) });
    const one = ["--parallelism", "1", "--threads", "1"];
    const provider = spawnMycel({
      name: "provider",
      home,
      env: childEnv,
      args: ["provider", "--key", "provider", "--model", model.hash, ...one],
    });
    const local = spawnMycel({
      name: "serve",
      home,
      env: childEnv,
      args: ["serve", "--model", model.hash, "--port", "0", ...one],
    });
    const seed = ((await whenReady(provider)).multiaddrs as string[])[0];
    if (!seed) throw new Error("the provider printed no multiaddr");
    const gateway = spawnMycel({
      name: "gateway",
      home,
      env: childEnv,
      args: ["gateway", "--key", "gateway", "--port", "0", "--bootstrap", seed],
    });
    const localUrl = (await whenReady(local)).url as string;
    const gatewayUrl = (await whenReady(gateway)).url as string;
    const deadline = Date.now() + 30_000;
    for (;;) {
      const listed = (await (await fetch(`${gatewayUrl}/v1/models`)).json()) as { data: unknown[] };
      if (listed.data.length > 0) break;
      if (Date.now() > deadline) throw new Error("the gateway lists no model after 30 s");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // Warm-up: the embedding contexts are made on first use, and the gateway's stream to the provider opened.
    for (const url of [localUrl, gatewayUrl])
      for (const shape of [typical, tiny]) await measure({ url, model: made.name, shape, round: 1000 });
    const otherCpu = watchOtherProcessesCpu();
    const paths = { serveUrl: localUrl, gatewayUrl, model: made.name };
    const measured = await compare({ ...paths, shape: typical });
    const fixed = await compare({ ...paths, shape: tiny });
    const share = otherCpu.stop();
    console.log(
      `embeddings: ${rounds} rounds, each both paths back to back, model ${made.name}, 1 sequence x 1 thread ` +
        "each side, every process on 127.0.0.1\n",
    );
    console.log(
      formatTable(
        [
          "request",
          "serve inputs/s",
          "gateway inputs/s",
          "serve ms/request",
          "gateway ms/request",
          "gateway adds ms",
          "gateway/serve per round (median, range)",
        ],
        [measured.row, fixed.row],
      ),
    );
    console.log(
      share === undefined
        ? "\nother processes' CPU: unknown (no /proc)\n"
        : `\nother processes used ${(share * 100).toFixed(0)}% of the machine's CPU meanwhile\n`,
    );
    console.log(
      `embeddings via gateway / serve inputs/s (${typical.name}): ${roundDown(measured.ratio, 2).toFixed(2)} ` +
        `(target >= ${target}) ${verdict(measured.ratio >= target)}`,
    );
  } finally {
    await stopAll();
    await rm(home, { recursive: true, force: true });
  }
}

await main();
