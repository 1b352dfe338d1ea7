/**
 * bench:cli — how long `mycel` takes to start, next to bare node in the same run: `mycel --help`, `mycel model list`
 * (a store with a model) and `mycel wallet` (a real anvil with Mycel's contracts, read without a password).
 * Each command runs in turn with the others, `rounds` times, after a warm-up; the figures are medians.
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generatePrivateKey } from "viem/accounts";
import {
  anvilDeployerKey,
  connectChain,
  defaultDeploymentsPath,
  deployMycel,
  devnetDeployParameters,
  startAnvil,
  writeDeployments,
} from "../../src/chain/index.ts";
import { createKeystore } from "../../src/identity/index.ts";
import { formatTable, median, roundUp, verdict } from "../shared/report.ts";

const rounds = Number(process.env.MYCEL_BENCH_ROUNDS ?? 15);
const root = join(import.meta.dirname, "..", "..");
const bin = join(root, "bin", "mycel.js");

/** Milliseconds one run of `node args` takes, from spawn to exit; throws if it fails. */
function timeRun(args: string[], env: NodeJS.ProcessEnv): number {
  const started = performance.now();
  const result = spawnSync(process.execPath, args, { env, encoding: "utf8" });
  const elapsed = performance.now() - started;
  if (result.status !== 0)
    throw new Error(`node ${args.join(" ")} failed (${result.status}):\n${result.stderr}`);
  return elapsed;
}

const build = spawnSync(process.execPath, [join(root, "scripts", "build.mjs")], { stdio: "inherit" });
if (build.status !== 0) process.exit(build.status ?? 1);
const home = await mkdtemp(join(tmpdir(), "mycel-bench-cli-"));
const anvil = await startAnvil({ port: 0 });
try {
  const deployer = await connectChain({ rpcUrl: anvil.rpcUrl, privateKey: anvilDeployerKey });
  writeDeployments(
    defaultDeploymentsPath(home),
    await deployMycel(deployer, { parameters: devnetDeployParameters }),
  );
  await createKeystore({
    home,
    name: "default",
    password: "bench password",
    privateKey: generatePrivateKey(),
  });
  const env = { ...process.env, MYCEL_HOME: home, MYCEL_LOG_LEVEL: "warn" };
  timeRun([bin, "model", "make-test"], env);
  const commands: { label: string; args: string[]; targetMs: number | undefined }[] = [
    { label: "node -e 0", args: ["-e", "0"], targetMs: undefined },
    { label: "mycel --help", args: [bin, "--help"], targetMs: 300 },
    { label: "mycel model list", args: [bin, "model", "list"], targetMs: 1_000 },
    { label: "mycel wallet", args: [bin, "wallet"], targetMs: 1_000 },
  ];
  for (const command of commands) timeRun(command.args, env);
  const samples = commands.map(() => [] as number[]);
  for (let round = 0; round < rounds; round++)
    for (const [index, command] of commands.entries()) samples[index]?.push(timeRun(command.args, env));
  const medians = samples.map((values) => median(values));
  const bare = medians[0] as number;
  console.log(`bench:cli — ${rounds} rounds, medians (ms); node ${process.version}\n`);
  console.log(
    formatTable(
      ["command", "median ms", "x bare node", "over bare node ms"],
      commands.map((command, index) => {
        const value = medians[index] as number;
        return [command.label, value.toFixed(0), (value / bare).toFixed(2), (value - bare).toFixed(0)];
      }),
    ),
  );
  console.log("");
  for (const [index, command] of commands.entries()) {
    if (command.targetMs === undefined) continue;
    const over = roundUp((medians[index] as number) - bare, 0);
    console.log(
      `${command.label} over bare node: ${over} ms (target <= ${command.targetMs} ms) ${verdict(over <= command.targetMs)}`,
    );
  }
} finally {
  await anvil.stop();
  await rm(home, { recursive: true, force: true });
}
