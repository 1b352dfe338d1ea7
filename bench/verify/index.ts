/**
 * Verification benchmark: what auditing an answer costs next to generating it, and how well audits tell honest
 * answers from cheating ones, on the small test model (sections 2 and 3: another with MYCEL_BENCH_VERIFY_MODEL). (1) audit time / generation time for outputs of 64, 256
 * and 1,024 tokens; (2) detection rate per cheat of test/fixtures/cheats.ts (the constrained ones and alters_text included) and of
 * test/fixtures/toolCheats.ts over 100 audited answers each; (3) false positives over 690 honest audited answers
 * (150 of them constrained, 40 forced tool calls), across temperatures, prompt lengths, constraints and provider
 * settings. Run with `npm run bench:verify`; see
 * bench/verify/README.md (it also describes MYCEL_BENCH_VERIFY_SECTIONS and MYCEL_BENCH_VERIFY_SCALE, for quick runs).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import type { Engine, EngineOptions } from "../../src/engine/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import type { AuditInput, InferenceRequest } from "../../src/protocol/index.ts";
import { type Auditor, type AuditVerdict, createAuditor, tolerancesFor } from "../../src/verify/index.ts";
import {
  addCheatModels,
  type CheatModels,
  type ConstraintCheatName,
  cheatEngine,
  cheatingAnswer,
  cheatNames,
  constrainedFixtureRequest,
  constraintCheatingAnswer,
  constraintCheatNames,
  constraintOfCheat,
  fixtureLogitBias,
  fixtureRequest,
  honestAnswer,
  textAlteringAnswer,
} from "../../test/fixtures/cheats.ts";
import {
  fabricatedToolArguments,
  honestToolAnswer,
  toolFixtureRequest,
} from "../../test/fixtures/toolCheats.ts";
import { watchOtherProcessesCpu } from "../network/processes.ts";
import { formatTable, roundDown, roundUp, verdict } from "../shared/report.ts";
import { measureAuditCost } from "./auditCost.ts";
import { longPromptRequest, verifyBenchModel } from "./requests.ts";

/**
 * Which sections run (MYCEL_BENCH_VERIFY_SECTIONS, e.g. "2,3"; default all), and the share of the answers of
 * sections 2 and 3 they audit (MYCEL_BENCH_VERIFY_SCALE, e.g. 0.2 for a quick check; default 1).
 */
const sections = new Set(
  (process.env.MYCEL_BENCH_VERIFY_SECTIONS ?? "1,2,3").split(",").map((s) => s.trim()),
);
const scale = Number(process.env.MYCEL_BENCH_VERIFY_SCALE ?? 1);
if (!(scale > 0 && scale <= 1)) throw new Error("MYCEL_BENCH_VERIFY_SCALE must be a number in (0, 1]");
for (const section of sections)
  if (!["1", "2", "3"].includes(section))
    throw new Error(
      `MYCEL_BENCH_VERIFY_SECTIONS: no section "${section}" (sections are 1, 2 and 3, e.g. "2,3")`,
    );
/** The test model sections 2 and 3 claim (MYCEL_BENCH_VERIFY_MODEL; default the small one). */
const benchModel = verifyBenchModel();
/** A count of answers, scaled (at least 1). */
const scaled = (answers: number) => Math.max(1, Math.ceil(answers * scale));

/** The cheat fixtures' models, and a tool-capable one (gpt2 tiny: its template takes `<tool_call>` blocks). */
type BenchModels = CheatModels & {
  tools: string;
  /** The constrained requests' logit biases, as the claimed model tokenizes them (fixtureLogitBias). */
  logitBias: Record<string, number>;
};

/** Adds the tool-capable model to the store of `home`; returns its hash. */
async function addToolModel(home: string): Promise<string> {
  const made = generateTestModel({ size: "tiny", tokenizer: "gpt2", seed: 1 });
  const { model } = await openModelStore({ home }).addBytes({
    bytes: made.bytes,
    name: made.name,
    source: "bench/verify",
  });
  return model.hash;
}

/** Loads the tool-capable model into `engine` too (the cheat fixtures' engines hold the three small models). */
async function withToolModel(engine: Engine, home: string, models: BenchModels): Promise<Engine> {
  const path = openModelStore({ home }).pathOf(models.tools);
  await engine.loadModel({ hash: models.tools, path, name: "tools" });
  return engine;
}

/** Section 2: audited answers per cheat, the index of the first one's request, and their max_tokens (cycled). */
const answersPerCheat = scaled(100);
const firstCheatIndex = 1000;
const cheatMaxTokens = [32, 48, 64];
/**
 * Section 3: honest answers per provider setting: plain ones (500 in all; every `longPromptEvery`-th request has a
 * long prompt, cycling through `longPromptBytes`, up to the test model's whole 2048-token window) and constrained
 * ones (150 in all; each with the next constraint set of `honestConstraintSets`, cycled, while the request index
 * cycles temperatures 0, 0.7 and 1) and forced tool calls on the tool-capable model (40 in all, temperatures 0, 0.7
 * and 1 by index).
 */
const honestPlan: {
  label: string;
  options: Partial<EngineOptions>;
  answers: number;
  constrained: number;
  tools: number;
}[] = [
  {
    label: "1 thread, batch 512 (default)",
    options: { threadsPerSequence: 1, batchSize: 512 },
    answers: 250,
    constrained: 60,
    tools: 16,
  },
  {
    label: "1 thread, batch 64",
    options: { threadsPerSequence: 1, batchSize: 64 },
    answers: 100,
    constrained: 30,
    tools: 8,
  },
  {
    label: "1 thread, batch 16",
    options: { threadsPerSequence: 1, batchSize: 16 },
    answers: 100,
    constrained: 30,
    tools: 8,
  },
  {
    label: "2 threads, batch 512",
    options: { threadsPerSequence: 2, batchSize: 512 },
    answers: 50,
    constrained: 30,
    tools: 8,
  },
].map((setting) => ({
  ...setting,
  answers: scaled(setting.answers),
  constrained: scaled(setting.constrained),
  tools: scaled(setting.tools),
}));
/** Section 3's honest tool answers: the index of the first one's request (temperatures 0, 0.7 and 1 by index). */
const firstToolIndex = 4000;
const firstConstrainedIndex = 3000;
type Constraint = Parameters<typeof constrainedFixtureRequest>[0]["constraint"];
const honestConstraintSets: readonly (readonly Constraint[])[] = [
  ["json_schema"],
  ["logit_bias"],
  ["penalties"],
  ["json_schema", "logit_bias"],
  ["json_schema", "penalties"],
  ["logit_bias", "penalties"],
  ["json_schema", "logit_bias", "penalties"],
];
const honestMaxTokens = [32, 48, 64];
const longPromptEvery = 10;
const longPromptBytes = [600, 1000, 1400, 1850];
const targets = {
  auditPerForward: 1.3,
  toLimit: 1.3,
  extractionShare: 0.3,
  detection: 0.99,
  falsePositives: 0,
  closestCheatMargin: 2,
};

const runStarted = performance.now();
function progress(message: string) {
  process.stderr.write(`[verify ${((performance.now() - runStarted) / 1000).toFixed(1)} s] ${message}\n`);
}

/** The validator's default settings (`mycel validator` and `mycel audit`): every core, batches of auditBatchSize. */
const validatorThreads = availableParallelism();

/** The answers a cheat changed, and those of them its audit failed. */
function changedAndCaught(list: readonly Outcome[]) {
  const changed = list.filter((outcome) => outcome.changed !== false);
  return { changed, caught: changed.filter((outcome) => outcome.result.verdict === "fail") };
}

/**
 * An audited answer. `changed`: whether the cheat changed anything, its tokens or fingerprints differing from the
 * honest answer to the same request (always, but for a constrained cheat whose dropped constraint changed nothing:
 * that answer is the honest one, and nothing can or need catch it).
 */
type Outcome = { input: AuditInput; result: AuditVerdict; changed?: boolean };

type RequestBuilder = (parameters: { models: BenchModels; index: number }) => InferenceRequest;

/** One cheat of section 2: the request of each of its answers (by index) and how the cheat answers it. */
type DetectionCase = {
  cheat: string;
  request: RequestBuilder;
  answer: (parameters: {
    engine: Engine;
    models: BenchModels;
    request: InferenceRequest;
  }) => Promise<AuditInput>;
  /** Completes a built request with what only the provider's engine can tell (default: as built). */
  prepare?: (parameters: {
    engine: Engine;
    models: BenchModels;
    request: InferenceRequest;
  }) => Promise<InferenceRequest>;
};

/**
 * The logit-bias cheat's request also forbids (-100) the first token the model would answer without the biases:
 * on a real-size vocabulary random weights give distributions so sharp that the favoured tokens rarely win (the
 * medium model's +20 changed none of 10 answers), while a forbidden first choice always changes the answer, and a
 * provider that ignores the biases sends it.
 */
async function forbiddingFirstChoice(parameters: {
  engine: Engine;
  models: BenchModels;
  request: InferenceRequest;
}): Promise<InferenceRequest> {
  const { logit_bias, ...unbiased } = parameters.request;
  const free = await honestAnswer({ ...parameters, request: unbiased });
  const first = free.outputTokens[0];
  return first === undefined
    ? parameters.request
    : { ...parameters.request, logit_bias: { ...logit_bias, [String(first)]: -100 } };
}

/**
 * Constrained cheats whose requests need their own builder; the others get {@link constrainedFixtureRequest} with
 * the constraint they drop (its max_tokens 64; temperatures 0, 0.7 and 1 by index).
 */
const constrainedRequestBuilders: Partial<Record<ConstraintCheatName, RequestBuilder>> = {};

/**
 * Section 2's cheats: the six of test/fixtures/cheats.ts on plain requests, then the constrained ones, then a
 * provider that streams altered text (alters_text, on the plain requests), then a provider that fabricates a forced
 * tool call's arguments (test/fixtures/toolCheats.ts) at temperature 0: above
 * it a fabricated but plausible argument is only caught statistically (docs/VERIFICATION.md, known gaps).
 */
const detectionCases: readonly DetectionCase[] = [
  ...cheatNames.map((cheat) => ({
    cheat,
    request: ({ models, index }: { models: BenchModels; index: number }) =>
      fixtureRequest({
        models,
        index,
        maxTokens: cheatMaxTokens[(index - firstCheatIndex) % cheatMaxTokens.length],
      }),
    answer: (parameters: { engine: Engine; models: BenchModels; request: InferenceRequest }) =>
      cheatingAnswer({ ...parameters, cheat }),
  })),
  ...constraintCheatNames.map((cheat) => ({
    cheat,
    request:
      constrainedRequestBuilders[cheat] ??
      (({ models, index }: { models: BenchModels; index: number }) =>
        constrainedFixtureRequest({
          models,
          index,
          constraint: constraintOfCheat[cheat],
          logitBias: models.logitBias,
        })),
    answer: (parameters: { engine: Engine; models: BenchModels; request: InferenceRequest }) =>
      constraintCheatingAnswer({ ...parameters, cheat }),
    ...(cheat === "ignores_logit_bias" ? { prepare: forbiddingFirstChoice } : {}),
  })),
  {
    // Honest tokens and fingerprints, an ad in the text streamed and committed to: caught deterministically
    // (text_mismatch); its fingerprint errors are an honest answer's.
    cheat: "alters_text",
    request: ({ models, index }) =>
      fixtureRequest({
        models,
        index,
        maxTokens: cheatMaxTokens[(index - firstCheatIndex) % cheatMaxTokens.length],
      }),
    answer: (parameters) => textAlteringAnswer(parameters),
  },
  {
    cheat: "fabricated_tool_arguments",
    request: ({ models, index }) => toolFixtureRequest({ modelHash: models.tools, index, temperature: 0 }),
    answer: async ({ engine, models, request }) =>
      fabricatedToolArguments({
        engine,
        modelHash: models.tools,
        evidence: await honestToolAnswer({ engine, modelHash: models.tools, request }),
      }),
  },
];

/** Section 2: every cheat on `answersPerCheat` varied requests. */
async function measureDetection(parameters: { home: string; models: BenchModels; auditor: Auditor }) {
  const { home, models, auditor } = parameters;
  const engine = await withToolModel(
    await cheatEngine({ home, models, options: { threadsPerSequence: 1 } }),
    home,
    models,
  );
  const outcomes = new Map<string, Outcome[]>();
  try {
    for (const { cheat, request: requestOf, answer, prepare } of detectionCases) {
      progress(`section 2: ${answersPerCheat} answers of the cheat ${cheat}`);
      const list: Outcome[] = [];
      const constrained = (constraintCheatNames as readonly string[]).includes(cheat);
      for (let index = firstCheatIndex; index < firstCheatIndex + answersPerCheat; index++) {
        const built = requestOf({ models, index });
        const request = prepare ? await prepare({ engine, models, request: built }) : built;
        const input = await answer({ engine, models, request });
        const honest = constrained ? await honestAnswer({ engine, models, request }) : undefined;
        const changed =
          honest === undefined ||
          JSON.stringify([honest.outputTokens, honest.fingerprints]) !==
            JSON.stringify([input.outputTokens, input.fingerprints]);
        list.push({ input, result: await auditor.audit(input), changed });
      }
      outcomes.set(cheat, list);
    }
  } finally {
    await engine.close();
  }
  const lastIndex = firstCheatIndex + answersPerCheat - 1;
  console.log(
    `2. detection per cheat: ${answersPerCheat} answers each (fixture requests ${firstCheatIndex}-${lastIndex}: ` +
      `prompts of 90-335 tokens, temperatures 0, 0.7 and 1, max_tokens ${cheatMaxTokens.join("/")}; the ` +
      `constrained cheats (${constraintCheatNames.join(", ")}) on the same requests with max_tokens 64 and the ` +
      "constraint each drops: a closed 3-field JSON schema; logit_bias " +
      `${JSON.stringify(models.logitBias)} (' ', 'e' and 'q' as the model tokenizes them) and -100 on the first ` +
      "token of the answer without them; presence 1, " +
      `frequency 1.5, repeat 1.3), claimed model ${benchModel.label}; a constrained cheat counts ` +
      "where it changed the answer (tokens or fingerprints differ from the honest answer to the same request); " +
      "fabricated_tool_arguments on forced calls of two tools " +
      `(requests ${firstCheatIndex}-${lastIndex}, max_tokens 200, temperature 0) to the gpt2 tiny model; provider 1 thread; validator ` +
      `${validatorThreads} threads; f16 tolerances ${JSON.stringify(tolerancesFor("f16"))}`,
  );
  const rows = detectionCases.map(({ cheat }) => {
    const list = outcomes.get(cheat) as Outcome[];
    const caught = list.filter((outcome) => outcome.result.verdict === "fail");
    const detected = changedAndCaught(list);
    const reasons: Record<string, number> = {};
    for (const outcome of caught)
      for (const code of new Set(outcome.result.reasons.map((reason) => reason.code)))
        reasons[code] = (reasons[code] ?? 0) + 1;
    const smallest = (pick: (outcome: Outcome) => number) => Math.min(...list.map(pick)).toFixed(4);
    return [
      cheat,
      String(list.length),
      String(detected.changed.length),
      String(detected.caught.length),
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
      [
        "cheat",
        "answers",
        "changed by the cheat",
        "detected (of those)",
        "min worst chunk err",
        "min max position err",
        "caught by (answers)",
      ],
      rows,
    ),
  );
  for (const { cheat } of detectionCases)
    for (const outcome of (outcomes.get(cheat) as Outcome[]).filter((o) => o.result.verdict === "pass")) {
      const { metrics } = outcome.result;
      console.log(
        `   passed: ${cheat}, prompt ${metrics.promptTokens} tokens, output ${metrics.outputTokens}, ` +
          `T=${metrics.temperature}, worst chunk err ${metrics.worstChunkGapError}, max position err ${metrics.maxGapError}`,
      );
    }
  console.log("");
  // The cheat closest to honest (the same weights in q8_0, claimed f16): its smallest worst chunk error over the
  // tolerance it is judged by.
  const lowerQuant = outcomes.get("lower_quant") as Outcome[];
  const closestCheatMargin =
    Math.min(...lowerQuant.map((o) => o.result.metrics.worstChunkGapError)) /
    tolerancesFor("f16").chunkMeanGapError;
  // Over the answers the cheat changed (none changed: no detection shown, 0).
  const rates = new Map(
    detectionCases.map(({ cheat }) => {
      const { changed, caught } = changedAndCaught(outcomes.get(cheat) as Outcome[]);
      return [cheat, changed.length === 0 ? 0 : caught.length / changed.length];
    }),
  );
  return { rates, closestCheatMargin };
}

/** An honest request with every constraint of `set`: one fixture request, each constraint's fields merged in. */
function constrainedRequest(parameters: {
  models: BenchModels;
  index: number;
  set: readonly Constraint[];
}): InferenceRequest {
  const { models, index, set } = parameters;
  return Object.assign(
    {},
    ...set.map((constraint) =>
      constrainedFixtureRequest({ models, index, constraint, logitBias: models.logitBias }),
    ),
  ) as InferenceRequest;
}

type HonestOutcome = Outcome & { provider: string; long: boolean; constraints: string };

/** The label of section 3's honest tool answers in its tables. */
const toolsLabel = "tools (forced call)";

/** The requests one provider setting of section 3 answers: plain ones (every 10th long), then constrained ones. */
function honestRequests(parameters: {
  models: BenchModels;
  setting: (typeof honestPlan)[number];
  next: { plain: number; constrained: number; tools: number };
}) {
  const { models, setting, next } = parameters;
  const requests: { request: InferenceRequest; long: boolean; constraints: string }[] = [];
  for (let count = 0; count < setting.answers; count++, next.plain++) {
    const index = next.plain;
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
    requests.push({ request, long, constraints: "" });
  }
  for (let count = 0; count < setting.constrained; count++, next.constrained++) {
    const index = next.constrained;
    const set = honestConstraintSets[
      (index - firstConstrainedIndex) % honestConstraintSets.length
    ] as readonly Constraint[];
    requests.push({
      request: constrainedRequest({ models, index, set }),
      long: false,
      constraints: set.join("+"),
    });
  }
  for (let count = 0; count < setting.tools; count++, next.tools++) {
    const index = next.tools;
    const temperature = [0, 0.7, 1][index % 3] as number;
    requests.push({
      request: toolFixtureRequest({ modelHash: models.tools, index, temperature }),
      long: false,
      constraints: toolsLabel,
    });
  }
  return requests;
}

/** Section 3's tables: per provider setting, and per constraint set for the constrained answers. */
function printFalsePositives(outcomes: readonly HonestOutcome[]) {
  const plain = outcomes.filter((o) => o.constraints === "").length;
  const constrained = outcomes.length - plain;
  const byTemperature = (list: readonly HonestOutcome[], temperature: number) =>
    String(list.filter((o) => o.input.request.temperature === temperature).length);
  const maxError = (list: readonly HonestOutcome[], pick: (metrics: AuditVerdict["metrics"]) => number) =>
    Math.max(...list.map((o) => pick(o.result.metrics))).toFixed(4);
  const failed = (list: readonly HonestOutcome[]) =>
    String(list.filter((o) => o.result.verdict === "fail").length);
  console.log(
    `3. false positives: ${outcomes.length} honest answers, claimed model ${benchModel.label}; validator ` +
      `${validatorThreads} threads. ${plain} plain ones (fixture requests 2000-${1999 + plain}, max_tokens ` +
      `${honestMaxTokens.join("/")}; every ${longPromptEvery}th with a prompt of ${longPromptBytes.join("/")} ` +
      `tokens) and ${constrained} constrained ones (fixture requests ${firstConstrainedIndex}-` +
      `${firstConstrainedIndex + constrained - 1}, max_tokens 64, the constraints of section 2 alone and combined; ` +
      `"${toolsLabel}": requests from ${firstToolIndex} to the gpt2 tiny model, max_tokens 200)`,
  );
  const providerRows = honestPlan.map(({ label }) => {
    const list = outcomes.filter((o) => o.provider === label);
    const prompts = list.map((o) => o.input.promptTokens.length);
    return [
      label,
      String(list.length),
      String(list.filter((o) => o.constraints !== "").length),
      byTemperature(list, 0),
      byTemperature(list, 0.7),
      byTemperature(list, 1),
      `${Math.min(...prompts)}-${Math.max(...prompts)}`,
      String(list.filter((o) => o.long).length),
      maxError(list, (metrics) => metrics.worstChunkGapError),
      maxError(list, (metrics) => metrics.maxGapError),
      failed(list),
    ];
  });
  console.log(
    formatTable(
      [
        "provider",
        "answers",
        "constrained",
        "T=0",
        "T=0.7",
        "T=1",
        "prompt tokens",
        "long prompts",
        "max worst chunk err",
        "max position err",
        "failed",
      ],
      providerRows,
    ),
  );
  const constraintRows = ["", ...honestConstraintSets.map((set) => set.join("+")), toolsLabel].flatMap(
    (constraints) => {
      const list = outcomes.filter((o) => o.constraints === constraints);
      if (list.length === 0) return [];
      return [
        [
          constraints || "none",
          String(list.length),
          byTemperature(list, 0),
          byTemperature(list, 0.7),
          byTemperature(list, 1),
          String(list.filter((o) => o.input.finishReason === "stop").length),
          maxError(list, (metrics) => metrics.worstChunkGapError),
          maxError(list, (metrics) => metrics.maxGapError),
          failed(list),
        ],
      ];
    },
  );
  console.log("");
  console.log(
    formatTable(
      [
        "constraints",
        "answers",
        "T=0",
        "T=0.7",
        "T=1",
        "ended (stop)",
        "max worst chunk err",
        "max position err",
        "failed",
      ],
      constraintRows,
    ),
  );
  for (const outcome of outcomes.filter((o) => o.result.verdict === "fail")) {
    const { metrics } = outcome.result;
    console.log(
      `   failed: provider ${outcome.provider}, constraints ${outcome.constraints || "none"}, prompt ` +
        `${metrics.promptTokens} tokens, output ${metrics.outputTokens}, T=${metrics.temperature}: ` +
        outcome.result.reasons.map((reason) => reason.message).join("; "),
    );
  }
  console.log("");
}

/** Section 3: honest answers across provider settings, temperatures, prompt lengths and constraints. */
async function measureFalsePositives(parameters: { home: string; models: BenchModels; auditor: Auditor }) {
  const { home, models, auditor } = parameters;
  const outcomes: HonestOutcome[] = [];
  const next = { plain: 2000, constrained: firstConstrainedIndex, tools: firstToolIndex };
  for (const setting of honestPlan) {
    const requests = honestRequests({ models, setting, next });
    const constrained = requests.filter((r) => r.constraints !== "").length;
    const engine = await withToolModel(
      await cheatEngine({ home, models, options: setting.options }),
      home,
      models,
    );
    progress(
      `section 3: ${requests.length} honest answers (${constrained} constrained), provider ${setting.label}`,
    );
    try {
      for (const { request, long, constraints } of requests) {
        const input =
          constraints === toolsLabel
            ? await honestToolAnswer({ engine, modelHash: models.tools, request })
            : await honestAnswer({ engine, models, request });
        outcomes.push({
          input,
          result: await auditor.audit(input),
          provider: setting.label,
          long,
          constraints,
        });
      }
    } finally {
      await engine.close();
    }
  }
  printFalsePositives(outcomes);
  return {
    total: outcomes.length,
    constrained: outcomes.filter((o) => o.constraints !== "").length,
    failed: outcomes.filter((o) => o.result.verdict === "fail").length,
  };
}

async function main() {
  const root = await mkdtemp(join(tmpdir(), "mycel-bench-verify-"));
  const home = join(root, "home");
  const auditors: Auditor[] = [];
  try {
    progress(`adding the test models (${benchModel.label} claimed, its seed 2 in f16, its q8_0)`);
    const cheatModels = await addCheatModels(home, benchModel);
    const auditor = createAuditor({ home, engineOptions: { threadsPerSequence: validatorThreads } });
    auditors.push(auditor);
    await auditor.engine.loadModel({
      hash: cheatModels.claimed,
      path: openModelStore({ home }).pathOf(cheatModels.claimed),
    });
    const models: BenchModels = {
      ...cheatModels,
      tools: await addToolModel(home),
      logitBias: fixtureLogitBias(auditor.engine, cheatModels.claimed),
    };
    if (sections.has("2") || sections.has("3"))
      console.log(`sections 2 and 3 claim ${benchModel.label} (MYCEL_BENCH_VERIFY_MODEL)\n`);
    const cpuWatch = watchOtherProcessesCpu();
    const ratio = sections.has("1")
      ? await measureAuditCost({ home: join(root, "cost"), progress })
      : undefined;
    const detection = sections.has("2") ? await measureDetection({ home, models, auditor }) : undefined;
    const honest = sections.has("3") ? await measureFalsePositives({ home, models, auditor }) : undefined;
    const otherCpu = cpuWatch.stop();
    if (otherCpu !== undefined)
      console.log(
        `other processes used ${(otherCpu * 100).toFixed(1)}% of the machine's CPU during the run ` +
          "(above a few percent the timings of section 1 are noisy: rerun on an idle machine)\n",
      );
    if (sections.size < 3 || scale < 1)
      console.log(
        `a reduced run: sections ${[...sections].sort().join(", ")} (MYCEL_BENCH_VERIFY_SECTIONS), ` +
          `answers scaled by ${scale} (MYCEL_BENCH_VERIFY_SCALE)\n`,
      );

    if (ratio !== undefined) {
      console.log(
        `audit / one plain forward pass (worst of small and medium q8_0, prompts of ~300 and ~1,200 tokens): ` +
          `${roundUp(ratio.auditPerForward, 2).toFixed(2)} (target <= ${targets.auditPerForward}) ` +
          verdict(ratio.auditPerForward <= targets.auditPerForward),
      );
      if (ratio.mediumToLimit !== undefined)
        console.log(
          `audit / generation beside its limit (forward pass / generation), medium q8_0, worst prompt: ` +
            `${roundUp(ratio.mediumToLimit, 2).toFixed(2)}x the limit (target <= ${targets.toLimit}x) ` +
            verdict(ratio.mediumToLimit <= targets.toLimit),
        );
      console.log(
        `audit beyond the forward pass, share of the audit (worst of 259-, 50,259- and 151,936-token vocabularies): ` +
          `${roundUp(ratio.extractionShare * 100, 1).toFixed(1)}% (target <= ${targets.extractionShare * 100}%) ` +
          verdict(ratio.extractionShare <= targets.extractionShare),
      );
    }
    for (const [cheat, rate] of detection?.rates ?? [])
      console.log(
        `detection rate, ${cheat}: ${roundDown(rate * 100, 1).toFixed(1)}% ` +
          `(target >= ${targets.detection * 100}%) ${verdict(rate >= targets.detection)}`,
      );
    if (detection)
      console.log(
        `closest cheat (lower_quant) beyond the tolerance, its smallest worst chunk error / the f16 tolerance: ` +
          `${roundDown(detection.closestCheatMargin, 2).toFixed(2)}x (target >= ${targets.closestCheatMargin}x) ` +
          verdict(detection.closestCheatMargin >= targets.closestCheatMargin),
      );
    if (honest)
      console.log(
        `false positives over ${honest.total} honest answers (${honest.constrained} constrained): ` +
          `${honest.failed} (target ${targets.falsePositives}) ${verdict(honest.failed <= targets.falsePositives)}`,
      );
  } finally {
    for (const auditor of auditors) await auditor.close();
    await rm(root, { recursive: true, force: true });
    process.stderr.write(`runtime: ${((performance.now() - runStarted) / 1000).toFixed(1)} s\n`);
  }
}

await main();
