/** Shared test helpers: temporary MYCEL_HOME folders and real `mycel` processes. */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { AuditVerdict } from "../src/verify/index.ts";

export const repositoryRoot = resolve(import.meta.dirname, "..");
export const mycelBin = join(repositoryRoot, "bin", "mycel.js");

/** A fresh MYCEL_HOME; remove it with the returned function. */
export async function temporaryHome(prefix = "mycel-test-") {
  const home = await mkdtemp(join(tmpdir(), prefix));
  return { home, remove: () => rm(home, { recursive: true, force: true }) };
}

/** Runs `mycel <args>` to completion and returns its exit code and output. */
export function runMycel(args: string[], options: { home: string; env?: Record<string, string> }) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolvePromise, reject) => {
    const child = spawn(process.execPath, [mycelBin, ...args], {
      env: { ...process.env, MYCEL_HOME: options.home, MYCEL_LOG_LEVEL: "info", ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/** Runs `mycel audit --input <path> --threads 1` and parses the verdict it prints (undefined when it printed none). */
export async function runMycelAudit(path: string, options: { home: string }) {
  const run = await runMycel(["audit", "--input", path, "--threads", "1"], options);
  let verdict: AuditVerdict | undefined;
  try {
    verdict = JSON.parse(run.stdout) as AuditVerdict;
  } catch {
    verdict = undefined;
  }
  return { ...run, verdict };
}

/** A process started by {@link startUntilReady}, with the line that said it was ready. */
type ReadyProcess = {
  child: ChildProcess;
  match: RegExpExecArray;
  output: () => string;
  /** Sends `signal` (if it still runs) and resolves with its exit code. */
  stop: (signal: NodeJS.Signals) => Promise<number | null>;
  waitForOutput: WaitForOutput;
};

/**
 * Resolves with the first match of `pattern` in the process's output from character `from` on (default 0: all of
 * it), as soon as that output arrives; rejects naming the pattern if the process exits or `timeoutMs` (default
 * 30 s) passes first.
 */
export type WaitForOutput = (
  pattern: RegExp,
  options?: { from?: number; timeoutMs?: number },
) => Promise<RegExpExecArray>;

/**
 * Starts `node <args>` and resolves once its output matches `ready`; rejects if it exits first or takes
 * longer than `timeoutMs` (then it is killed).
 */
function startUntilReady(parameters: {
  args: string[];
  env: Record<string, string | undefined>;
  ready: RegExp;
  timeoutMs: number;
}): Promise<ReadyProcess> {
  const command = parameters.args.join(" ");
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, parameters.args, {
      env: parameters.env,
      // stdin is a pipe: roles started with MYCEL_EXIT_WITH_PARENT exit when this process goes away.
      stdio: ["pipe", "pipe", "pipe"],
    });
    let output = "";
    let settled = false;
    let closed = false;
    /** Called after each chunk of output and once at exit (with `true`). */
    const watchers = new Set<(exited: boolean) => void>();
    const exited = new Promise<number | null>((resolveExit) =>
      child.on("close", (code) => {
        closed = true;
        for (const watch of watchers) watch(true);
        resolveExit(code);
      }),
    );
    const waitForOutput: WaitForOutput = (pattern, options = {}) =>
      new Promise((resolveMatch, rejectMatch) => {
        const timeoutMs = options.timeoutMs ?? 30_000;
        const watch = (exitedNow: boolean) => {
          const match = pattern.exec(output.slice(options.from ?? 0));
          if (!match && !exitedNow) return;
          watchers.delete(watch);
          clearTimeout(deadline);
          if (match) resolveMatch(match);
          else rejectMatch(new Error(`${command} exited before printing ${pattern}:\n${output}`));
        };
        const deadline = setTimeout(() => {
          watchers.delete(watch);
          rejectMatch(new Error(`${command} did not print ${pattern} within ${timeoutMs} ms:\n${output}`));
        }, timeoutMs);
        watchers.add(watch);
        watch(closed);
      });
    const stop = async (signal: NodeJS.Signals) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    };
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill("SIGKILL");
      reject(new Error(`${command} was not ready in ${parameters.timeoutMs} ms:\n${output}`));
    }, parameters.timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      for (const watch of watchers) watch(false);
      const match = parameters.ready.exec(output);
      if (match && !settled) {
        settled = true;
        clearTimeout(timer);
        resolvePromise({ child, match, output: () => output, stop, waitForOutput });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("close", (code) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`${command} exited with ${code}:\n${output}`));
    });
  });
}

/** A running `mycel serve`, `demo` or `devnet` process, with its API base URL. */
export type ServeProcess = {
  url: string;
  child: ChildProcess;
  output: () => string;
  /** Sends SIGTERM and resolves with the exit code. */
  stop: () => Promise<number | null>;
  waitForOutput: WaitForOutput;
};

/** Starts `mycel <args>` and resolves when it prints its endpoint (within `timeoutMs`, default 30 s). */
export async function startMycelServer(
  args: string[],
  options: { home: string; env?: Record<string, string>; timeoutMs?: number },
): Promise<ServeProcess> {
  const started = await startUntilReady({
    args: [mycelBin, ...args],
    env: { ...process.env, MYCEL_HOME: options.home, MYCEL_LOG_LEVEL: "info", ...options.env },
    ready: /OpenAI-compatible endpoint: (http:\/\/\S+)\/v1/,
    timeoutMs: options.timeoutMs ?? 30_000,
  });
  return {
    url: started.match[1] as string,
    child: started.child,
    output: started.output,
    stop: () => started.stop("SIGTERM"),
    waitForOutput: started.waitForOutput,
  };
}

/** A running role process (provider, gateway, fixture) that printed its `MYCEL_READY {...}` line. */
export type RoleProcess = {
  child: ChildProcess;
  ready: Record<string, unknown> & { peerId: string; multiaddrs?: string[]; url?: string; address?: string };
  output: () => string;
  /** Kills it (SIGKILL) and waits until it is gone. */
  stop: () => Promise<void>;
  waitForOutput: WaitForOutput;
};

/** Starts `node <args>` and resolves with its MYCEL_READY fields; rejects if it exits or takes over 60 s. */
export async function startRole(
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<RoleProcess> {
  const started = await startUntilReady({
    args,
    env: { ...process.env, MYCEL_LOG_LEVEL: "info", MYCEL_EXIT_WITH_PARENT: "1", ...options.env },
    ready: /^MYCEL_READY (.+)$/m,
    timeoutMs: options.timeoutMs ?? 60_000,
  });
  return {
    child: started.child,
    ready: JSON.parse(started.match[1] as string),
    output: started.output,
    stop: async () => {
      await started.stop("SIGKILL");
    },
    waitForOutput: started.waitForOutput,
  };
}

/**
 * The arguments of `node <args>` for a paying gateway in a test: key "gateway" of `home`, a free port, 1 token
 * deposited per channel within a budget of 10, bootstrapping through `bootstrap`, on the chain `chainArgs` name
 * (`--rpc-url`, `--deployments`). `allowUnstaked` when the test's providers are not staked on chain.
 */
export function paidGatewayArgs(parameters: {
  home: string;
  bootstrap: string;
  chainArgs: readonly string[];
  allowUnstaked?: boolean;
}): string[] {
  return [
    mycelBin,
    "--home",
    parameters.home,
    "gateway",
    "--key",
    "gateway",
    "--port",
    "0",
    "--deposit",
    "1",
    "--budget",
    "10",
    ...(parameters.allowUnstaked ? ["--allow-unstaked"] : []),
    "--bootstrap",
    parameters.bootstrap,
    ...parameters.chainArgs,
  ];
}

/** How {@link waitFor} polls: its deadline, how often it looks, and what it says about the last state on timeout. */
export type WaitForOptions = {
  /** Give up after this long (default 30 s). */
  timeoutMs?: number;
  /** Look again after this long (default 200 ms). */
  intervalMs?: number;
  /** Describes the state last seen, for the timeout error (what was there instead of what was awaited). */
  describe?: () => string | Promise<string>;
};

/**
 * Polls `check` until it returns a value (not undefined), and returns it; throws naming `what` after the deadline.
 * Only for states nothing announces (another process, a file, a chain): await an event where there is one.
 */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | Promise<T | undefined>,
  options: number | WaitForOptions = {},
): Promise<T> {
  const {
    timeoutMs = 30_000,
    intervalMs = 200,
    describe,
  } = typeof options === "number" ? { timeoutMs: options } : options;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
      last = undefined;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      const seen = describe ? await Promise.resolve(describe()).catch((error) => `(${error})`) : undefined;
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}${seen ? `\nlast seen: ${seen}` : ""}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * Resolves with what `promise` resolves to, or rejects naming `what` (a function: read when the time is up) if it
 * has not settled within `timeoutMs`.
 */
export async function withDeadline<T>(
  what: string | (() => string),
  promise: Promise<T>,
  timeoutMs = 30_000,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const awaited = typeof what === "function" ? what() : what;
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${awaited}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}
