#!/usr/bin/env node
// Runs test/**/*.test.ts with node's test runner through tsx, each file in its own process, several files at once.
//
//   node scripts/run-tests.mjs [--jobs N] [part of a path...]
//
// --jobs N: files run at once (default: the machine's CPU count, at least 2; 1 runs them one after another).
// Each file runs in its own process, as `node --test` would run it, so files share nothing but the machine: every
// server listens on port 0 and every MYCEL_HOME is a fresh temporary folder. Heavy files (real processes, engines,
// libp2p nodes) run beside each other, the slowest first; solo files run beside light (in-process) files only.
// Each file's output (node's spec reporter) is printed whole when it ends, so files never interleave; the end lists
// every failing test by file and the slowest files. Exit code 1 when any test fails or any file fails to finish.
import { spawn, spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, relative } from "node:path";

const root = join(import.meta.dirname, "..");

/**
 * What makes a file heavy: it starts real processes (mycel, anvil, npm, chromium), llama.cpp engines or libp2p
 * nodes. Heavy files take 1 to 85 s each on 2 cores, mostly CPU-bound (the explorer's waits on the devnet's clock
 * aside); the others run in process in about a second.
 */
const heavyMarks =
  /\b(startRole|startMycelServer|runMycel|spawn|spawnSync|execFile|execFileSync|startLocalChain|startAnvil|createEngine|chromium|createMycelNode)\b/;

/**
 * Heavy files that must not share the machine with another heavy file: each asserts on how long something takes in
 * real time with real processes (every process of a devnet gone within 5 s of a signal), which a second heavy file
 * on a small machine can push past the limit. They run first, one at a time, beside light files only.
 */
const solo = ["test/network/devnetStop.test.ts"];

/**
 * The slowest files, slowest first as measured (85 s down to 5 s on 2 cores): they start first, so that none of them
 * ends the run alone. Any other heavy file comes next, then the light ones.
 */
const slowestFirst = [
  "test/explorer/explorer.test.ts",
  "test/network/network.test.ts",
  "test/payments/paidNetwork.test.ts",
  "test/cli/chainCommands.test.ts",
  "test/cli/audit.test.ts",
  "test/verify/validatorNetwork.test.ts",
  "test/verify/audit.test.ts",
  "test/verify/constrainedAudit.test.ts",
  "test/payments/strangers.test.ts",
  "test/network/strangerProviders.test.ts",
  "test/network/malformedAnswers.test.ts",
  "test/network/gatewayQueue.test.ts",
  "test/network/realTokenizerModels.test.ts",
  "test/network/devnet.test.ts",
  "test/api/apiKeys.test.ts",
  "test/api/tools.test.ts",
  "test/model/bpeTestModels.test.ts",
  "test/network/relay.test.ts",
  "test/security/httpEdges.test.ts",
  "test/security/evidencePrivacy.test.ts",
  "test/payments/restartedChain.test.ts",
  "test/explorer/explorerNoChain.test.ts",
  "test/validator/validator.test.ts",
  "test/chain/consensus.test.ts",
  "test/chain/paymentChannels.test.ts",
  "test/p2p/node.test.ts",
  "test/cli/cli.test.ts",
];

/** A file that runs longer than this is stopped and counted as failed (the slowest takes under 2 minutes). */
const fileTimeoutMs = 10 * 60_000;

function usage(message) {
  console.error(`${message}\nusage: node scripts/run-tests.mjs [--jobs N] [part of a path...]`);
  process.exit(2);
}

function parseArguments(argv) {
  let jobs = Math.max(2, availableParallelism());
  const filter = [];
  for (let index = 0; index < argv.length; index++) {
    const argument = argv[index];
    const inline = /^--jobs=(.*)$/.exec(argument);
    if (argument === "--jobs" || argument === "-j" || inline) {
      const value = inline ? inline[1] : argv[++index];
      jobs = Number(value);
      if (!Number.isInteger(jobs) || jobs < 1) usage(`--jobs must be a whole number from 1 up, not ${value}`);
    } else if (argument.startsWith("-")) usage(`unknown option ${argument}`);
    else filter.push(argument);
  }
  return { jobs, filter };
}

function findTests(directory) {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return findTests(path);
    return entry.name.endsWith(".test.ts") ? [relative(root, path).split("\\").join("/")] : [];
  });
}

/** Each file's kind: solo, heavy (it starts processes, engines or nodes: see {@link heavyMarks}) or light. */
function kindsOf(files) {
  return new Map(
    files.map((file) => [
      file,
      solo.includes(file)
        ? "solo"
        : heavyMarks.test(readFileSync(join(root, file), "utf8"))
          ? "heavy"
          : "light",
    ]),
  );
}

/** Solo files first, then the slowest as listed, the other heavy files, and the light ones, each in path order. */
function order(files, kinds) {
  const rank = (file) => {
    if (kinds.get(file) === "solo") return -1;
    if (slowestFirst.includes(file)) return slowestFirst.indexOf(file);
    return kinds.get(file) === "heavy" ? slowestFirst.length : slowestFirst.length + 1;
  };
  return [...files].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/**
 * The files of `waiting` (in order) that may start now beside those `running`, at most `free`: a solo file only
 * beside light files, and no heavy file beside a solo one or ahead of a solo one that waits for the heavy ones to end.
 */
function startable(waiting, running, free, kinds) {
  const isSolo = (file) => kinds.get(file) === "solo";
  const isLight = (file) => kinds.get(file) === "light";
  const chosen = [];
  let soloWaits = false;
  for (const file of waiting) {
    if (chosen.length === free) break;
    const beside = [...running, ...chosen];
    if (isSolo(file)) {
      if (beside.every(isLight)) chosen.push(file);
      else soloWaits = true;
    } else if (isLight(file)) chosen.push(file);
    else if (!soloWaits && !beside.some(isSolo)) chosen.push(file);
  }
  return chosen;
}

/** The test file processes running now, stopped with the runner (their roles exit with them). */
const children = new Set();
for (const signal of ["SIGINT", "SIGTERM"])
  process.on(signal, () => {
    for (const child of children) child.kill(signal);
    process.exit(128 + (signal === "SIGINT" ? 2 : 15));
  });

/** Runs one test file in its own process; resolves with its exit, output and duration. */
function runFile(file) {
  const started = performance.now();
  const child = spawn(process.execPath, ["--import", "tsx", "--test-reporter=spec", file], {
    cwd: root,
    env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: "true" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let output = "";
  child.stdout.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr.on("data", (chunk) => {
    output += chunk;
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, fileTimeoutMs);
  return new Promise((resolve) => {
    child.on("error", (error) => {
      output += `\ncould not start: ${error.message}\n`;
    });
    child.on("close", (code, signal) => {
      children.delete(child);
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      resolve({ file, code, signal, timedOut, output, startedAt: started, seconds });
    });
  });
}

/** The failing tests the spec reporter lists at the end of a file's output ("✖ failing tests:"), with where. */
function failingTests(output) {
  const section = output.split("\n✖ failing tests:\n")[1];
  if (!section) return [];
  const failures = [];
  let location = "";
  for (const line of section.split("\n")) {
    const at = /^test at (.+)$/.exec(line);
    if (at) location = at[1];
    const failed = /^✖ (.+) \([\d.]+m?s\)$/.exec(line);
    if (failed) failures.push(`${failed[1]}${location ? ` (${location})` : ""}`);
  }
  return failures;
}

/** The counts of the spec reporter's summary ("ℹ tests 12", "ℹ pass 11", ...). */
function counts(output) {
  const result = {};
  for (const match of output.matchAll(/^ℹ (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$/gm))
    result[match[1]] = Number(match[2]);
  return result;
}

const { jobs, filter } = parseArguments(process.argv.slice(2));
const files = findTests(join(root, "test")).filter(
  (file) => filter.length === 0 || filter.some((part) => file.includes(part)),
);
if (files.length === 0) {
  console.error(`no test files match ${filter.join(" ")}`);
  process.exit(1);
}
// Tests start real `mycel` processes, which run the compiled dist/: compile what changed first (incremental).
const build = spawnSync(process.execPath, [join(root, "scripts", "build.mjs")], {
  cwd: root,
  stdio: "inherit",
});
if (build.status !== 0) process.exit(build.status ?? 1);

const startedAt = performance.now();
console.log(`running ${files.length} test file(s), ${jobs} at a time`);
const kinds = kindsOf(files);
const waiting = order(files, kinds);
const running = new Set();
const results = [];
await new Promise((resolveAll) => {
  const next = () => {
    for (const file of startable(waiting, [...running], jobs - running.size, kinds)) {
      waiting.splice(waiting.indexOf(file), 1);
      running.add(file);
      runFile(file).then((result) => {
        running.delete(file);
        results.push(result);
        const how = result.timedOut
          ? `stopped after ${fileTimeoutMs / 60_000} min`
          : result.code !== 0
            ? `failed (${result.signal ?? `exit code ${result.code}`})`
            : "passed";
        const from = (result.startedAt - startedAt) / 1000;
        console.log(
          `\n━━ ${file}: ${how} in ${result.seconds.toFixed(1)} s (${from.toFixed(1)} s to ${(from + result.seconds).toFixed(1)} s into the run)`,
        );
        process.stdout.write(result.output.endsWith("\n") ? result.output : `${result.output}\n`);
        next();
      });
    }
    if (running.size === 0 && waiting.length === 0) resolveAll();
  };
  next();
});

const total = {};
for (const result of results)
  for (const [name, value] of Object.entries(counts(result.output))) total[name] = (total[name] ?? 0) + value;
const failedFiles = results
  .filter((result) => result.code !== 0)
  .sort((a, b) => a.file.localeCompare(b.file));
console.log(`\n━━ ${results.length} file(s) in ${((performance.now() - startedAt) / 1000).toFixed(1)} s`);
console.log(
  ["tests", "suites", "pass", "fail", "cancelled", "skipped", "todo"]
    .map((name) => `ℹ ${name} ${total[name] ?? 0}`)
    .join("\n"),
);
console.log(
  `slowest: ${[...results]
    .sort((a, b) => b.seconds - a.seconds)
    .slice(0, 5)
    .map((result) => `${result.file} ${result.seconds.toFixed(1)} s`)
    .join(", ")}`,
);
if (failedFiles.length > 0) {
  console.log("\n✖ failing:");
  for (const result of failedFiles) {
    const failures = failingTests(result.output);
    const why = result.timedOut
      ? `stopped after ${fileTimeoutMs / 60_000} min`
      : failures.length === 0
        ? `${result.signal ?? `exit code ${result.code}`} (see its output above)`
        : `${failures.length} failing test(s)`;
    console.log(`${result.file}: ${why}`);
    for (const failure of failures) console.log(`  ✖ ${failure}`);
  }
}
// Not process.exit(): it could cut off output still being written to a pipe.
process.exitCode = failedFiles.length > 0 ? 1 : 0;
