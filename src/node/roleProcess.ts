/** Roles in processes of their own (the devnet's providers and validator): spawned, awaited until ready, stopped. */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { MycelError } from "../errors/index.ts";
import { devnetPassword, readyPrefix } from "./constants.ts";

/** What a role says about itself when it is ready. */
export type RoleReady = { peerId: string; multiaddrs: string[]; address: string };

/** A role running in a child process, its output prefixed with its name. */
export type RoleProcess = {
  name: string;
  child: ChildProcess;
  /** Resolves with the role's ready line; rejects if it exits first. */
  ready: Promise<RoleReady>;
  /** Resolves when the process exits, with its exit code or signal. */
  exited: Promise<string>;
  /** Sends SIGTERM, then SIGKILL after `killAfterMs`; resolves once it exited. */
  stop(killAfterMs: number): Promise<void>;
};

/** The `mycel` command of this package. */
export const mycelBin = join(import.meta.dirname, "..", "..", "bin", "mycel.js");

/** Spawns `mycel --home <home> <args> --key <keyName>` with the devnet's password; it exits when this process does. */
export function spawnRole(parameters: {
  name: string;
  args: string[];
  home: string;
  keyName: string;
  /** Where its output lines go, already prefixed with `[name]`. */
  write: { stdout: (line: string) => void; stderr: (line: string) => void };
}): RoleProcess {
  const child = spawn(
    process.execPath,
    [mycelBin, "--home", parameters.home, ...parameters.args, "--key", parameters.keyName],
    {
      env: {
        ...process.env,
        MYCEL_PASSWORD: devnetPassword,
        MYCEL_EXIT_WITH_PARENT: "1",
        MYCEL_HOME: parameters.home,
      },
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  const prefix = `[${parameters.name}]`;
  const exited = new Promise<string>((resolve) =>
    child.once("exit", (code, signal) => resolve(signal ?? String(code))),
  );
  const ready = new Promise<RoleReady>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      if (line.startsWith(readyPrefix)) resolve(JSON.parse(line.slice(readyPrefix.length)));
      else parameters.write.stdout(`${prefix} ${line}`);
    });
    void exited.then((how) =>
      reject(
        new MycelError(`${parameters.name} exited (${how}) before it was ready`, {
          hint: "see its log lines above",
        }),
      ),
    );
  });
  ready.catch(() => undefined);
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", (line) =>
    parameters.write.stderr(`${prefix} ${line}`),
  );
  return {
    name: parameters.name,
    child,
    ready,
    exited,
    async stop(killAfterMs) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const kill = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
      child.kill("SIGTERM");
      await exited;
      clearTimeout(kill);
    },
  };
}
