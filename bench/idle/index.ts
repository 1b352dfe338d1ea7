/**
 * Idle benchmark: the CPU a devnet's parts use when nobody sends requests. It starts `mycel devnet` (anvil, the
 * providers and a validator in processes of their own, the gateway in the devnet process), lets it settle, then
 * reads each process's CPU time (user + system, from /proc) over a window that holds several challenge intervals
 * and epoch-loop ticks. Target: the validator under 1% of one core. Run with `npm run bench:idle`; see
 * bench/idle/README.md.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { roleDefaults } from "../../src/config/index.ts";
import {
  onAbruptExit,
  processCpuMs,
  spawnMycel,
  stopAll,
  watchOtherProcessesCpu,
  whenReady,
  withDescendants,
} from "../network/processes.ts";
import { formatTable, roundUp, verdict } from "../shared/report.ts";
import { addTestModel } from "../shared/testModels.ts";

/** Seconds of CPU sampling (MYCEL_BENCH_IDLE_SECONDS; default 120: two challenges and twelve epoch ticks). */
const windowSeconds = Number(process.env.MYCEL_BENCH_IDLE_SECONDS ?? 120);
/**
 * Seconds between the devnet's ready line and the window (MYCEL_BENCH_IDLE_SETTLE_SECONDS; default 75): past the first
 * challenge, which also loads the model for audits (once), so that the window shows the validator at rest.
 */
const settleSeconds = Number(process.env.MYCEL_BENCH_IDLE_SETTLE_SECONDS ?? 75);
/** Providers of the devnet (MYCEL_BENCH_IDLE_PROVIDERS; default 1). */
const providers = Number(process.env.MYCEL_BENCH_IDLE_PROVIDERS ?? 1);
/** Readings of every process's CPU time during the window, for the busiest stretch of the validator. */
const readingsPerWindow = 12;
const targets = { validatorCorePercent: 1 };

for (const [name, value, lowest] of [
  ["MYCEL_BENCH_IDLE_SECONDS", windowSeconds, 5],
  ["MYCEL_BENCH_IDLE_SETTLE_SECONDS", settleSeconds, 0],
  ["MYCEL_BENCH_IDLE_PROVIDERS", providers, 1],
] as const)
  if (!Number.isFinite(value) || value < lowest)
    throw new Error(`${name}: expected a number of at least ${lowest}, got ${value}`);

const roles = ["validator", "provider", "gateway", "anvil"] as const;
type Role = (typeof roles)[number];

/** Which part of the devnet a process is: the gateway (the devnet process itself), a provider, the validator, anvil. */
function roleOf(pid: number, devnetPid: number): Role | undefined {
  if (pid === devnetPid) return "gateway";
  let command = "";
  try {
    command = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return undefined;
  }
  if (/\banvil\b/.test(command)) return "anvil";
  if (/ provider /.test(command)) return "provider";
  if (/ validator /.test(command)) return "validator";
  return undefined;
}

/** CPU time (ms) each process of the devnet has used so far, by pid. */
function readCpu(devnetPid: number): Map<number, { role: Role; cpuMs: number }> {
  const read = new Map<number, { role: Role; cpuMs: number }>();
  for (const pid of withDescendants([devnetPid])) {
    const role = roleOf(pid, devnetPid);
    const cpuMs = processCpuMs(pid);
    if (role && cpuMs !== undefined) read.set(pid, { role, cpuMs });
  }
  return read;
}

/** CPU time each role used between two readings (processes in both), and how many processes it has. */
function usedBetween(
  before: Map<number, { role: Role; cpuMs: number }>,
  after: Map<number, { role: Role; cpuMs: number }>,
) {
  const used = new Map<Role, { cpuMs: number; processes: number }>();
  for (const [pid, { role, cpuMs }] of after) {
    const start = before.get(pid);
    if (!start) continue;
    const entry = used.get(role) ?? { cpuMs: 0, processes: 0 };
    used.set(role, { cpuMs: entry.cpuMs + cpuMs - start.cpuMs, processes: entry.processes + 1 });
  }
  return used;
}

/** The first lines of `top`, for the report of how loaded the machine was (empty where there is no top). */
function machineLoad(): string {
  try {
    return execFileSync("top", ["-bn1"], { encoding: "utf8" }).split("\n").slice(0, 5).join("\n");
  } catch {
    return "";
  }
}

async function main() {
  const runStarted = performance.now();
  const home = await mkdtemp(join(tmpdir(), "mycel-bench-idle-"));
  onAbruptExit(() => rmSync(home, { recursive: true, force: true }));
  try {
    const { model, made } = await addTestModel({ home, size: "small", source: "bench/idle" });
    const devnet = spawnMycel({
      name: "devnet",
      home,
      env: {
        MYCEL_LOG_LEVEL: process.env.MYCEL_LOG_LEVEL ?? "warn",
      },
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
    await whenReady(devnet);
    const devnetPid = devnet.child.pid ?? -1;
    console.log(
      `setup: ${((performance.now() - runStarted) / 1000).toFixed(1)} s; model ${model.name} ` +
        `(${(made.parameterCount / 1e6).toFixed(1)}M params, ${made.quant}); mycel devnet with ${providers} ` +
        `provider(s), its validator challenging every ${roleDefaults.challengeIntervalSeconds} s and checking the ` +
        `chain every ${roleDefaults.epochCheckSeconds} s (the defaults); no requests sent. Settling ${settleSeconds} s, ` +
        `then measuring ${windowSeconds} s.\n`,
    );
    await new Promise((resolve) => setTimeout(resolve, settleSeconds * 1000));
    const load = machineLoad();
    const otherCpu = watchOtherProcessesCpu();
    const readings = [{ at: performance.now(), cpu: readCpu(devnetPid) }];
    for (let index = 1; index <= readingsPerWindow; index++) {
      await new Promise((resolve) => setTimeout(resolve, (windowSeconds * 1000) / readingsPerWindow));
      if (!devnet.alive()) throw new Error(`the devnet exited during the window\n${devnet.tail()}`);
      readings.push({ at: performance.now(), cpu: readCpu(devnetPid) });
    }
    const others = otherCpu.stop();
    const first = readings[0] as (typeof readings)[number];
    const last = readings[readings.length - 1] as (typeof readings)[number];
    const wallMs = last.at - first.at;
    const used = usedBetween(first.cpu, last.cpu);
    const percentOfCore = (cpuMs: number, ms: number) => (cpuMs / ms) * 100;
    // The busiest of the readings' stretches (a challenge, a commit), per role: where the CPU went in bursts.
    const busiest = new Map<Role, number>();
    for (let index = 1; index < readings.length; index++) {
      const from = readings[index - 1] as (typeof readings)[number];
      const to = readings[index] as (typeof readings)[number];
      for (const [role, { cpuMs }] of usedBetween(from.cpu, to.cpu))
        busiest.set(role, Math.max(busiest.get(role) ?? 0, percentOfCore(cpuMs, to.at - from.at)));
    }
    console.log(
      formatTable(
        ["part", "processes", "CPU ms", "% of one core", "busiest stretch %"],
        roles.map((role) => {
          const entry = used.get(role) ?? { cpuMs: 0, processes: 0 };
          return [
            role === "gateway" ? "gateway (the devnet process)" : role,
            String(entry.processes),
            entry.cpuMs.toFixed(0),
            roundUp(percentOfCore(entry.cpuMs, wallMs), 2).toFixed(2),
            roundUp(busiest.get(role) ?? 0, 1).toFixed(1),
          ];
        }),
      ),
    );
    console.log(
      `(CPU time, user + system, from /proc over ${(wallMs / 1000).toFixed(0)} s with no requests; the kernel counts ` +
        `it in 10 ms ticks; "busiest stretch" is the highest of ${readingsPerWindow} equal stretches of the window; ` +
        `processes other than the bench's used ${others === undefined ? "?" : (others * 100).toFixed(0)}% of the machine)`,
    );
    if (load) console.log(`machine at the window's start:\n${load}\n`);
    const validatorPercent = percentOfCore(used.get("validator")?.cpuMs ?? Number.NaN, wallMs);
    console.log(
      `validator CPU at rest: ${roundUp(validatorPercent, 2).toFixed(2)}% of one core (target <= ${targets.validatorCorePercent}%) ` +
        verdict(validatorPercent <= targets.validatorCorePercent),
    );
  } finally {
    await stopAll(5_000);
    await rm(home, { recursive: true, force: true });
    process.stderr.write(`runtime: ${((performance.now() - runStarted) / 1000).toFixed(1)} s\n`);
  }
}

await main();
