/**
 * Calibration of the audit tolerances (src/verify/tolerances.ts): how far honest answers drift from a
 * validator's re-evaluation across the settings that really differ between providers and validators (threads,
 * batch sizes, prompt and output lengths, temperatures, processes), and where every cheat of
 * test/fixtures/cheats.ts lands. Prints markdown tables and the margins of the current tolerances; with
 * `--out <file>` it also writes them as JSON. Run with `npm run calibrate`; docs/VERIFICATION.md explains it.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Engine, EngineOptions, EvaluateReturnType } from "../../src/engine/index.ts";
import { openModelStore } from "../../src/model/index.ts";
import type { AuditInput, InferenceRequest } from "../../src/protocol/index.ts";
import {
  type Auditor,
  type AuditTolerances,
  auditAnswer,
  auditTolerances,
  createAuditor,
  tolerancesFor,
} from "../../src/verify/index.ts";
import {
  addCheatModels,
  type CheatModels,
  type CheatName,
  cheatEngine,
  cheatingAnswer,
  cheatNames,
  fixtureRequest,
  honestAnswer,
} from "../../test/fixtures/cheats.ts";
import type { HonestAnswersJob } from "./honestAnswers.ts";
import { claimingQ8, longPromptRequest } from "./requests.ts";

const repositoryRoot = resolve(import.meta.dirname, "../..");
const runStarted = performance.now();
function progress(message: string) {
  process.stderr.write(`[calibrate ${((performance.now() - runStarted) / 1000).toFixed(1)} s] ${message}\n`);
}

/** Answers per condition (each condition varies one setting from the baseline). */
const counts = {
  baseline: 36,
  providerSetting: 12,
  longPrompts: 12,
  longOutputs: 9,
  separateProcess: 24,
  q8Baseline: 24,
  q8Setting: 6,
  cheat: 24,
  cheatExtra: 9,
  q8Cheat: 12,
};
/** Prompt sizes of the long-prompt conditions (bytes of the user message: about as many tokens). */
const longPromptBytes = [500, 700, 900];
/** max_tokens of the long-output conditions. */
const longOutputTokens = 256;

/** Provider (generation) settings: the provider's default is 1 thread, batch 512. */
type Setting = { label: string; options: Partial<EngineOptions> };
const provider = {
  base: { label: "1 thread, batch 512", options: { threadsPerSequence: 1, batchSize: 512 } },
  threads2: { label: "2 threads, batch 512", options: { threadsPerSequence: 2, batchSize: 512 } },
  batch64: { label: "1 thread, batch 64", options: { threadsPerSequence: 1, batchSize: 64 } },
  batch16: { label: "1 thread, batch 16", options: { threadsPerSequence: 1, batchSize: 16 } },
} satisfies Record<string, Setting>;
/** Validator (re-evaluation) settings, given to createAuditor as engineOptions. */
const validator = {
  base: { label: "1 thread, batch 512", options: { threadsPerSequence: 1, batchSize: 512 } },
  threads2: { label: "2 threads, batch 512", options: { threadsPerSequence: 2, batchSize: 512 } },
  batch64: { label: "1 thread, batch 64", options: { threadsPerSequence: 1, batchSize: 64 } },
  batch16: { label: "1 thread, batch 16", options: { threadsPerSequence: 1, batchSize: 16 } },
} satisfies Record<string, Setting>;
type ValidatorName = keyof typeof validator;

/** One audited answer. */
type Sample = {
  group: string;
  condition: string;
  provider: string;
  validator: string;
  weightType: string;
  temperature: number;
  promptTokens: number;
  outputTokens: number;
  pass: boolean;
  reasons: string[];
  worstChunkGapError: number;
  maxGapError: number;
  notArgmax: number;
  nearTies: number;
  /** Temperature 0: the largest gap (nats) of an output token below the validator's most likely one (0: none). */
  largestArgmaxGap: number;
};

/** A group of samples as a table row. */
type Row = {
  group: string;
  condition: string;
  provider: string;
  validator: string;
  answers: number;
  promptTokens: [number, number];
  outputTokens: [number, number];
  worstChunk: { min: number; p1: number; median: number; p99: number; max: number };
  maxPosition: { min: number; median: number; max: number };
  temperatureZero: number;
  notArgmax: number;
  nearTies: number;
  largestArgmaxGap: number;
  passed: number;
  caughtBy: Record<string, number>;
};

/** Nearest-rank percentile (p in 0..1). */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] as number;
}

function summarize(samples: readonly Sample[], labels: Partial<Row> = {}): Row {
  const first = samples[0];
  const chunk = samples.map((sample) => sample.worstChunkGapError);
  const position = samples.map((sample) => sample.maxGapError);
  const greedy = samples.filter((sample) => sample.temperature === 0);
  const caughtBy: Record<string, number> = {};
  for (const sample of samples) for (const code of new Set(sample.reasons)) caughtBy[code] = (caughtBy[code] ?? 0) + 1;
  const range = (values: number[]): [number, number] => [Math.min(...values), Math.max(...values)];
  return {
    group: first?.group ?? "",
    condition: first?.condition ?? "",
    provider: first?.provider ?? "",
    validator: first?.validator ?? "",
    ...labels,
    answers: samples.length,
    promptTokens: range(samples.map((sample) => sample.promptTokens)),
    outputTokens: range(samples.map((sample) => sample.outputTokens)),
    worstChunk: {
      min: Math.min(...chunk),
      p1: percentile(chunk, 0.01),
      median: percentile(chunk, 0.5),
      p99: percentile(chunk, 0.99),
      max: Math.max(...chunk),
    },
    maxPosition: { min: Math.min(...position), median: percentile(position, 0.5), max: Math.max(...position) },
    temperatureZero: greedy.length,
    notArgmax: greedy.reduce((sum, sample) => sum + sample.notArgmax, 0),
    nearTies: greedy.reduce((sum, sample) => sum + sample.nearTies, 0),
    largestArgmaxGap: Math.max(0, ...greedy.map((sample) => sample.largestArgmaxGap)),
    passed: samples.filter((sample) => sample.pass).length,
    caughtBy,
  };
}

/** An auditor per validator setting, and an audit that also returns what the re-evaluation saw. */
function createValidators(home: string) {
  const store = openModelStore({ home });
  const auditors = new Map<ValidatorName, Auditor>();
  for (const name of Object.keys(validator) as ValidatorName[])
    auditors.set(name, createAuditor({ home, engineOptions: validator[name].options }));
  return {
    /**
     * What `auditor.audit` does (parse, load the claimed model, auditAnswer with the calibrated tolerances), with
     * the evaluation kept for the near-tie statistics.
     */
    async audit(name: ValidatorName, input: AuditInput) {
      const auditor = auditors.get(name) as Auditor;
      const parsed = auditor.parse(input);
      const hash = parsed.modelHash.slice(2);
      await auditor.engine.loadModel({ hash, path: store.pathOf(hash) });
      let evaluation: EvaluateReturnType | undefined;
      const engine: Engine = {
        ...auditor.engine,
        evaluate: async (parameters) => {
          evaluation = await auditor.engine.evaluate(parameters);
          return evaluation;
        },
      };
      const verdict = await auditAnswer({ engine, input: parsed });
      return { verdict, positions: evaluation?.positions ?? [] };
    },
    close: async () => {
      for (const auditor of auditors.values()) await auditor.close();
    },
  };
}
type Validators = ReturnType<typeof createValidators>;

/** Audits answers with each named validator setting and records the samples. */
async function auditAll(parameters: {
  validators: Validators;
  samples: Sample[];
  group: string;
  condition: string;
  providerLabel: string;
  answers: readonly AuditInput[];
  with: readonly ValidatorName[];
}) {
  for (const name of parameters.with) {
    for (const input of parameters.answers) {
      const { verdict, positions } = await parameters.validators.audit(name, input);
      let largestArgmaxGap = 0;
      if (input.request.temperature === 0)
        for (const position of positions) {
          const best = position.top[0];
          if (best && best.token !== position.token)
            largestArgmaxGap = Math.max(largestArgmaxGap, best.logprob - position.logprob);
        }
      const { metrics } = verdict;
      parameters.samples.push({
        group: parameters.group,
        condition: parameters.condition,
        provider: parameters.providerLabel,
        validator: validator[name].label,
        weightType: metrics.weightType,
        temperature: input.request.temperature,
        promptTokens: metrics.promptTokens,
        outputTokens: metrics.outputTokens,
        pass: verdict.verdict === "pass",
        reasons: verdict.reasons.map((reason) => reason.code),
        worstChunkGapError: metrics.worstChunkGapError,
        maxGapError: metrics.maxGapError,
        notArgmax: metrics.notArgmax,
        nearTies: metrics.nearTies,
        largestArgmaxGap,
      });
    }
  }
  progress(`audited ${parameters.group} / ${parameters.condition}: ${parameters.answers.length} answers`);
}

async function honestAnswers(engine: Engine, models: CheatModels, requests: readonly InferenceRequest[]) {
  const answers: AuditInput[] = [];
  for (const request of requests) answers.push(await honestAnswer({ engine, models, request }));
  return answers;
}

/** Honest answers generated by a child process (`node --import tsx bench/verify/honestAnswers.ts`). */
async function honestAnswersInChild(parameters: {
  root: string;
  job: HonestAnswersJob;
}): Promise<AuditInput[]> {
  const jobPath = join(parameters.root, "child-job.json");
  const answersPath = join(parameters.root, "child-answers.json");
  await writeFile(jobPath, JSON.stringify(parameters.job));
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(import.meta.dirname, "honestAnswers.ts"), jobPath, answersPath],
    { cwd: repositoryRoot, stdio: ["ignore", "inherit", "inherit"] },
  );
  const code = await new Promise<number | null>((resolveExit, reject) => {
    child.on("error", reject);
    child.on("close", resolveExit);
  });
  if (code !== 0) throw new Error(`the child process generating honest answers exited with ${code}`);
  return JSON.parse(await readFile(answersPath, "utf8")) as AuditInput[];
}

const range = (start: number, count: number) => Array.from({ length: count }, (_, offset) => start + offset);

/** Generates and audits everything; returns the samples. */
async function measure(root: string) {
  const home = join(root, "home");
  progress("adding the test models (small, seed 1 f16 claimed; seed 2 f16; seed 1 q8_0)");
  const models = await addCheatModels(home);
  const q8 = claimingQ8(models);
  const validators = createValidators(home);
  const samples: Sample[] = [];
  const f16 = "f16 honest";
  const q8Honest = "q8_0 honest";
  const record = (
    group: string,
    condition: string,
    setting: Setting,
    answers: AuditInput[],
    names: ValidatorName[],
  ) =>
    auditAll({
      validators,
      samples,
      group,
      condition,
      providerLabel: setting.label,
      answers,
      with: names,
    });
  try {
    // The provider's default settings: the baseline, long prompts and outputs, the q8_0 claim and the cheats.
    let engine = await cheatEngine({ home, models, options: provider.base.options });
    progress(`generating ${counts.baseline} baseline answers (provider ${provider.base.label})`);
    const baseline = await honestAnswers(
      engine,
      models,
      range(0, counts.baseline).map((index) => fixtureRequest({ models, index })),
    );
    await record(f16, "baseline", provider.base, baseline, ["base"]);
    await record(f16, "validator threads", provider.base, baseline, ["threads2"]);
    await record(f16, "validator batch", provider.base, baseline, ["batch64", "batch16"]);
    const longPrompts = (claim: CheatModels, start: number, count: number) =>
      range(start, count).map((index) =>
        longPromptRequest({
          models: claim,
          index,
          promptBytes: longPromptBytes[index % longPromptBytes.length] as number,
        }),
      );
    const longOutputs = (claim: CheatModels, start: number, count: number) =>
      range(start, count).map((index) => fixtureRequest({ models: claim, index, maxTokens: longOutputTokens }));
    progress(`generating ${counts.longPrompts} long-prompt and ${counts.longOutputs} long-output answers`);
    const longPromptAnswers = await honestAnswers(engine, models, longPrompts(models, 100, counts.longPrompts));
    await record(f16, "long prompts", provider.base, longPromptAnswers, ["base", "threads2"]);
    const longOutputAnswers = await honestAnswers(engine, models, longOutputs(models, 120, counts.longOutputs));
    await record(f16, "long outputs", provider.base, longOutputAnswers, ["base", "threads2"]);

    progress(`generating ${counts.q8Baseline + counts.q8Setting} honest q8_0 answers claimed as q8_0`);
    const q8Baseline = await honestAnswers(
      engine,
      q8,
      range(0, counts.q8Baseline).map((index) => fixtureRequest({ models: q8, index })),
    );
    await record(q8Honest, "baseline", provider.base, q8Baseline, ["base"]);
    await record(q8Honest, "validator threads", provider.base, q8Baseline, ["threads2"]);
    await record(q8Honest, "validator batch", provider.base, q8Baseline, ["batch16"]);
    const q8Long = await honestAnswers(engine, q8, longPrompts(q8, 100, counts.q8Setting));
    await record(q8Honest, "long prompts", provider.base, q8Long, ["base"]);

    for (const cheat of cheatNames) {
      progress(`generating ${counts.cheat} answers of the cheat ${cheat}`);
      const answers: AuditInput[] = [];
      for (const index of range(200, counts.cheat))
        answers.push(
          await cheatingAnswer({ engine, models, request: fixtureRequest({ models, index }), cheat }),
        );
      await record(`cheat vs f16`, cheat, provider.base, answers, ["base"]);
      if (cheat !== "lower_quant") continue;
      // The cheat closest to honest: also under the other validator settings and with long prompts and outputs.
      await record(`cheat vs f16`, cheat, provider.base, answers, ["threads2", "batch16"]);
      const extra: AuditInput[] = [];
      for (const request of [
        ...longPrompts(models, 300, counts.cheatExtra),
        ...longOutputs(models, 320, counts.cheatExtra),
      ])
        extra.push(await cheatingAnswer({ engine, models, request, cheat }));
      await record(`cheat vs f16`, "lower_quant, long prompts and outputs", provider.base, extra, ["base"]);
    }
    const q8Cheats: { cheat: CheatName; label: string }[] = [
      { cheat: "another_model", label: "another_model" },
      { cheat: "changed_prompt", label: "changed_prompt" },
      { cheat: "fabricated", label: "fabricated" },
      { cheat: "lower_quant", label: "f16 served, q8_0 claimed (information)" },
    ];
    for (const { cheat, label } of q8Cheats) {
      progress(`generating ${counts.q8Cheat} answers against a q8_0 claim: ${label}`);
      const answers: AuditInput[] = [];
      for (const index of range(400, counts.q8Cheat))
        answers.push(
          await cheatingAnswer({ engine, models: q8, request: fixtureRequest({ models: q8, index }), cheat }),
        );
      await record("cheat vs q8_0", label, provider.base, answers, ["base"]);
    }
    await engine.close();

    // Other provider settings.
    for (const setting of [provider.threads2, provider.batch64, provider.batch16]) {
      engine = await cheatEngine({ home, models, options: setting.options });
      progress(`generating ${counts.providerSetting} answers with provider ${setting.label}`);
      const start = setting === provider.threads2 ? 40 : setting === provider.batch64 ? 60 : 80;
      const answers = await honestAnswers(
        engine,
        models,
        range(start, counts.providerSetting).map((index) => fixtureRequest({ models, index })),
      );
      const condition = setting === provider.threads2 ? "provider threads" : "provider batch";
      await record(f16, condition, setting, answers, setting === provider.batch64 ? ["base"] : ["base", "threads2"]);
      if (setting !== provider.batch64) {
        const q8Answers = await honestAnswers(
          engine,
          q8,
          range(start, counts.q8Setting).map((index) => fixtureRequest({ models: q8, index })),
        );
        await record(q8Honest, condition, setting, q8Answers, ["base"]);
      }
      await engine.close();
    }

    // Separate processes: a child generates, this process audits.
    progress(`generating ${counts.separateProcess} answers in a child process`);
    const childAnswers = await honestAnswersInChild({
      root,
      job: {
        home,
        models,
        options: provider.base.options,
        requests: range(140, counts.separateProcess).map((index) => fixtureRequest({ models, index })),
      },
    });
    await record(f16, "separate processes", provider.base, childAnswers, ["base", "threads2"]);
  } finally {
    await validators.close();
  }
  return samples;
}

const nats = (value: number) => (Number.isFinite(value) ? value.toFixed(4) : String(value));
const share = (part: number, whole: number) => `${part}/${whole}`;
const tokens = ([low, high]: [number, number]) => (low === high ? `${low}` : `${low}-${high}`);

function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]) {
  const line = (cells: readonly string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

function honestTable(rows: readonly Row[]) {
  return markdownTable(
    [
      "condition",
      "provider",
      "validator",
      "answers",
      "prompt tokens",
      "worst chunk err p99",
      "worst chunk err max",
      "max position err",
      "T=0 answers",
      "not-argmax (T=0)",
      "near-ties (T=0)",
      "largest T=0 gap",
      "passed",
    ],
    rows.map((row) => [
      row.condition,
      row.provider,
      row.validator,
      String(row.answers),
      tokens(row.promptTokens),
      nats(row.worstChunk.p99),
      nats(row.worstChunk.max),
      nats(row.maxPosition.max),
      String(row.temperatureZero),
      String(row.notArgmax),
      String(row.nearTies),
      nats(row.largestArgmaxGap),
      share(row.passed, row.answers),
    ]),
  );
}

function cheatTable(rows: readonly Row[]) {
  return markdownTable(
    [
      "cheat",
      "validator",
      "answers",
      "worst chunk err min",
      "worst chunk err median",
      "max position err min",
      "max position err median",
      "not-argmax (T=0)",
      "detected",
      "caught by",
    ],
    rows.map((row) => [
      row.condition,
      row.validator,
      String(row.answers),
      nats(row.worstChunk.min),
      nats(row.worstChunk.median),
      nats(row.maxPosition.min),
      nats(row.maxPosition.median),
      String(row.notArgmax),
      share(row.answers - row.passed, row.answers),
      Object.entries(row.caughtBy)
        .sort((a, b) => b[1] - a[1])
        .map(([code, count]) => `${code} ${count}`)
        .join(", ") || "-",
    ]),
  );
}

/** How far the current tolerances sit from the worst honest answer and from the closest fingerprint cheat. */
function margins(samples: readonly Sample[], weightType: string) {
  const tolerances: AuditTolerances = tolerancesFor(weightType);
  const honest = samples.filter((sample) => sample.group === `${weightType} honest`);
  // Cheats only the fingerprints can catch (the accounting cheats are caught whatever the tolerances).
  const cheats = samples.filter(
    (sample) =>
      sample.group === `cheat vs ${weightType}` &&
      !sample.condition.includes("information") &&
      !["truncated", "inflated"].includes(sample.condition),
  );
  const worst = (values: number[]) => Math.max(0, ...values);
  const least = (values: number[]) => (values.length === 0 ? Number.NaN : Math.min(...values));
  const closest = cheats.filter((sample) => sample.condition.startsWith("lower_quant"));
  const nearest = closest.length > 0 ? closest : cheats;
  return {
    weightType,
    tolerances,
    honest: {
      answers: honest.length,
      worstChunk: worst(honest.map((sample) => sample.worstChunkGapError)),
      maxPosition: worst(honest.map((sample) => sample.maxGapError)),
      largestArgmaxGap: worst(honest.map((sample) => sample.largestArgmaxGap)),
      failed: honest.filter((sample) => !sample.pass).length,
    },
    closestCheat: {
      name: nearest[0]?.condition.split(",")[0] ?? "-",
      answers: nearest.length,
      // Answers with a full chunk (an answer shorter than minChunkPositions has no chunk mean).
      worstChunk: least(nearest.filter((sample) => sample.outputTokens >= 8).map((s) => s.worstChunkGapError)),
      maxPosition: least(nearest.map((sample) => sample.maxGapError)),
      passed: cheats.filter((sample) => sample.pass).length,
      of: cheats.length,
    },
  };
}

function marginLines(margin: ReturnType<typeof margins>) {
  const { tolerances, honest, closestCheat } = margin;
  const ratio = (a: number, b: number) => (b > 0 && Number.isFinite(a / b) ? `${(a / b).toFixed(1)}x` : "-");
  return [
    `- ${margin.weightType}: ${honest.answers} honest audits, ${honest.failed} failed; closest cheat ${closestCheat.name} ` +
      `(${closestCheat.answers} audits); fingerprint cheats that passed: ${closestCheat.passed}/${closestCheat.of}`,
    `  - chunk mean error: worst honest ${nats(honest.worstChunk)}, tolerance ${tolerances.chunkMeanGapError} ` +
      `(${ratio(tolerances.chunkMeanGapError, honest.worstChunk)} the worst honest), smallest ${closestCheat.name} ` +
      `${nats(closestCheat.worstChunk)} (${ratio(closestCheat.worstChunk, tolerances.chunkMeanGapError)} the tolerance)`,
    `  - position error: worst honest ${nats(honest.maxPosition)}, tolerance ${tolerances.positionGapError} ` +
      `(${ratio(tolerances.positionGapError, honest.maxPosition)}), smallest ${closestCheat.name} ` +
      `${nats(closestCheat.maxPosition)} (${ratio(closestCheat.maxPosition, tolerances.positionGapError)})`,
    `  - near-tie: largest honest T=0 gap below the argmax ${nats(honest.largestArgmaxGap)}, tolerance ${tolerances.nearTie}`,
  ];
}

async function main() {
  const { values } = parseArgs({ options: { out: { type: "string" } } });
  const root = await mkdtemp(join(tmpdir(), "mycel-calibrate-"));
  try {
    const samples = await measure(root);
    const rowsOf = (group: string) => {
      const inGroup = samples.filter((sample) => sample.group === group);
      const keys = [...new Set(inGroup.map((s) => `${s.condition}\u0000${s.provider}\u0000${s.validator}`))];
      return keys.map((key) =>
        summarize(inGroup.filter((s) => `${s.condition}\u0000${s.provider}\u0000${s.validator}` === key)),
      );
    };
    const f16Honest = samples.filter((sample) => sample.group === "f16 honest");
    const f16Rows = [
      ...rowsOf("f16 honest"),
      ...[0, 0.7, 1].map((temperature) =>
        summarize(
          f16Honest.filter((sample) => sample.temperature === temperature),
          { condition: `temperature ${temperature}`, provider: "all", validator: "all" },
        ),
      ),
      summarize(f16Honest, { condition: "**all f16 honest**", provider: "all", validator: "all" }),
    ];
    const q8Honest = samples.filter((sample) => sample.group === "q8_0 honest");
    const q8Rows = [
      ...rowsOf("q8_0 honest"),
      summarize(q8Honest, { condition: "**all q8_0 honest**", provider: "all", validator: "all" }),
    ];
    const cheatRows = [...rowsOf("cheat vs f16"), ...rowsOf("cheat vs q8_0")];
    const marginList = [margins(samples, "f16"), margins(samples, "q8_0")];
    const cpu = cpus()[0]?.model ?? "unknown CPU";
    const output = [
      `Calibration: small test model (~27.5M params), ${availableParallelism()} cores (${cpu}), node-llama-cpp CPU.`,
      "Errors in nats. Worst chunk err: per answer, the largest mean over a 32-token chunk of the per-position " +
        "error (|provider gap - validator gap|, worst of the 3 gaps and the top-token check); max position err: " +
        "the largest per-position error. Passed/detected: with the tolerances in src/verify/tolerances.ts.",
      "",
      "Honest answers, claimed model small f16:",
      "",
      honestTable(f16Rows),
      "",
      "Honest answers, claimed model small q8_0 (the q8_0 file claimed as itself):",
      "",
      honestTable(q8Rows),
      "",
      "Cheats (provider 1 thread, batch 512):",
      "",
      cheatTable(cheatRows),
      "",
      "Margins of the current tolerances:",
      "",
      ...marginList.flatMap(marginLines),
    ].join("\n");
    console.log(output);
    if (values.out) {
      await writeFile(
        values.out,
        `${JSON.stringify(
          {
            date: new Date().toISOString(),
            machine: { cores: availableParallelism(), cpu },
            tolerances: auditTolerances,
            honest: { f16: f16Rows, q8_0: q8Rows },
            cheats: cheatRows,
            margins: marginList,
            samples,
          },
          null,
          2,
        )}\n`,
      );
      progress(`wrote ${values.out}`);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
    process.stderr.write(`runtime: ${((performance.now() - runStarted) / 1000).toFixed(1)} s\n`);
  }
}

await main();
