/** The local chain: an anvil process from npm (@foundry-rs/anvil) on 127.0.0.1. */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import type { Logger } from "../log/index.ts";
import { ChainError } from "./errors.ts";

/** Parameters of {@link startAnvil}. */
export type StartAnvilParameters = {
  /** Address to listen on; 127.0.0.1 unless told otherwise. */
  host?: string;
  /** Port; 0 (the default) picks a free one. */
  port?: number;
  chainId?: number;
  /** Seconds between blocks; default: a block per transaction. */
  blockTimeSeconds?: number;
  /** Block gas limit (default anvil's 30M). */
  gasLimit?: bigint;
  logger?: Logger;
  /** How long to wait for anvil to listen. */
  timeoutMs?: number;
};

/** A running anvil. */
export type AnvilProcess = {
  rpcUrl: string;
  chainId: number;
  /** Stops anvil and waits for it to exit. */
  stop(): Promise<void>;
  /** Resolves when anvil exits, stopped or not, with its exit code or signal. */
  exited: Promise<string>;
};

/** Where the anvil binary is: MYCEL_ANVIL_PATH, else the npm platform package, else `anvil` on PATH. */
export function resolveAnvilBinary(): string {
  const fromEnvironment = process.env.MYCEL_ANVIL_PATH;
  if (fromEnvironment) return fromEnvironment;
  const arch = process.arch === "x64" ? "amd64" : process.arch;
  const platform = process.platform === "win32" ? "win32" : process.platform;
  const require = createRequire(import.meta.url);
  try {
    const packageJson = require.resolve(`@foundry-rs/anvil-${platform}-${arch}/package.json`);
    const binary = join(dirname(packageJson), "bin", platform === "win32" ? "anvil.exe" : "anvil");
    if (existsSync(binary)) return binary;
  } catch {
    // fall through to PATH
  }
  return "anvil";
}

/**
 * Starts anvil on loopback and resolves once it listens. Anvil runs under a small `sh` watcher that
 * stops it when this process's end of the watcher's stdin closes, so a killed parent leaves no anvil behind.
 */
export async function startAnvil(parameters: StartAnvilParameters = {}): Promise<AnvilProcess> {
  const host = parameters.host ?? "127.0.0.1";
  const chainId = parameters.chainId ?? 31337;
  const binary = resolveAnvilBinary();
  const args = ["--host", host, "--port", String(parameters.port ?? 0), "--chain-id", String(chainId)];
  if (parameters.blockTimeSeconds !== undefined)
    args.push("--block-time", String(parameters.blockTimeSeconds));
  if (parameters.gasLimit !== undefined) args.push("--gas-limit", String(parameters.gasLimit));
  if (binary.includes("/") && !existsSync(binary))
    throw new ChainError(`there is no anvil binary at ${binary}`, {
      code: "anvil_start_failed",
      hint: "reinstall with `npm install` (the @foundry-rs/anvil platform package), or set MYCEL_ANVIL_PATH to an anvil binary",
    });
  // sh runs anvil and a reader of our pipe that stops anvil once the pipe closes; sh exits with anvil.
  const watcher =
    'exec 3<&0; "$0" "$@" </dev/null & pid=$!; { cat <&3 >/dev/null; kill $pid 2>/dev/null; } & wait $pid';
  const child: ChildProcess = spawn("sh", ["-c", watcher, binary, ...args], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const exited = new Promise<string>((resolve) =>
    child.once("exit", (code, signal) => resolve(signal ?? String(code))),
  );
  const output: string[] = [];
  const timeoutMs = parameters.timeoutMs ?? 15_000;
  const rpcUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(
        new ChainError(`anvil did not start within ${timeoutMs} ms`, {
          code: "anvil_start_failed",
          details: output.slice(-5).join(" | "),
        }),
      );
    }, timeoutMs);
    const onLine = (line: string) => {
      output.push(line);
      if (output.length > 50) output.shift();
      const match = /Listening on ([^\s]+)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(`http://${match[1]}`);
      }
    };
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", onLine);
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", onLine);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(
        new ChainError(`anvil exited (${code}) before it listened`, {
          code: "anvil_start_failed",
          details: output.slice(-5).join(" | ") || `binary: ${binary}`,
          hint: "reinstall with `npm install` (the @foundry-rs/anvil platform package), or set MYCEL_ANVIL_PATH",
        }),
      );
    });
    child.once("error", (cause) => {
      clearTimeout(timer);
      reject(
        new ChainError("anvil could not be started", {
          code: "anvil_start_failed",
          cause,
          hint: "reinstall with `npm install`, or set MYCEL_ANVIL_PATH to an anvil binary",
        }),
      );
    });
  }).catch((error) => {
    child.stdin?.end();
    child.kill("SIGKILL");
    throw error;
  });
  parameters.logger?.info("anvil listening", { rpcUrl, chainId });
  let stopped: Promise<void> | undefined;
  return {
    rpcUrl,
    chainId,
    exited,
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const kill = setTimeout(() => child.kill("SIGKILL"), 5_000);
        child.once("exit", () => {
          clearTimeout(kill);
          resolve();
        });
        child.stdin?.end();
      });
      return stopped;
    },
  };
}
