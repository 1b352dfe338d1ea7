/**
 * Verification benchmark: what auditing an answer costs next to generating it, and how well audits tell honest
 * answers from cheating ones, on the small test model. (1) audit time / generation time for outputs of 64, 256
 * and 1,024 tokens; (2) detection rate per cheat of test/fixtures/cheats.ts over 100 audited answers each;
 * (3) false positives over 500 honest audited answers, across temperatures, prompt lengths and provider
 * settings. Run with `npm run bench:verify`; see bench/verify/README.md.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import type { Engine, EngineOptions } from "../../src/engine/index.ts";
import type { AuditInput, InferenceRequest } from "../../src/protocol/index.ts";
import {
  type Auditor,
  type AuditVerdict,
  auditBatchSize,
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
import { watchOtherProcessesCpu } from "../network/processes.ts";
import { formatTable, median, roundDown, roundUp, verdict } from "../shared/report.ts";
import { claimingQ8, longPromptRequest } from "./requests.ts";

/** Section 1: output lengths and timed rounds per length (medians). */
const outputLengths = [64, 256, 1024] as const;
const rounds = 5;
/** The output length the ratio target is about. */
const targetLength = 256;
/** Section 2: audited answers per cheat, and their max_tokens (cycled). */
const answersPerCheat = 100;
const cheatMaxTokens = [32, 48, 64];
/**
 * Section 3: honest answers per provider setting (500 in all); every `longPromptEvery`-th request has a long
 * prompt (cycling through `longPromptBytes`, up to the test model's whole 2048-token window).
 */
const honestPlan: { label: string; options: Partial<EngineOptions>; answers: number }[] = [
  {
    label: "1 thread, batch 512 (default)",
    options: { threadsPerSequence: 1, batchSize: 512 },
    answers: 250,
  },
  { label: "1 thread, batch 64", options: { threadsPerSequence: 1, batchSize: 64 }, answers: 100 },
  { label: "1 thread, batch 16", options: { threadsPerSequence: 1, batchSize: 16 }, answers: 100 },
  { label: "2 threads, batch 512", options: { threadsPerSequence: 2, batchSize: 512 }, answers: 50 },
];
const honestMaxTokens = [32, 48, 64];
const longPromptEvery = 10;
const longPromptBytes = [600, 1000, 1400, 1850];
const targets = { ratio: 0.1, detection: 0.99, falsePositives: 0 };

const runStarted = performance.now();
function progress(message: string) {
  process.stderr.write(`[verify ${((performance.now() - runStarted) / 1000).toFixed(1)} s] ${message}\n`);
}

/** The validator's default settings (`mycel validator` and `mycel audit`): every core, batches of auditBatchSize. */
const validatorThreads = availableParallelism();

/**
 * An honest answer of exactly `tokens` tokens: temperature 1, max_tokens `tokens`, and the first seed from 1
 * whose answer does not end early (the test model rarely emits end-of-generation).
 */
async function exactRequest(engine: Engine, claim: CheatModels, tokens: number): Promise<InferenceRequest> {
  const base = fixtureRequest({ models: claim, index: 0, maxTokens: tokens, temperature: 1 });
  for (let seed = 1; seed <= 20; seed++) {
    const request = { ...base, seed };
    const answer = await honestAnswer({ engine, models: claim, request });
    if (answer.outputTokens.length === tokens && answer.finishReason === "length") return request;
  }
  throw new Error(`no seed in 1..20 gives an answer of ${tokens} tokens`);
}

type Timing = { generationMs: number[]; auditMs: number[]; auditOneThreadMs: number[]; evaluateMs: number[] };

/** Section 1: generation and audit side by side, per model and output length. */
async function measureRatio(parameters: {
  home: string;
  models: CheatModels;
  auditor: Auditor;
  oneThreadAuditor: Auditor;
}) {
  const { home, models, auditor, oneThreadAuditor } = parameters;
  const claims = [
    { label: "small q8_0", claim: claimingQ8(models) },
    { label: "small f16", claim: models },
  ];
  const engine = await cheatEngine({ home, models, options: { threadsPerSequence: 1 } });
  const timings = new Map<string, Timing>();
  const requests = new Map<string, InferenceRequest>();
  let promptTokens = 0;
  try {
    for (const { label, claim } of claims)
      for (const tokens of outputLengths) {
        progress(`section 1: finding a seed for ${tokens} tokens of ${label} (also the warm-up)`);
        const request = await exactRequest(engine, claim, tokens);
        requests.set(`${label}/${tokens}`, request);
        timings.set(`${label}/${tokens}`, {
          generationMs: [],
          auditMs: [],
          auditOneThreadMs: [],
          evaluateMs: [],
        });
        const input = await honestAnswer({ engine, models: claim, request });
        promptTokens = input.promptTokens.length;
        await auditor.audit(input);
        await oneThreadAuditor.audit(input);
      }
    for (let round = 0; round < rounds; round++) {
      progress(`section 1: round ${round + 1} of ${rounds}`);
      for (const { label, claim } of claims)
        for (const tokens of outputLengths) {
          const key = `${label}/${tokens}`;
          const timing = timings.get(key) as Timing;
          let started = performance.now();
          const input = await honestAnswer({
            engine,
            models: claim,
            request: requests.get(key) as InferenceRequest,
          });
          timing.generationMs.push(performance.now() - started);
          if (input.outputTokens.length !== tokens)
            throw new Error(`a ${key} answer has ${input.outputTokens.length} tokens, not ${tokens}`);
          started = performance.now();
          const result = await auditor.audit(input);
          timing.auditMs.push(performance.now() - started);
          timing.evaluateMs.push(result.metrics.evaluateMs);
          if (result.verdict !== "pass") throw new Error(`an honest ${key} answer failed its audit`);
          started = performance.now();
          await oneThreadAuditor.audit(input);
          timing.auditOneThreadMs.push(performance.now() - started);
        }
    }
  } finally {
    await engine.close();
  }
  console.log(
    `1. audit time / generation time: prompt of ${promptTokens} tokens, temperature 1, a fixed seed per length; ` +
      "generation: honest answer (engine.generate, 1 llama.cpp thread: the provider's setting, plus evidence " +
      `and receipt); audit: auditor.audit with the validator's default settings (${validatorThreads} threads = ` +
      `every core, batch ${auditBatchSize}) and, for comparison, 1 thread; medians of ${rounds} rounds`,
  );
  const rows: string[][] = [];
  const ratios = new Map<string, number>();
  for (const { label } of claims)
    for (const tokens of outputLengths) {
      const timing = timings.get(`${label}/${tokens}`) as Timing;
      const generation = median(timing.generationMs);
      const audit = median(timing.auditMs);
      const oneThread = median(timing.auditOneThreadMs);
      ratios.set(`${label}/${tokens}`, audit / generation);
      rows.push([
        label,
        String(tokens),
        generation.toFixed(0),
        audit.toFixed(0),
        median(timing.evaluateMs).toFixed(0),
        roundUp(audit / generation, 3).toFixed(3),
        oneThread.toFixed(0),
        roundUp(oneThread / generation, 3).toFixed(3),
      ]);
    }
  console.log(
    formatTable(
      [
        "model",
        "output tokens",
        "generation ms",
        `audit ms (${validatorThreads} thr)`,
        "of which evaluate",
        "audit/generation",
        "audit ms (1 thr)",
        "audit/generation",
      ],
      rows,
    ),
  );
  console.log("");
  return ratios.get(`small q8_0/${targetLength}`) as number;
}

type Outcome = { input: AuditInput; result: AuditVerdict };

/** Section 2: every cheat on `answersPerCheat` varied requests. */
async function measureDetection(parameters: { home: string; models: CheatModels; auditor: Auditor }) {
  const { home, models, auditor } = parameters;
  const engine = await cheatEngine({ home, models, options: { threadsPerSequence: 1 } });
  const outcomes = new Map<CheatName, Outcome[]>();
  try {
    for (const cheat of cheatNames) {
      progress(`section 2: ${answersPerCheat} answers of the cheat ${cheat}`);
      const list: Outcome[] = [];
      for (let index = 0; index < answersPerCheat; index++) {
        const request = fixtureRequest({
          models,
          index: 1000 + index,
          maxTokens: cheatMaxTokens[index % cheatMaxTokens.length],
        });
        const input = await cheatingAnswer({ engine, models, request, cheat });
        list.push({ input, result: await auditor.audit(input) });
      }
      outcomes.set(cheat, list);
    }
  } finally {
    await engine.close();
  }
  console.log(
    `2. detection per cheat: ${answersPerCheat} answers each (fixture requests 1000-${999 + answersPerCheat}: ` +
      `prompts of 90-335 tokens, temperatures 0, 0.7 and 1, max_tokens ${cheatMaxTokens.join("/")}), claimed ` +
      `model small f16, provider 1 thread; validator ${validatorThreads} threads; f16 tolerances ` +
      JSON.stringify(tolerancesFor("f16")),
  );
  const rows = cheatNames.map((cheat) => {
    const list = outcomes.get(cheat) as Outcome[];
    const caught = list.filter((outcome) => outcome.result.verdict === "fail");
    const reasons: Record<string, number> = {};
    for (const outcome of caught)
      for (const code of new Set(outcome.result.reasons.map((reason) => reason.code)))
        reasons[code] = (reasons[code] ?? 0) + 1;
    const smallest = (pick: (outcome: Outcome) => number) => Math.min(...list.map(pick)).toFixed(4);
    return [
      cheat,
      String(list.length),
      String(caught.length),
      smallest((outcome) => outcome.result.metrics.worstChunkGapError),
      smallest((outcome) => outcome.result.metrics.maxGapError),
      Object.entries(reasons)
        .sort((a, b) => b[1] - a[1])
        .map(([code, count]) => `${code} ${count}`)
        .join(", "),
    ];
  });
  console.log(
    formatTable(
      ["cheat", "answers", "detected", "min worst chunk err", "min max position err", "caught by (answers)"],
      rows,
    ),
  );
  for (const cheat of cheatNames)
    for (const outcome of (outcomes.get(cheat) as Outcome[]).filter((o) => o.result.verdict === "pass")) {
      const { metrics } = outcome.result;
      console.log(
        `   passed: ${cheat}, prompt ${metrics.promptTokens} tokens, output ${metrics.outputTokens}, ` +
          `T=${metrics.temperature}, worst chunk err ${metrics.worstChunkGapError}, max position err ${metrics.maxGapError}`,
      );
    }
  console.log("");
  return new Map(
    cheatNames.map((cheat) => {
      const list = outcomes.get(cheat) as Outcome[];
      return [cheat, list.filter((o) => o.result.verdict === "fail").length / list.length];
    }),
  );
}

/** Section 3: honest answers across provider settings, temperatures and prompt lengths. */
async function measureFalsePositives(parameters: { home: string; models: CheatModels; auditor: Auditor }) {
  const { home, models, auditor } = parameters;
  const rows: string[][] = [];
  const failures: { label: string; outcome: Outcome }[] = [];
  let total = 0;
  let index = 2000;
  for (const setting of honestPlan) {
    const engine = await cheatEngine({ home, models, options: setting.options });
    progress(`section 3: ${setting.answers} honest answers, provider ${setting.label}`);
    const outcomes: Outcome[] = [];
    let longPrompts = 0;
    try {
      for (let count = 0; count < setting.answers; count++, index++) {
        const maxTokens = honestMaxTokens[index % honestMaxTokens.length];
        const long = index % longPromptEvery === 0;
        const request = long
          ? longPromptRequest({
              models,
              index,
              maxTokens,
              promptBytes: longPromptBytes[(index / longPromptEvery) % longPromptBytes.length] as number,
            })
          : fixtureRequest({ models, index, maxTokens });
        if (long) longPrompts++;
        const input = await honestAnswer({ engine, models, request });
        const outcome = { input, result: await auditor.audit(input) };
        outcomes.push(outcome);
        if (outcome.result.verdict === "fail") failures.push({ label: setting.label, outcome });
      }
    } finally {
      await engine.close();
    }
    total += outcomes.length;
    const byTemperature = (temperature: number) =>
      String(outcomes.filter((o) => o.input.request.temperature === temperature).length);
    const prompts = outcomes.map((o) => o.input.promptTokens.length);
    rows.push([
      setting.label,
      String(outcomes.length),
      byTemperature(0),
      byTemperature(0.7),
      byTemperature(1),
      `${Math.min(...prompts)}-${Math.max(...prompts)}`,
      String(longPrompts),
      Math.max(...outcomes.map((o) => o.result.metrics.worstChunkGapError)).toFixed(4),
      Math.max(...outcomes.map((o) => o.result.metrics.maxGapError)).toFixed(4),
      String(outcomes.filter((o) => o.result.verdict === "fail").length),
    ]);
  }
  console.log(
    `3. false positives: ${total} honest answers (fixture requests 2000-${1999 + total}, max_tokens ` +
      `${honestMaxTokens.join("/")}; every ${longPromptEvery}th with a prompt of ${longPromptBytes.join("/")} ` +
      `tokens), claimed model small f16; validator ${validatorThreads} threads`,
  );
  console.log(
    formatTable(
      [
        "provider",
        "answers",
        "T=0",
        "T=0.7",
        "T=1",
        "prompt tokens",
        "long prompts",
        "max worst chunk err",
        "max position err",
        "failed",
      ],
      rows,
    ),
  );
  for (const { label, outcome } of failures) {
    const { metrics } = outcome.result;
    console.log(
      `   failed: provider ${label}, prompt ${metrics.promptTokens} tokens, output ${metrics.outputTokens}, ` +
        `T=${metrics.temperature}: ${outcome.result.reasons.map((reason) => reason.message).join("; ")}`,
    );
  }
  console.log("");
  return { total, failed: failures.length };
}

async function main() {
  const root = await mkdtemp(join(tmpdir(), "mycel-bench-verify-"));
  const home = join(root, "home");
  const auditors: Auditor[] = [];
  try {
    progress("adding the test models (small: seed 1 f16 claimed, seed 2 f16, seed 1 q8_0)");
    const models = await addCheatModels(home);
    const auditor = createAuditor({ home, engineOptions: { threadsPerSequence: validatorThreads } });
    const oneThreadAuditor = createAuditor({ home, engineOptions: { threadsPerSequence: 1 } });
    auditors.push(auditor, oneThreadAuditor);
    const cpuWatch = watchOtherProcessesCpu();
    const ratio = await measureRatio({ home, models, auditor, oneThreadAuditor });
    const detection = await measureDetection({ home, models, auditor });
    const honest = await measureFalsePositives({ home, models, auditor });
    const otherCpu = cpuWatch.stop();
    if (otherCpu !== undefined)
      console.log(
        `other processes used ${(otherCpu * 100).toFixed(1)}% of the machine's CPU during the run ` +
          "(above a few percent the timings of section 1 are noisy: rerun on an idle machine)\n",
      );

    console.log(
      `audit/generation at ${targetLength} tokens: ${roundUp(ratio, 2).toFixed(2)} ` +
        `(target <= ${targets.ratio}) ${verdict(ratio <= targets.ratio)}`,
    );
    for (const cheat of cheatNames) {
      const rate = detection.get(cheat) as number;
      console.log(
        `detection rate, ${cheat}: ${roundDown(rate * 100, 1).toFixed(1)}% ` +
          `(target >= ${targets.detection * 100}%) ${verdict(rate >= targets.detection)}`,
      );
    }
    console.log(
      `false positives over ${honest.total} honest answers: ${honest.failed} ` +
        `(target ${targets.falsePositives}) ${verdict(honest.failed <= targets.falsePositives)}`,
    );
  } finally {
    for (const auditor of auditors) await auditor.close();
    await rm(root, { recursive: true, force: true });
    process.stderr.write(`runtime: ${((performance.now() - runStarted) / 1000).toFixed(1)} s\n`);
  }
}

await main();
