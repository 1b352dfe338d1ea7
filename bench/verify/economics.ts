/**
 * Economics benchmark: what audits cost the network, and the audit rate at which cheating stops paying (proof of
 * sampling), from the defaults (price, stake, slash, audit rate) and the audit / generation cost measured on the
 * real engine in the same run (the medium test model by default). Run with `npm run bench:economics`; see
 * bench/verify/README.md ("Economics") and docs/VERIFICATION.md ("Economics").
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultDeployParameters, devnetDeployParameters } from "../../src/chain/index.ts";
import { roleDefaults } from "../../src/config/index.ts";
import { createEngine, type Engine } from "../../src/engine/index.ts";
import { openModelStore, type TestModelSize } from "../../src/model/index.ts";
import type { InferenceRequest } from "../../src/protocol/index.ts";
import { challengePrompts } from "../../src/validator/index.ts";
import { type Auditor, createAuditor } from "../../src/verify/index.ts";
import { type CheatModels, honestAnswer } from "../../test/fixtures/cheats.ts";
import { watchOtherProcessesCpu } from "../network/processes.ts";
import { formatTable, median, roundUp, verdict } from "../shared/report.ts";
import { addTestModel } from "../shared/testModels.ts";
import { exactLengthAnswer, paddedRequest } from "./requests.ts";

/** A GGUF to measure on (MYCEL_BENCH_ECONOMICS_MODEL, e.g. one `mycel model make-test --size medium` wrote). */
const modelPath = process.env.MYCEL_BENCH_ECONOMICS_MODEL;
/** Without a path: the test model size made in memory (MYCEL_BENCH_ECONOMICS_SIZE; default medium). */
const modelSize = (process.env.MYCEL_BENCH_ECONOMICS_SIZE ?? "medium") as TestModelSize;
/** Timed rounds of generation + audit (MYCEL_BENCH_ECONOMICS_ROUNDS; default 3). */
const rounds = Number(process.env.MYCEL_BENCH_ECONOMICS_ROUNDS ?? 3);
/** Prompt and output of the measured answer (MYCEL_BENCH_ECONOMICS_PROMPT_TOKENS / _OUTPUT_TOKENS). */
const promptTokensWanted = Number(process.env.MYCEL_BENCH_ECONOMICS_PROMPT_TOKENS ?? 300);
const outputTokens = Number(process.env.MYCEL_BENCH_ECONOMICS_OUTPUT_TOKENS ?? 256);
/** llama.cpp threads of the provider and of the validator alike (the issue compares them on equal threads). */
const threads = 1;
/**
 * Probability that one audit of a cheated answer detects it: bench:verify's target (>= 99% per cheat; measured
 * 100% on every cheat of test/fixtures/cheats.ts). The model below is linear in it.
 */
const detectionRate = 0.99;
/** How far above break-even an audit rate must be to count as safe: a factor for what the model leaves out. */
const safetyMargin = 10;
/** Output tokens of a challenge: 16 + randomInt(0, 48) in src/validator/challenges.ts, on average. */
const challengeOutputTokens = 40;
const targets = { overheadPercent: 3 };

for (const [name, value, lowest] of [
  ["MYCEL_BENCH_ECONOMICS_ROUNDS", rounds, 1],
  ["MYCEL_BENCH_ECONOMICS_PROMPT_TOKENS", promptTokensWanted, 16],
  ["MYCEL_BENCH_ECONOMICS_OUTPUT_TOKENS", outputTokens, 8],
] as const)
  if (!Number.isInteger(value) || value < lowest)
    throw new Error(`${name}: expected a whole number of at least ${lowest}, got ${value}`);
if (!modelPath && !["tiny", "small", "medium"].includes(modelSize))
  throw new Error(`MYCEL_BENCH_ECONOMICS_SIZE: expected tiny, small or medium, got ${modelSize}`);

const runStarted = performance.now();
function progress(message: string) {
  process.stderr.write(`[economics ${((performance.now() - runStarted) / 1000).toFixed(1)} s] ${message}\n`);
}

/** Whole tokens of an 18-decimal amount in the token's smallest unit, as a float (for ratios). */
const tokensOf = (units: bigint) => Number(units) / 1e18;

/** Times generation (the provider's whole side) and the audit of the same answer, `rounds` times each. */
async function timeAnswer(parameters: {
  engine: Engine;
  auditor: Auditor;
  models: CheatModels;
  request: InferenceRequest;
  rounds: number;
}) {
  const generationMs: number[] = [];
  const auditMs: number[] = [];
  const failures: string[] = [];
  for (let round = 0; round < parameters.rounds; round++) {
    let started = performance.now();
    const input = await honestAnswer(parameters);
    generationMs.push(performance.now() - started);
    started = performance.now();
    const result = await parameters.auditor.audit(input);
    auditMs.push(performance.now() - started);
    // Timed all the same: an audit runs its whole evaluation whatever it finds (tolerances are not this bench's).
    if (result.verdict !== "pass") failures.push(result.reasons.map((reason) => reason.code).join("+"));
  }
  return { generationMs: median(generationMs), auditMs: median(auditMs), failures };
}

/** Loads the model into a provider engine and an auditor (both on `threads` threads). */
async function setUp(home: string) {
  const store = openModelStore({ home });
  let label: string;
  let hash: string;
  if (modelPath) {
    const { model } = await store.add({ source: modelPath });
    label = model.name;
    hash = model.hash;
  } else {
    progress(`making the ${modelSize} test model`);
    const { model, made } = await addTestModel({ home, size: modelSize, source: "bench/economics" });
    label = `${made.name} (${(made.parameterCount / 1e6).toFixed(1)}M params, ${made.quant})`;
    hash = model.hash;
  }
  const models: CheatModels = { claimed: hash, other: hash, lowerQuant: hash };
  const engine = createEngine({ options: { parallelism: 1, threadsPerSequence: threads, maxQueue: 16 } });
  await engine.loadModel({ hash, path: store.pathOf(hash), name: hash.slice(0, 12) });
  const auditor = createAuditor({ home, engineOptions: { threadsPerSequence: threads } });
  return { label, models, engine, auditor };
}

/** The proof-of-sampling model over the defaults and the measured cost ratio; see docs/VERIFICATION.md. */
function economics(parameters: { answerTokens: number; auditPerGeneration: number }) {
  const stake = tokensOf(defaultDeployParameters.minimumProviderStake);
  const slashShare = roleDefaults.slashPercent / 100;
  const lossPerCatch = slashShare * stake;
  // What a cheater gains on one answer is at most what the answer is billed (the compute it skips costs an honest
  // provider less than its price; a billed-but-not-generated token gains its price).
  const pricePerToken = tokensOf(roleDefaults.pricePerMillion) / 1e6;
  const gainPerAnswer = parameters.answerTokens * pricePerToken;
  const breakEvenRate = gainPerAnswer / (detectionRate * lossPerCatch);
  const safeRate = Math.min(1, safetyMargin * breakEvenRate);
  const overheadAt = (rate: number) => rate * parameters.auditPerGeneration;
  // The price per 1M tokens at which the default rate is only just enough.
  const breakEvenPricePerMillion =
    (roleDefaults.auditRate * detectionRate * lossPerCatch * 1e6) / parameters.answerTokens;
  // One slashing proposal per provider at a time (it stays open for the voting period): cheating faster than this
  // within one period gains more than one slash takes.
  const deterredAnswersPerSecond = lossPerCatch / (gainPerAnswer * defaultDeployParameters.votingSeconds);
  return {
    stake,
    slashShare,
    lossPerCatch,
    pricePerToken,
    gainPerAnswer,
    breakEvenRate,
    safeRate,
    overheadDefault: overheadAt(roleDefaults.auditRate),
    overheadBreakEven: overheadAt(breakEvenRate),
    overheadSafe: overheadAt(safeRate),
    breakEvenPricePerMillion,
    deterredAnswersPerSecond,
  };
}

/** A share as a percentage (rounded up), in scientific notation when it is below 0.01%. */
const percent = (share: number, digits = 2) =>
  share > 0 && share < 1e-4
    ? `${(share * 100).toExponential(2)}%`
    : `${roundUp(share * 100, digits).toFixed(digits)}%`;
const scientific = (value: number) => value.toExponential(2);

async function main() {
  const home = await mkdtemp(join(tmpdir(), "mycel-bench-economics-"));
  const { label, models, engine, auditor } = await setUp(home);
  try {
    const padded = paddedRequest({ engine, models, tokens: promptTokensWanted, maxTokens: outputTokens });
    progress(`finding a seed for ${outputTokens} output tokens (also the warm-up)`);
    const { request, answer } = await exactLengthAnswer({ engine, models, base: padded.request });
    await auditor.audit(answer);
    const challenge = {
      ...padded.request,
      messages: [{ role: "user", content: challengePrompts[0] as string }],
      max_tokens: challengeOutputTokens,
    };
    const { request: challengeRequest } = await exactLengthAnswer({ engine, models, base: challenge });
    const challengePromptTokens = engine.tokenizeChat({
      modelHash: models.claimed,
      messages: challengeRequest.messages ?? [],
    }).length;
    const others = watchOtherProcessesCpu();
    progress(`timing ${rounds} rounds`);
    const main = await timeAnswer({ engine, auditor, models, request, rounds });
    const small = await timeAnswer({ engine, auditor, models, request: challengeRequest, rounds });
    const otherShare = others.stop();
    const failures = [...main.failures, ...small.failures];
    if (failures.length > 0)
      console.log(
        `note: ${failures.length} of ${2 * rounds} honest answers failed their audit (${failures.join(", ")}): ` +
          "the tolerances do not fit this model (see docs/VERIFICATION.md, Calibration); their timings count\n",
      );
    const auditPerGeneration = main.auditMs / main.generationMs;
    console.log(
      `model ${label}; provider and validator on ${threads} llama.cpp thread each; generation: the provider's ` +
        "whole side (engine.generate with prefill, fingerprints, receipt); audit: auditor.audit (auditAnswer) with " +
        `the validator's settings but ${threads} thread; medians of ${rounds} rounds\n`,
    );
    console.log(
      formatTable(
        ["answer", "prompt tokens", "output tokens", "generation ms", "audit ms", "audit / generation"],
        [
          [
            "user answer",
            String(padded.promptTokens),
            String(outputTokens),
            main.generationMs.toFixed(0),
            main.auditMs.toFixed(0),
            roundUp(auditPerGeneration, 3).toFixed(3),
          ],
          [
            "challenge-sized",
            String(challengePromptTokens),
            String(challengeOutputTokens),
            small.generationMs.toFixed(0),
            small.auditMs.toFixed(0),
            roundUp(small.auditMs / small.generationMs, 3).toFixed(3),
          ],
        ],
      ),
    );
    console.log(
      `(processes other than the bench used ${otherShare === undefined ? "?" : percent(otherShare, 0)} of the machine)\n`,
    );
    const figures = economics({ answerTokens: padded.promptTokens + outputTokens, auditPerGeneration });
    console.log(
      formatTable(
        ["default or figure", "value"],
        [
          [
            "price per 1M tokens (roleDefaults.pricePerMillion)",
            `${tokensOf(roleDefaults.pricePerMillion)} tokens`,
          ],
          [
            "answer price, prompt + output tokens = gain of cheating it (at most)",
            `${scientific(figures.gainPerAnswer)} tokens`,
          ],
          ["minimum provider stake (defaultDeployParameters)", `${figures.stake} tokens`],
          ["slash (roleDefaults.slashPercent)", percent(figures.slashShare, 0)],
          ["loss when caught (slash x stake)", `${figures.lossPerCatch} tokens`],
          ["detection per audited cheat (bench:verify target)", percent(detectionRate, 0)],
          ["break-even audit rate = gain / (detection x loss)", scientific(figures.breakEvenRate)],
          [`lowest safe audit rate (${safetyMargin}x break-even)`, scientific(figures.safeRate)],
          ["default audit rate (roleDefaults.auditRate)", String(roleDefaults.auditRate)],
          [
            "price per 1M tokens at which the default rate is break-even",
            `${figures.breakEvenPricePerMillion.toFixed(0)} tokens`,
          ],
          [
            `cheated answers/s one slash deters per voting period (${defaultDeployParameters.votingSeconds / 86_400} days)`,
            scientific(figures.deterredAnswersPerSecond),
          ],
          [
            "network overhead at the default rate (rate x audit/generation)",
            percent(figures.overheadDefault),
          ],
          ["network overhead at the break-even rate", scientific(figures.overheadBreakEven)],
          [
            `validator CPU for challenges (challenge-sized audit / ${roleDefaults.challengeIntervalSeconds} s)`,
            percent(small.auditMs / (roleDefaults.challengeIntervalSeconds * 1000)),
          ],
        ],
      ),
    );
    console.log(
      `(one validator audits each sampled answer; a slashing proposal is audited again by every validator, only for ` +
        `cheats; the devnet's deployment has the same stake (${tokensOf(devnetDeployParameters.minimumProviderStake)} tokens))\n`,
    );
    console.log(
      `network overhead at the default audit rate ${roleDefaults.auditRate}: ${percent(figures.overheadDefault)} ` +
        "(information: no target)",
    );
    console.log(
      `network overhead at the lowest audit rate that makes cheating unprofitable (${safetyMargin}x break-even, ` +
        `${scientific(figures.safeRate)}): ${percent(figures.overheadSafe)} (target <= ${targets.overheadPercent}%) ` +
        verdict(figures.overheadSafe * 100 <= targets.overheadPercent),
    );
  } finally {
    await engine.close();
    await auditor.close();
    await rm(home, { recursive: true, force: true });
    process.stderr.write(`runtime: ${((performance.now() - runStarted) / 1000).toFixed(1)} s\n`);
  }
}

await main();
