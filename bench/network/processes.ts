/**
 * Real `mycel` processes for bench/network: spawned with `node bin/mycel.js`, their output kept (not printed)
 * for error reports, and every one of them killed when the bench ends, whichever way it ends.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { appendFileSync, readdirSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { machineBusyMs } from "../shared/report.ts";

const mycelBin = join(resolve(import.meta.dirname, "..", ".."), "bin", "mycel.js");
/** Output lines kept per process, for the error report when one fails. */
const keptLines = Number(process.env.MYCEL_BENCH_KEPT_LINES ?? 40);
/** Longest wait for a process to print its ready line. */
const defaultReadyTimeoutMs = 90_000;

/** A running `mycel` process. */
export type MycelProcess = {
  name: string;
  child: ChildProcess;
  /** performance.now() when it was spawned, and when it printed its ready line. */
  spawnedAt: number;
  readyAt: number | undefined;
  /** The ready line's payload: MYCEL_READY's JSON, or `{ url }` for `mycel serve`. */
  ready: Promise<Record<string, unknown>>;
  /** Its last output lines (stdout and stderr). */
  tail(): string;
  alive(): boolean;
};

const running = new Set<MycelProcess>();

function isAlive(child: ChildProcess) {
  return child.exitCode === null && child.signalCode === null;
}

const exitCleanups: (() => void)[] = [];

/** Registers synchronous cleanup (e.g. removing the temporary MYCEL_HOME) for an abrupt exit. */
export function onAbruptExit(cleanup: () => void) {
  installExitHandlers();
  exitCleanups.push(cleanup);
}

/** Kills every process still running, at once (SIGKILL), then runs the registered cleanups: used on exit, where
 * nothing can be awaited. */
function killAllNow() {
  for (const entry of running) if (isAlive(entry.child)) entry.child.kill("SIGKILL");
  for (const cleanup of exitCleanups.splice(0)) {
    try {
      cleanup();
    } catch {
      // Best effort: the process is exiting.
    }
  }
}

let handlersInstalled = false;
/** Kills the children however the bench ends: normal exit, an uncaught error, Ctrl-C or SIGTERM. */
function installExitHandlers() {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on("exit", killAllNow);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
    process.once(signal, () => {
      killAllNow();
      process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1));
    });
}

/**
 * Spawns `node bin/mycel.js --home <home> <args>` (or `node <nodeArgs>`, a bench helper that prints MYCEL_READY),
 * inside a network namespace with `ip netns exec` (which execs it) when `namespace` is given. Provider and gateway
 * processes also get MYCEL_EXIT_WITH_PARENT=1 and a stdin pipe, so they exit by themselves if the bench is killed
 * outright.
 */
export function spawnMycel(parameters: {
  name: string;
  home: string;
  args: string[];
  env?: Record<string, string>;
  nodeArgs?: string[];
  /** Longest wait for its ready line (default 90 s). */
  readyTimeoutMs?: number;
  namespace?: string;
}): MycelProcess {
  const readyTimeoutMs = parameters.readyTimeoutMs ?? defaultReadyTimeoutMs;
  installExitHandlers();
  const command = [
    process.execPath,
    ...(parameters.nodeArgs ?? [mycelBin, "--home", parameters.home, ...parameters.args]),
  ];
  if (parameters.namespace) command.unshift("ip", "netns", "exec", parameters.namespace);
  const child = spawn(command[0] as string, command.slice(1), {
    env: { ...process.env, MYCEL_HOME: parameters.home, MYCEL_EXIT_WITH_PARENT: "1", ...parameters.env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const spawnedAt = performance.now();
  // MYCEL_BENCH_LOG_DIR=<dir>: every output line also goes to <dir>/<name>.log, behind ms since the spawn.
  const logDir = process.env.MYCEL_BENCH_LOG_DIR;
  const logFile = logDir && join(logDir, `${parameters.name.replace(/[^\w.-]+/g, "_")}.log`);
  const keep = (line: string) => {
    lines.push(line);
    if (lines.length > keptLines) lines.shift();
    if (logFile)
      appendFileSync(logFile, `${(performance.now() - spawnedAt).toFixed(0).padStart(6)} ${line}\n`);
  };
  const entry: MycelProcess = {
    name: parameters.name,
    child,
    spawnedAt,
    readyAt: undefined,
    ready: Promise.resolve({}),
    tail: () => lines.join("\n"),
    alive: () => isAlive(child),
  };
  entry.ready = new Promise<Record<string, unknown>>((resolveReady, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${parameters.name} printed no ready line in ${readyTimeoutMs / 1000} s`)),
      readyTimeoutMs,
    );
    timer.unref();
    const settle = (payload: Record<string, unknown>) => {
      entry.readyAt ??= performance.now();
      clearTimeout(timer);
      resolveReady(payload);
    };
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      keep(line);
      if (line.startsWith("MYCEL_READY ")) settle(JSON.parse(line.slice("MYCEL_READY ".length)));
      const served = /OpenAI-compatible endpoint: (http:\/\/\S+)\/v1/.exec(line);
      // `mycel serve` and `mycel devnet` print no MYCEL_READY line; their endpoint line says they listen.
      if (served?.[1] && (parameters.args.includes("serve") || parameters.args.includes("devnet")))
        settle({ url: served[1] });
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${parameters.name} exited (${signal ?? code}) before it was ready`));
    });
    child.on("error", reject);
  });
  entry.ready.catch(() => undefined);
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", keep);
  // Writes to a dead child's stdin must not crash the bench.
  child.stdin?.on("error", () => undefined);
  running.add(entry);
  child.on("exit", () => running.delete(entry));
  return entry;
}

/** Waits for a process's ready line, adding its last output lines to the error if it fails. */
export async function whenReady(entry: MycelProcess): Promise<Record<string, unknown>> {
  try {
    return await entry.ready;
  } catch (error) {
    throw new Error(
      `${error instanceof Error ? error.message : String(error)}\n--- last output of ${entry.name} ---\n${entry.tail()}`,
    );
  }
}

/** Stops processes: SIGTERM, then SIGKILL for any still running after `graceMs`. Resolves when all exited. */
export async function stopProcesses(entries: readonly MycelProcess[], graceMs = 2_000): Promise<void> {
  await Promise.all(
    entries.map(
      (entry) =>
        new Promise<void>((resolveStop) => {
          if (!entry.alive()) return resolveStop();
          const kill = setTimeout(() => entry.child.kill("SIGKILL"), graceMs);
          entry.child.once("exit", () => {
            clearTimeout(kill);
            resolveStop();
          });
          entry.child.kill(graceMs === 0 ? "SIGKILL" : "SIGTERM");
        }),
    ),
  );
}

/** Stops every process this module started that is still running. */
export function stopAll(graceMs = 2_000): Promise<void> {
  return stopProcesses([...running], graceMs);
}

/** Resident memory of a process in MB, from /proc (undefined where there is no /proc). */
export function residentMb(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match?.[1] ? Number(match[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU time (ms, user + system) a process has used so far, from /proc; undefined once it is gone. */
export function processCpuMs(pid: number): number | undefined {
  try {
    // The fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // The kernel's USER_HZ is 100 on every Linux build in use.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/** CPU time of all cores (ms) spent outside idle, from the kernel's counters. */

/** The given processes and all their descendants, from /proc (just the given ones where there is no /proc). */
export function withDescendants(roots: readonly number[]): number[] {
  const children = new Map<number, number[]>();
  let entries: string[] = [];
  try {
    entries = readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  } catch {
    return [...roots];
  }
  for (const name of entries) {
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(parent, [...(children.get(parent) ?? []), Number(name)]);
    } catch {
      // The process ended meanwhile.
    }
  }
  const found = new Set<number>();
  const visit = (pid: number) => {
    if (found.has(pid)) return;
    found.add(pid);
    for (const child of children.get(pid) ?? []) visit(child);
  };
  for (const root of roots) visit(root);
  return [...found];
}

/**
 * Starts watching the machine; `stop()` returns the share of all cores' time used by processes other than the
 * bench, its `mycel` children and theirs. Call `sample()` just before killing a child, so that its time is kept.
 */
export function watchOtherProcessesCpu() {
  const started = performance.now();
  const busyAtStart = machineBusyMs();
  const baseline = new Map<number, number>();
  const latest = new Map<number, number>();
  // The bench, its children, and their children (a devnet's providers, validator and anvil).
  const pids = () =>
    withDescendants([
      process.pid,
      ...[...running].flatMap((entry) => (entry.child.pid === undefined ? [] : [entry.child.pid])),
    ]);
  for (const pid of pids()) {
    const used = processCpuMs(pid);
    if (used !== undefined) baseline.set(pid, used);
  }
  const sample = () => {
    for (const pid of pids()) {
      const used = processCpuMs(pid);
      if (used !== undefined) latest.set(pid, used);
    }
  };
  return {
    sample,
    /** The other processes' share of the machine (0..1), or undefined where /proc cannot be read. */
    stop(): number | undefined {
      sample();
      if (latest.size === 0) return undefined;
      let ownMs = 0;
      for (const [pid, used] of latest) ownMs += used - (baseline.get(pid) ?? 0);
      const otherMs = machineBusyMs() - busyAtStart - ownMs;
      return Math.max(0, otherMs / ((performance.now() - started) * cpus().length));
    },
  };
}
