/**
 * Stopping a devnet: whichever process of its tree gets SIGTERM or SIGINT (npm running `npm start`, the devnet itself,
 * or one of its roles), every process of the tree is gone within 5 s and the gateway no longer answers.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { generatePrivateKey } from "viem/accounts";
import { createKeystore } from "../../src/identity/index.ts";
import { mycelBin, repositoryRoot, temporaryHome } from "../helpers.ts";

/** Everything must be down within this long of the signal. */
const stopLimitMs = 5_000;

/** The pids of `root` and all its descendants now. */
function processTree(root: number): number[] {
  const rows = execFileSync("ps", ["-eo", "pid=,ppid="], { encoding: "utf8" })
    .trim()
    .split("\n")
    .map((line) => line.trim().split(/\s+/).map(Number) as [number, number]);
  const tree = [root];
  for (let index = 0; index < tree.length; index++)
    for (const [pid, ppid] of rows) if (ppid === tree[index] && !tree.includes(pid)) tree.push(pid);
  return tree;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Resolves with how long it took until none of `pids` runs; fails after the limit (polling: they are not our children). */
async function goneWithin(pids: number[], limitMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    const left = pids.filter(alive);
    if (left.length === 0) return Date.now() - started;
    if (Date.now() - started > limitMs)
      throw new Error(
        `still running ${limitMs} ms after the signal: ${execFileSync("ps", ["-o", "pid,args", "-p", left.join(",")], { encoding: "utf8" })}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Starts `command args` and resolves once the devnet is up, with its gateway URL. */
function startDevnetTree(command: string, args: string[], home: string) {
  const child = spawn(command, args, {
    cwd: repositoryRoot,
    env: { ...process.env, MYCEL_HOME: home },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const up = new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk;
      const url = /OpenAI-compatible endpoint: (http:\/\/\S+)\/v1/.exec(output)?.[1];
      if (url && output.includes("devnet is up")) resolve(url);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    void exited.then(() => reject(new Error(`the devnet exited before it was up:\n${output}`)));
  });
  return { child: child as ChildProcess, up, exited, output: () => output };
}

/** Polls `read` until `pattern` matches (a file another process writes); returns the first group. */
async function waitForLine(read: () => string, pattern: RegExp, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = pattern.exec(read());
    if (match?.[1]) return match[1];
    if (Date.now() > deadline)
      throw new Error(`no line matching ${pattern} within ${timeoutMs} ms:\n${read()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function gatewayAnswers(url: string): Promise<boolean> {
  try {
    return (await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) })).ok;
  } catch {
    return false;
  }
}

const devnetArgs = ["devnet", "--providers", "1", "--port", "0", "--rpc-port", "0"];

describe("stopping a devnet (real processes)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  before(async () => {
    directory = await temporaryHome("mycel-devnet-stop-");
  });
  after(() => directory.remove());

  it("`npm start`, then SIGTERM to npm's pid: every process of the tree is gone within 5 s", async () => {
    const devnet = startDevnetTree("npm", ["start", "--", ...devnetArgs.slice(1)], directory.home);
    try {
      const url = await devnet.up;
      const tree = processTree(devnet.child.pid as number);
      assert.ok(tree.length >= 4, `npm, the devnet, a provider, a validator and anvil run: ${tree.length}`);
      assert.equal(await gatewayAnswers(url), true);
      devnet.child.kill("SIGTERM");
      const tookMs = await goneWithin(tree, stopLimitMs);
      assert.ok(tookMs <= stopLimitMs, `stopped in ${tookMs} ms`);
      assert.equal(await gatewayAnswers(url), false, "the gateway no longer answers");
    } finally {
      devnet.child.kill("SIGKILL");
    }
  });

  it("SIGINT to the devnet process: it stops everything and exits 0", async () => {
    const devnet = startDevnetTree(process.execPath, [mycelBin, ...devnetArgs], directory.home);
    try {
      const url = await devnet.up;
      const tree = processTree(devnet.child.pid as number);
      devnet.child.kill("SIGINT");
      await goneWithin(tree, stopLimitMs);
      assert.deepEqual(await devnet.exited, { code: 0, signal: null });
      assert.equal(await gatewayAnswers(url), false);
    } finally {
      devnet.child.kill("SIGKILL");
    }
  });

  it("a gateway whose starting shell exits keeps running (only the devnet stops with its parent)", async () => {
    await createKeystore({
      home: directory.home,
      name: "nohup",
      password: "a password",
      privateKey: generatePrivateKey(),
    });
    const pidFile = `${directory.home}/gateway.pid`;
    const log = `${directory.home}/gateway.log`;
    // The shell starts the gateway in the background and exits at once, as `nohup mycel gateway &` and a logout do.
    execFileSync(
      "sh",
      [
        "-c",
        `"${process.execPath}" "${mycelBin}" gateway --key nohup --port 0 > "${log}" 2>&1 & echo $! > "${pidFile}"`,
      ],
      {
        env: { ...process.env, MYCEL_HOME: directory.home, MYCEL_PASSWORD: "a password" },
      },
    );
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    try {
      const url = await waitForLine(
        () => readFileSync(log, "utf8"),
        /OpenAI-compatible endpoint: (http:\/\/\S+)\/v1/,
      );
      // Well past the devnet's parent check (every 500 ms): a role must not take its new parent for a lost one.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      assert.equal(alive(pid), true, readFileSync(log, "utf8"));
      assert.equal(await gatewayAnswers(url), true);
    } finally {
      process.kill(pid, "SIGTERM");
      await goneWithin([pid], stopLimitMs);
    }
  });

  it("SIGTERM to one of its roles: the devnet says which one stopped, stops the rest and exits 1", async () => {
    const devnet = startDevnetTree(process.execPath, [mycelBin, ...devnetArgs], directory.home);
    try {
      const url = await devnet.up;
      const tree = processTree(devnet.child.pid as number);
      const provider = tree.find((pid) =>
        execFileSync("ps", ["-o", "args=", "-p", String(pid)], { encoding: "utf8" }).includes(" provider "),
      );
      assert.ok(provider, "a provider process runs");
      process.kill(provider, "SIGTERM");
      await goneWithin(tree, stopLimitMs + 1_000);
      assert.deepEqual(await devnet.exited, { code: 1, signal: null });
      assert.match(devnet.output(), /provider-1 exited \(0\): shutting down/);
      assert.equal(await gatewayAnswers(url), false);
    } finally {
      devnet.child.kill("SIGKILL");
    }
  });
});
