/** Shared test helpers: temporary MYCEL_HOME folders and real `mycel` processes. */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

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

/** A running `mycel serve` (or `demo`) process, with its API base URL. */
export type ServeProcess = {
  url: string;
  child: ChildProcess;
  output: () => string;
  stop: () => Promise<number | null>;
};

/** Starts `mycel <args>` and resolves when it prints its endpoint; rejects if it exits or takes over 30 s. */
export function startMycelServer(
  args: string[],
  options: { home: string; env?: Record<string, string> },
): Promise<ServeProcess> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [mycelBin, ...args], {
      env: { ...process.env, MYCEL_HOME: options.home, MYCEL_LOG_LEVEL: "info", ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    let settled = false;
    const exited = new Promise<number | null>((resolveExit) =>
      child.on("close", (code) => resolveExit(code)),
    );
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      return exited;
    };
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill("SIGKILL");
      reject(new Error(`mycel ${args.join(" ")} did not start in 30 s:\n${output}`));
    }, 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /OpenAI-compatible endpoint: (http:\/\/\S+)\/v1/.exec(output);
      if (match?.[1] && !settled) {
        settled = true;
        clearTimeout(timer);
        resolvePromise({ url: match[1], child, output: () => output, stop });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("close", (code) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`mycel ${args.join(" ")} exited with ${code}:\n${output}`));
    });
  });
}

/** A running role process (provider, gateway, fixture) that printed its `MYCEL_READY {...}` line. */
export type RoleProcess = {
  child: ChildProcess;
  ready: Record<string, unknown> & { peerId: string; multiaddrs?: string[]; url?: string; address?: string };
  output: () => string;
  stop: () => Promise<void>;
};

/** Starts `node <args>` and resolves with its MYCEL_READY fields; rejects if it exits or takes over 60 s. */
export function startRole(
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<RoleProcess> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, {
      env: { ...process.env, MYCEL_LOG_LEVEL: "info", MYCEL_EXIT_WITH_PARENT: "1", ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let output = "";
    let settled = false;
    const exited = new Promise<void>((resolveExit) => child.on("close", () => resolveExit()));
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    };
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill("SIGKILL");
      reject(new Error(`${args.join(" ")} was not ready in time:\n${output}`));
    }, options.timeoutMs ?? 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /^MYCEL_READY (.+)$/m.exec(output);
      if (match?.[1] && !settled) {
        settled = true;
        clearTimeout(timer);
        resolvePromise({ child, ready: JSON.parse(match[1]), output: () => output, stop });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("close", (code) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`${args.join(" ")} exited with ${code}:\n${output}`));
    });
  });
}
