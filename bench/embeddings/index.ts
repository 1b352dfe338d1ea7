/**
 * Embeddings benchmark: inputs/s of `/v1/embeddings` through gateway -> libp2p -> provider vs the same model from
 * `mycel serve`, real processes on 127.0.0.1, rounds interleaved so both paths see the same machine. Each request
 * carries `inputsPerRequest` inputs of about `wordsPerInput` words (the small test model, 1 thread each side). The
 * provider is free here (no chain): what is measured is routing, the wire and the receipt over the vectors.
 * Run with `npm run bench:embeddings`.
 */
import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createKeystore, devPrivateKey } from "../../src/identity/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import {
  onAbruptExit,
  spawnMycel,
  stopAll,
  watchOtherProcessesCpu,
  whenReady,
} from "../network/processes.ts";
import { formatTable, median, roundDown, verdict } from "../shared/report.ts";

const rounds = 5;
const requestsPerRound = 2;
const inputsPerRequest = 8;
const wordsPerInput = 8;
const target = 0.9;
const password = "mycel-bench-embeddings";
const childEnv = { MYCEL_PASSWORD: password, MYCEL_LOG_LEVEL: "warn" };
const words = "mycelium spreads beneath the forest floor joining roots and trading sugar for water".split(
  " ",
);

/** The inputs of request `index`: different texts each time (nothing is cached anywhere, but be sure). */
function inputsOf(index: number): string[] {
  return Array.from({ length: inputsPerRequest }, (_, input) =>
    Array.from(
      { length: wordsPerInput },
      (_, word) => words[(index * 7 + input * 3 + word) % words.length],
    ).join(" "),
  );
}

/** Sends `requestsPerRound` requests one after another; returns inputs/s and ms per request. */
async function measure(url: string, model: string, round: number) {
  const started = performance.now();
  for (let index = 0; index < requestsPerRound; index++) {
    const response = await fetch(`${url}/v1/embeddings`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model, input: inputsOf(round * requestsPerRound + index) }),
    });
    const body = (await response.json()) as { data?: unknown[]; error?: { message: string } };
    if (!response.ok || body.data?.length !== inputsPerRequest)
      throw new Error(
        `${url} answered ${response.status}: ${body.error?.message ?? "wrong number of vectors"}`,
      );
  }
  const ms = performance.now() - started;
  return {
    inputsPerSecond: (requestsPerRound * inputsPerRequest) / (ms / 1000),
    msPerRequest: ms / requestsPerRound,
  };
}

async function main() {
  const home = await mkdtemp(join(tmpdir(), "mycel-bench-embeddings-"));
  onAbruptExit(() => rmSync(home, { recursive: true, force: true }));
  try {
    const store = openModelStore({ home });
    const made = generateTestModel({ size: "small" });
    const { model } = await store.addBytes({
      bytes: made.bytes,
      name: made.name,
      source: "bench/embeddings",
    });
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
    await measure(localUrl, made.name, 1000);
    await measure(gatewayUrl, made.name, 1001);
    const otherCpu = watchOtherProcessesCpu();
    const samples = {
      serve: [] as number[],
      gateway: [] as number[],
      serveMs: [] as number[],
      gatewayMs: [] as number[],
    };
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? (["serve", "gateway"] as const) : (["gateway", "serve"] as const);
      for (const path of order) {
        const result = await measure(path === "serve" ? localUrl : gatewayUrl, made.name, round);
        samples[path].push(result.inputsPerSecond);
        samples[path === "serve" ? "serveMs" : "gatewayMs"].push(result.msPerRequest);
      }
    }
    const share = otherCpu.stop();
    const serve = median(samples.serve);
    const network = median(samples.gateway);
    console.log(
      `embeddings: ${rounds} rounds x ${requestsPerRound} requests x ${inputsPerRequest} inputs of ${wordsPerInput} ` +
        `words, model ${made.name}, 1 sequence x 1 thread each side, every process on 127.0.0.1\n`,
    );
    console.log(
      formatTable(
        ["path", "inputs/s (median)", "ms/request (median)"],
        [
          ["mycel serve", serve.toFixed(1), median(samples.serveMs).toFixed(1)],
          ["gateway -> provider", network.toFixed(1), median(samples.gatewayMs).toFixed(1)],
        ],
      ),
    );
    console.log(
      share === undefined
        ? "\nother processes' CPU: unknown (no /proc)\n"
        : `\nother processes used ${(share * 100).toFixed(0)}% of the machine's CPU meanwhile\n`,
    );
    const ratio = network / serve;
    console.log(
      `embeddings via gateway / serve inputs/s: ${roundDown(ratio, 2).toFixed(2)} (target >= ${target}) ${verdict(ratio >= target)}`,
    );
  } finally {
    await stopAll();
    await rm(home, { recursive: true, force: true });
  }
}

await main();
