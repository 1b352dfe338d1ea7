/**
 * Load benchmark: streaming chat at rising concurrency through a devnet gateway with 3 providers (real processes,
 * real anvil, payments and audits on), beside `mycel serve` of the same model at the same concurrency, in one run.
 * Prints errors, aggregate tokens/s and first-token times per concurrency, and the gateway's memory before and
 * after 500 requests. Run with `npm run bench:load`; see bench/load/README.md.
 */
import { readFileSync, rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { devnetAuditRate } from "../../src/node/devnet.ts";
import {
  type MycelProcess,
  onAbruptExit,
  processCpuMs,
  residentMb,
  spawnMycel,
  stopAll,
  watchOtherProcessesCpu,
  whenReady,
  withDescendants,
} from "../network/processes.ts";
import { formatTable, roundDown, verdict } from "../shared/report.ts";
import { type Sample, streamChat } from "../shared/streamChat.ts";
import { addTestModel } from "../shared/testModels.ts";

const concurrencies = [1, 4, 16, 64] as const;
/** Requests per concurrency level on each path: enough for every client to send at least two. */
const requestsAt = (concurrency: number) => Math.max(8, concurrency * 2);
const maxTokens = 128;
/** Requests through the gateway between the two memory readings. */
const memoryRequests = 500;
const memoryConcurrency = 16;
const providers = 3;
/** Sequences per provider (each of its own process). */
const providerParallelism = 1;
const targets = { errors: 0, throughputRatio: 0.85 };

type LevelResult = {
  samples: Sample[];
  errors: string[];
  wallMs: number;
};

/** Sends `requests` streams with `concurrency` clients at once; every failure is counted, none is retried. */
async function runLevel(parameters: {
  url: string;
  model: string;
  concurrency: number;
  requests: number;
}): Promise<LevelResult> {
  const samples: Sample[] = [];
  const errors: string[] = [];
  let next = 0;
  const started = performance.now();
  const client = async () => {
    while (next < parameters.requests) {
      next++;
      try {
        samples.push(await streamChat({ url: parameters.url, model: parameters.model, maxTokens }));
      } catch (error) {
        errors.push(error instanceof Error ? error.message : String(error));
      }
    }
  };
  await Promise.all(Array.from({ length: parameters.concurrency }, client));
  return { samples, errors, wallMs: performance.now() - started };
}

/** The part of a devnet a process is: the gateway (the devnet process itself), a provider, the validator or anvil. */
function roleOf(pid: number, devnetPid: number): string {
  if (pid === devnetPid) return "gateway";
  let command = "";
  try {
    command = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "other";
  }
  if (/\banvil\b/.test(command)) return "anvil";
  if (/ provider /.test(command)) return "providers";
  if (/ validator /.test(command)) return "validator";
  return "other";
}

const devnetRoles = ["gateway", "providers", "validator", "anvil", "other"] as const;

/** CPU time (ms) each part of the devnet has used so far. */
function devnetCpuMs(devnetPid: number): Map<string, number> {
  const used = new Map<string, number>(devnetRoles.map((role) => [role, 0]));
  for (const pid of withDescendants([devnetPid])) {
    const role = roleOf(pid, devnetPid);
    used.set(role, (used.get(role) ?? 0) + (processCpuMs(pid) ?? 0));
  }
  return used;
}

/** The value below which `share` of the sorted values lie (nearest rank). */
function percentile(values: readonly number[], share: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(share * sorted.length) - 1)] as number;
}

const tokensPerSecond = (result: LevelResult) =>
  result.samples.reduce((sum, sample) => sum + sample.completionTokens, 0) / (result.wallMs / 1000);

function describeErrors(result: LevelResult): string {
  if (result.errors.length === 0) return "";
  const counts = new Map<string, number>();
  for (const error of result.errors)
    counts.set(error.slice(0, 120), (counts.get(error.slice(0, 120)) ?? 0) + 1);
  return [...counts].map(([error, count]) => `${count} x ${error}`).join("; ");
}

async function main() {
  const runStarted = performance.now();
  const home = await mkdtemp(join(tmpdir(), "mycel-bench-load-"));
  onAbruptExit(() => rmSync(home, { recursive: true, force: true }));
  try {
    const { model, made } = await addTestModel({ home, size: "small", source: "bench/load" });
    const env = { MYCEL_LOG_LEVEL: "warn" };
    // One sequence per provider: the network's 3 sequences and serve's 2 (its default here) share the same cores.
    const devnet: MycelProcess = spawnMycel({
      name: "devnet",
      home,
      env: { ...env, MYCEL_PARALLELISM: String(providerParallelism) },
      args: [
        "devnet",
        "--providers",
        String(providers),
        "--model",
        model.hash,
        "--port",
        "0",
        "--rpc-port",
        "0",
      ],
    });
    const local: MycelProcess = spawnMycel({
      name: "serve",
      home,
      env,
      args: ["serve", "--model", model.hash, "--port", "0"],
    });
    const paths = [
      { label: "mycel serve", url: (await whenReady(local)).url as string },
      { label: `devnet gateway, ${providers} providers`, url: (await whenReady(devnet)).url as string },
    ];
    console.log(
      `setup: ${((performance.now() - runStarted) / 1000).toFixed(1)} s; model ${model.name} ` +
        `(${(made.parameterCount / 1e6).toFixed(1)}M params, ${made.quant}); max_tokens ${maxTokens}, greedy; ` +
        `every process on 127.0.0.1; serve with its default engine settings, the devnet's providers with ` +
        `${providerParallelism} sequence each (payments on, ${devnetAuditRate * 100}% of answers audited)\n`,
    );
    // Warm-up: every provider is tried (its channel opened) and serve's sequences are made, before measuring.
    for (const path of paths)
      await runLevel({ url: path.url, model: model.name, concurrency: providers, requests: providers * 2 });
    const memoryBefore = residentMb(devnet.child.pid);
    let gatewayRequests = 0;
    let gatewayErrors = 0;
    const cpuWatch = watchOtherProcessesCpu();
    const rows: string[][] = [];
    const cpuRows: string[][] = [];
    const devnetPid = devnet.child.pid ?? -1;
    const ratios: { concurrency: number; ratio: number; errors: number }[] = [];
    for (const [level, concurrency] of concurrencies.entries()) {
      const results: LevelResult[] = [];
      // The order alternates by level, so that neither path always runs on a warmer machine.
      const order = level % 2 === 0 ? [0, 1] : [1, 0];
      for (const index of order) {
        const path = paths[index] as (typeof paths)[number];
        const cpuBefore = index === 1 ? devnetCpuMs(devnetPid) : undefined;
        results[index] = await runLevel({
          url: path.url,
          model: model.name,
          concurrency,
          requests: requestsAt(concurrency),
        });
        if (cpuBefore) {
          const cpuAfter = devnetCpuMs(devnetPid);
          const tokens = (results[index] as LevelResult).samples.reduce(
            (sum, sample) => sum + sample.completionTokens,
            0,
          );
          cpuRows.push([
            String(concurrency),
            ...devnetRoles.map((role) =>
              (((cpuAfter.get(role) ?? 0) - (cpuBefore.get(role) ?? 0)) / (tokens / 1000)).toFixed(0),
            ),
          ]);
        }
      }
      const [serve, gateway] = results as [LevelResult, LevelResult];
      gatewayRequests += requestsAt(concurrency);
      gatewayErrors += gateway.errors.length;
      for (const [index, result] of [serve, gateway].entries()) {
        const firstTokens = result.samples.map((sample) => sample.firstTokenMs);
        rows.push([
          String(concurrency),
          paths[index]?.label ?? "",
          `${result.samples.length}/${requestsAt(concurrency)}`,
          String(result.errors.length),
          tokensPerSecond(result).toFixed(1),
          percentile(firstTokens, 0.5).toFixed(0),
          percentile(firstTokens, 0.99).toFixed(0),
        ]);
        if (result.errors.length > 0)
          console.log(`errors at ${concurrency}, ${paths[index]?.label}: ${describeErrors(result)}`);
      }
      ratios.push({
        concurrency,
        ratio: tokensPerSecond(gateway) / tokensPerSecond(serve),
        errors: serve.errors.length + gateway.errors.length,
      });
    }
    const otherCpu = cpuWatch.stop();
    console.log(
      formatTable(
        ["concurrency", "path", "answered", "errors", "tokens/s", "first token p50 (ms)", "p99 (ms)"],
        rows,
      ),
    );
    console.log(
      "(tokens/s: completion tokens of the level over its wall time; each client sends its next request when its " +
        `stream ends; processes other than the bench's used ${otherCpu === undefined ? "?" : (otherCpu * 100).toFixed(0)}% of the CPU)\n`,
    );
    console.log(
      formatTable(["concurrency", ...devnetRoles.map((role) => `${role} CPU ms / 1k tokens`)], cpuRows),
    );
    console.log(
      "(CPU time, user + system, each part of the devnet used during the gateway's level, per 1,000 completion " +
        "tokens; the gateway is the devnet process itself)\n",
    );
    const rest = memoryRequests - gatewayRequests;
    const soak = await runLevel({
      url: paths[1]?.url as string,
      model: model.name,
      concurrency: memoryConcurrency,
      requests: rest,
    });
    gatewayErrors += soak.errors.length;
    if (soak.errors.length > 0)
      console.log(`errors while reaching ${memoryRequests} requests: ${describeErrors(soak)}`);
    const memoryAfter = residentMb(devnet.child.pid);
    console.log(
      formatTable(
        ["gateway process (devnet)", "resident MB"],
        [
          [`after ${providers * 2} warm-up requests`, memoryBefore?.toFixed(0) ?? "-"],
          [`after ${memoryRequests} more requests`, memoryAfter?.toFixed(0) ?? "-"],
        ],
      ),
    );
    console.log(
      `(the last ${rest} at concurrency ${memoryConcurrency}, ${soak.errors.length} errors; the devnet process holds ` +
        "the gateway, its stores and the explorer; the providers and the validator are their own processes)\n",
    );
    for (const { concurrency, errors } of ratios)
      console.log(
        `errors at concurrency ${concurrency} (both paths): ${errors} (target <= ${targets.errors}) ${verdict(errors <= targets.errors)}`,
      );
    for (const { concurrency, ratio } of ratios)
      console.log(
        `tokens/s gateway / serve at concurrency ${concurrency}: ${roundDown(ratio, 2).toFixed(2)} ` +
          `(target >= ${targets.throughputRatio}) ${verdict(ratio >= targets.throughputRatio)}`,
      );
    console.log(
      `gateway memory growth over ${memoryRequests} requests: ${
        memoryBefore === undefined || memoryAfter === undefined
          ? "-"
          : (memoryAfter - memoryBefore).toFixed(0)
      } MB, ${gatewayErrors} errors (no target: information)`,
    );
  } finally {
    await stopAll(5_000);
    await rm(home, { recursive: true, force: true });
    process.stderr.write(`runtime: ${((performance.now() - runStarted) / 1000).toFixed(1)} s\n`);
  }
}

await main();
