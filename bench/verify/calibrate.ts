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
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import type { AuditInput, InferenceRequest } from "../../src/protocol/index.ts";
import {
  type Auditor,
  type AuditTolerances,
  auditAnswer,
  auditBatchSize,
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
import { claimingQ8, longPromptRequest, verifyBenchModel } from "./requests.ts";

const repositoryRoot = resolve(import.meta.dirname, "../..");
/** The test model the answers claim (MYCEL_BENCH_VERIFY_MODEL; default the small one). */
const benchModel = verifyBenchModel();
const runStarted = performance.now();
function progress(message: string) {
  process.stderr.write(`[calibrate ${((performance.now() - runStarted) / 1000).toFixed(1)} s] ${message}\n`);
}

/** Answers per condition (each condition varies one setting from the baseline). */
const counts = {
  baseline: 30,
  longOutputs: 6,
  providerThreads: 6,
  providerBatch: 8,
  separateProcess: 16,
  q8Baseline: 18,
  q8Setting: 4,
  f32: 3,
  cheat: 20,
  cheatExtra: 6,
  q8Cheat: 10,
};
/**
 * The long-prompt conditions: prompt size (bytes of the user message: about as many tokens) and answers, up to the
 * test model's whole 2048-token window (with 64 output tokens), where honest drift is largest.
 */
const longPromptConditions = [
  { bytes: 600, answers: 3 },
  { bytes: 1000, answers: 3 },
  { bytes: 1400, answers: 4 },
  { bytes: 1850, answers: 8 },
];
/** max_tokens of the long-prompt conditions. */
const longPromptOutputTokens = 64;
/** max_tokens of the long-output conditions. */
const longOutputTokens = 256;

/** Provider (generation) settings: the provider's default is 1 thread, batch 512. */
type Setting = { label: string; options: Partial<EngineOptions> };
const provider = {
  base: { label: "1 thread, batch 512", options: { threadsPerSequence: 1, batchSize: 512 } },
  threads2: { label: "2 threads, batch 512", options: { threadsPerSequence: 2, batchSize: 512 } },
  threads4: { label: "4 threads, batch 512", options: { threadsPerSequence: 4, batchSize: 512 } },
  batch64: { label: "1 thread, batch 64", options: { threadsPerSequence: 1, batchSize: 64 } },
  batch16: { label: "1 thread, batch 16", options: { threadsPerSequence: 1, batchSize: 16 } },
} satisfies Record<string, Setting>;
/** Validator (re-evaluation) settings, given to createAuditor as engineOptions. */
const validator = {
  base: { label: "1 thread, as the provider decoded (default)", options: { threadsPerSequence: 1 } },
  threads2: { label: "2 threads, as the provider decoded", options: { threadsPerSequence: 2 } },
  batch32: {
    label: `1 thread, all in batches of ${auditBatchSize} (the audit before 2026-12: information)`,
    options: { threadsPerSequence: 1, batchSize: auditBatchSize },
  },
} satisfies Record<string, Setting>;

/** Audits as validators run them (the re-evaluation of reEvaluationBatchesOf); "information" rows compare. */
const asAudited = (sample: { validator: string }) => !sample.validator.includes("information");
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
  for (const sample of samples)
    for (const code of new Set(sample.reasons)) caughtBy[code] = (caughtBy[code] ?? 0) + 1;
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
    maxPosition: {
      min: Math.min(...position),
      median: percentile(position, 0.5),
      max: Math.max(...position),
    },
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
  progress(`adding the test models (${benchModel.label} claimed, its seed 2 in f16, its q8_0 and f32)`);
  const models = await addCheatModels(home, benchModel);
  const q8 = claimingQ8(models);
  const f32Model = generateTestModel({
    size: benchModel.size,
    tokenizer: benchModel.tokenizer,
    seed: 1,
    quant: "f32",
  });
  const f32Hash = (
    await openModelStore({ home }).addBytes({
      bytes: f32Model.bytes,
      name: f32Model.name,
      source: "calibrate",
    })
  ).model.hash;
  const f32: CheatModels = { claimed: f32Hash, other: f32Hash, lowerQuant: f32Hash };
  const validators = createValidators(home);
  const samples: Sample[] = [];
  const record = (
    group: string,
    condition: string,
    setting: Setting,
    answers: AuditInput[],
    names: ValidatorName[],
  ) =>
    auditAll({ validators, samples, group, condition, providerLabel: setting.label, answers, with: names });
  const fixture = (claim: CheatModels, start: number, count: number, maxTokens?: number) =>
    range(start, count).map((index) => fixtureRequest({ models: claim, index, maxTokens }));
  const longPrompts = (claim: CheatModels, start: number, count: number, promptBytes: number) =>
    range(start, count).map((index) =>
      longPromptRequest({ models: claim, index, promptBytes, maxTokens: longPromptOutputTokens }),
    );
  const cheating = async (
    engine: Engine,
    claim: CheatModels,
    requests: InferenceRequest[],
    cheat: CheatName,
  ) => {
    const answers: AuditInput[] = [];
    for (const request of requests)
      answers.push(await cheatingAnswer({ engine, models: claim, request, cheat }));
    return answers;
  };
  try {
    // The provider's default settings (1 thread, batch 512): the baseline, prompt and output lengths, the q8_0
    // and f32 claims, and the cheats.
    let engine = await cheatEngine({ home, models, options: provider.base.options });
    progress(`generating ${counts.baseline} baseline answers (provider ${provider.base.label})`);
    const baseline = await honestAnswers(engine, models, fixture(models, 0, counts.baseline));
    await record("f16 honest", "baseline", provider.base, baseline, ["base"]);
    await record("f16 honest", "validator threads", provider.base, baseline, ["threads2"]);
    await record("f16 honest", "validator batch", provider.base, baseline, ["batch32"]);
    for (const [offset, { bytes, answers: count }] of longPromptConditions.entries()) {
      progress(`generating ${count} answers to ~${bytes}-token prompts`);
      const answers = await honestAnswers(
        engine,
        models,
        longPrompts(models, 100 + 10 * offset, count, bytes),
      );
      await record("f16 honest", `prompts ~${bytes} tokens`, provider.base, answers, ["base", "batch32"]);
    }
    progress(`generating ${counts.longOutputs} answers of ${longOutputTokens} tokens`);
    const longOutputs = await honestAnswers(
      engine,
      models,
      fixture(models, 150, counts.longOutputs, longOutputTokens),
    );
    await record("f16 honest", `outputs of ${longOutputTokens} tokens`, provider.base, longOutputs, ["base"]);

    progress(`generating honest q8_0 answers claimed as q8_0`);
    const q8Baseline = await honestAnswers(engine, q8, fixture(q8, 0, counts.q8Baseline));
    await record("q8_0 honest", "baseline", provider.base, q8Baseline, ["base"]);
    await record("q8_0 honest", "validator threads", provider.base, q8Baseline, ["threads2"]);
    await record("q8_0 honest", "validator batch", provider.base, q8Baseline, ["batch32"]);
    for (const bytes of [1000, 1850]) {
      const answers = await honestAnswers(engine, q8, longPrompts(q8, 100, counts.q8Setting, bytes));
      await record("q8_0 honest", `prompts ~${bytes} tokens`, provider.base, answers, ["base"]);
    }

    for (const cheat of cheatNames) {
      progress(`generating ${counts.cheat} answers of the cheat ${cheat}`);
      const answers = await cheating(engine, models, fixture(models, 200, counts.cheat), cheat);
      await record("cheat vs f16", cheat, provider.base, answers, ["base"]);
      if (cheat !== "lower_quant") continue;
      // The cheat closest to honest: also under the other validator settings and with long prompts and outputs.
      await record("cheat vs f16", cheat, provider.base, answers, ["threads2", "batch32"]);
      const longer = await cheating(
        engine,
        models,
        [
          ...longPrompts(models, 300, counts.cheatExtra / 2, 1000),
          ...longPrompts(models, 310, counts.cheatExtra / 2, 1850),
          ...fixture(models, 320, counts.cheatExtra, longOutputTokens),
        ],
        cheat,
      );
      await record("cheat vs f16", "lower_quant, long prompts and outputs", provider.base, longer, ["base"]);
    }
    const q8Cheats: { cheat: CheatName; label: string }[] = [
      { cheat: "another_model", label: "another_model" },
      { cheat: "changed_prompt", label: "changed_prompt" },
      { cheat: "fabricated", label: "fabricated" },
      { cheat: "lower_quant", label: "f16 served, q8_0 claimed (information)" },
    ];
    for (const { cheat, label } of q8Cheats) {
      progress(`generating ${counts.q8Cheat} answers against a q8_0 claim: ${label}`);
      const answers = await cheating(engine, q8, fixture(q8, 400, counts.q8Cheat), cheat);
      await record("cheat vs q8_0", label, provider.base, answers, ["base"]);
    }
    await engine.close();

    progress(`generating honest f32 answers claimed as f32`);
    engine = await cheatEngine({ home, models: f32, options: provider.base.options });
    const f32Answers = await honestAnswers(engine, f32, [
      ...fixture(f32, 0, counts.f32),
      ...longPrompts(f32, 100, counts.f32, 1000),
      ...longPrompts(f32, 110, 2 * counts.f32, 1850),
    ]);
    await record("f32 honest", "short and long prompts", provider.base, f32Answers, ["base"]);
    await engine.close();

    // Other provider settings.
    const others = [
      { setting: provider.threads2, condition: "provider threads", start: 40, count: counts.providerThreads },
      { setting: provider.threads4, condition: "provider threads", start: 50, count: counts.providerThreads },
      { setting: provider.batch64, condition: "provider batch", start: 60, count: counts.providerBatch },
      { setting: provider.batch16, condition: "provider batch", start: 80, count: counts.providerBatch },
    ];
    for (const { setting, condition, start, count } of others) {
      engine = await cheatEngine({ home, models, options: setting.options });
      progress(`generating ${count} answers with provider ${setting.label}`);
      const answers = await honestAnswers(engine, models, [
        ...fixture(models, start, count - 2),
        // Threads change a provider's decode with the context's length: the end of the window for them.
        ...longPrompts(models, start, 2, setting.options.threadsPerSequence > 1 ? 1850 : 1400),
      ]);
      await record("f16 honest", condition, setting, answers, ["base"]);
      if (setting.options.threadsPerSequence > 1) {
        // The closest cheat, re-evaluated as a multi-thread provider's answers are (output in large batches).
        const cheats = await cheating(
          engine,
          models,
          [...fixture(models, start + 300, 2), ...longPrompts(models, start + 300, 2, 1850)],
          "lower_quant",
        );
        await record("cheat vs f16", `lower_quant, provider ${setting.label}`, setting, cheats, ["base"]);
      }
      if (setting !== provider.batch64) {
        const q8Answers = await honestAnswers(engine, q8, fixture(q8, start, counts.q8Setting));
        await record("q8_0 honest", condition, setting, q8Answers, ["base"]);
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
        requests: fixture(models, 160, counts.separateProcess),
      },
    });
    await record("f16 honest", "separate processes", provider.base, childAnswers, ["base", "threads2"]);
  } finally {
    await validators.close();
  }
  return samples;
}

const nats = (value: number) => (Number.isFinite(value) ? value.toFixed(4) : String(value));
const share = (part: number, whole: number) => `${part}/${whole}`;
const tokens = ([low, high]: [number, number]) => (low === high ? `${low}` : `${low}-${high}`);

/** A markdown table with its columns padded to one width. */
function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]) {
  const widths = header.map((title, column) =>
    Math.max(3, title.length, ...rows.map((row) => (row[column] ?? "").length)),
  );
  const line = (cells: readonly string[]) =>
    `| ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(" | ")} |`;
  return [line(header), line(widths.map((width) => "-".repeat(width))), ...rows.map(line)].join("\n");
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
  const honest = samples.filter((sample) => sample.group === `${weightType} honest` && asAudited(sample));
  // Cheats only the fingerprints can catch (the accounting cheats are caught whatever the tolerances).
  const cheats = samples.filter(
    (sample) =>
      sample.group === `cheat vs ${weightType}` &&
      asAudited(sample) &&
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
      worstChunk: least(
        nearest.filter((sample) => sample.outputTokens >= 8).map((s) => s.worstChunkGapError),
      ),
      maxPosition: least(nearest.map((sample) => sample.maxGapError)),
      passed: cheats.filter((sample) => sample.pass).length,
      of: cheats.length,
    },
  };
}

function marginLines(margin: ReturnType<typeof margins>) {
  const { tolerances, honest, closestCheat } = margin;
  const ratio = (a: number, b: number) => (b > 0 && Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : "-");
  return [
    `- ${margin.weightType}: ${honest.answers} honest audits, ${honest.failed} failed; closest cheat ${closestCheat.name} ` +
      `(${closestCheat.answers} audits); audits of fingerprint cheats that passed: ${closestCheat.passed}/${closestCheat.of}`,
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
    const f16Honest = samples.filter((sample) => sample.group === "f16 honest" && asAudited(sample));
    const f16Rows = [
      ...rowsOf("f16 honest"),
      ...[0, 0.7, 1].map((temperature) =>
        summarize(
          f16Honest.filter((sample) => sample.temperature === temperature),
          { condition: `temperature ${temperature}`, provider: "all", validator: "as audited" },
        ),
      ),
      summarize(f16Honest, { condition: "**all f16 honest**", provider: "all", validator: "as audited" }),
    ];
    const q8Honest = samples.filter((sample) => sample.group === "q8_0 honest" && asAudited(sample));
    const q8Rows = [
      ...rowsOf("q8_0 honest"),
      summarize(q8Honest, { condition: "**all q8_0 honest**", provider: "all", validator: "as audited" }),
    ];
    const f32Rows = rowsOf("f32 honest");
    const cheatRows = [...rowsOf("cheat vs f16"), ...rowsOf("cheat vs q8_0")];
    const marginList = [margins(samples, "f16"), margins(samples, "q8_0"), margins(samples, "f32")];
    const cpu = cpus()[0]?.model ?? "unknown CPU";
    const output = [
      `Calibration: test model ${benchModel.label} (MYCEL_BENCH_VERIFY_MODEL), ${availableParallelism()} cores (${cpu}), node-llama-cpp CPU.`,
      "Errors in nats. Worst chunk err: per answer, the largest mean over a 32-token chunk of the per-position " +
        "error (|provider gap - validator gap|, worst of the 3 gaps and the top-token check); max position err: " +
        "the largest per-position error. Passed/detected: with the tolerances in src/verify/tolerances.ts.",
      "",
      "Honest answers, claimed model f16:",
      "",
      honestTable(f16Rows),
      "",
      "Honest answers, claimed model q8_0 (the q8_0 file claimed as itself):",
      "",
      honestTable(q8Rows),
      "",
      "Honest answers, claimed model f32 (the f32 file claimed as itself):",
      "",
      honestTable(f32Rows),
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
            honest: { f16: f16Rows, q8_0: q8Rows, f32: f32Rows },
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
