/**
 * Section 1 of bench:verify: what an audit costs beside its physical limit, one plain forward pass of llama.cpp
 * over the same prompt and output tokens (batches of 512, the same threads), and beside the generation it checks;
 * then the audit's cost per scored position beside the vocabulary's size. See bench/verify/README.md.
 */
import type { LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { createEngine, type Engine, getSharedLlama } from "../../src/engine/index.ts";
import {
  openModelStore,
  type TestModelQuant,
  type TestModelSize,
  type TestModelTokenizer,
} from "../../src/model/index.ts";
import type { AuditInput } from "../../src/protocol/index.ts";
import { type Auditor, createAuditor } from "../../src/verify/index.ts";
import { type CheatModels, honestAnswer } from "../../test/fixtures/cheats.ts";
import { formatTable, median, roundUp } from "../shared/report.ts";
import { addTestModel } from "../shared/testModels.ts";
import { exactLengthAnswer, paddedRequest } from "./requests.ts";

/** llama.cpp threads of the provider, the validator and the plain forward pass alike. */
const threads = 1;
/** Timed rounds per case (MYCEL_BENCH_VERIFY_ROUNDS; default 3). */
const rounds = Number(process.env.MYCEL_BENCH_VERIFY_ROUNDS ?? 3);
/** The models of the first table (MYCEL_BENCH_VERIFY_COST_MODELS: "small", "medium" or "small,medium"). */
const costModels = (process.env.MYCEL_BENCH_VERIFY_COST_MODELS ?? "small,medium")
  .split(",")
  .map((s) => s.trim());
const promptLengths = [300, 1200];
const outputTokens = 256;
/** The second table: small models that differ only in their vocabulary. */
const vocabularies: TestModelTokenizer[] = ["bytes", "gpt2", "wide"];
const vocabularyCase = { promptTokens: 300, outputTokens: 64 };

/** The figures the targets read. */
export type AuditCostFigures = {
  /** Worst audit / plain forward pass over the cost table. */
  auditPerForward: number;
  /** Worst (audit / generation) / (forward / generation) on the medium model (the "within 1.3x of its limit"). */
  mediumToLimit: number | undefined;
  /** Worst share of an audit spent beyond the forward pass (top logits and the rest), over the vocabularies. */
  extractionShare: number;
};

type Progress = (message: string) => void;

/** Honest answers of this section that failed their audit (the tolerances are sections 2 and 3's concern). */
const honestFailures: string[] = [];

/** A test model in a store, with a provider engine, an auditor, and a plain llama.cpp context over the same file. */
async function setUpModel(parameters: {
  home: string;
  size: TestModelSize;
  quant: TestModelQuant;
  tokenizer?: TestModelTokenizer;
  progress: Progress;
}) {
  const { home, size, quant, tokenizer } = parameters;
  parameters.progress(
    `section 1: making the ${size} test model (${quant}, ${tokenizer ?? "default"} vocabulary)`,
  );
  const { model, made } = await addTestModel({
    home,
    size,
    quant,
    ...(tokenizer ? { tokenizer } : {}),
    source: "bench/verify",
  });
  const path = openModelStore({ home }).pathOf(model.hash);
  const models: CheatModels = { claimed: model.hash, other: model.hash, lowerQuant: model.hash };
  const engine = createEngine({ options: { parallelism: 1, threadsPerSequence: threads, maxQueue: 16 } });
  const info = await engine.loadModel({ hash: model.hash, path, name: made.name });
  const auditor = createAuditor({ home, engineOptions: { threadsPerSequence: threads } });
  const llama = await getSharedLlama();
  const plainModel = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const plainContext = await plainModel.createContext({
    contextSize: info.contextSize,
    batchSize: 512,
    threads,
    sequences: 1,
  });
  return {
    label: `${size} ${quant} (${(made.parameterCount / 1e6).toFixed(1)}M params, vocabulary ${info.vocabularySize})`,
    models,
    engine,
    auditor,
    plain: { model: plainModel, context: plainContext },
    async close() {
      await plainContext.dispose();
      await plainModel.dispose();
      await auditor.close();
      await engine.close();
    },
  };
}

/**
 * One plain forward pass of teacher forcing over the answer: llama.cpp's batches of 512, the output layer run at
 * every scored position (the last prompt token and each output token), each position's logits read once by a
 * greedy pick (one pass over the vocabulary), nothing else.
 */
async function plainForwardMs(context: LlamaContext, input: AuditInput) {
  const sequence = context.getSequence();
  const tokens = [...input.promptTokens, ...input.outputTokens];
  const firstScored = input.promptTokens.length - 1;
  const items = tokens.map((token, index) =>
    index < firstScored ? (token as Token) : ([token as Token, { generateNext: { token: true } }] as const),
  );
  try {
    const started = performance.now();
    await sequence.controlledEvaluate(items as never);
    return performance.now() - started;
  } finally {
    sequence.dispose();
  }
}

type CaseTimes = { generationMs: number; forwardMs: number; auditMs: number; evaluateMs: number };

/** Times generation, the plain forward pass and the audit of one answer, `rounds` times; medians. */
async function timeCase(parameters: {
  engine: Engine;
  auditor: Auditor;
  models: CheatModels;
  plain: { model: LlamaModel; context: LlamaContext };
  request: AuditInput["request"];
}): Promise<CaseTimes & { promptTokens: number; outputTokens: number }> {
  const samples: CaseTimes[] = [];
  // Warm-up: the auditor loads the model on its first audit, and the plain context's first pass allocates.
  let input: AuditInput | undefined = await honestAnswer(parameters);
  await parameters.auditor.audit(input);
  await plainForwardMs(parameters.plain.context, input);
  for (let round = 0; round < rounds; round++) {
    let started = performance.now();
    input = await honestAnswer(parameters);
    const generationMs = performance.now() - started;
    const forwardMs = await plainForwardMs(parameters.plain.context, input);
    started = performance.now();
    const result = await parameters.auditor.audit(input);
    const auditMs = performance.now() - started;
    // Timed all the same (an audit runs its whole evaluation whatever it finds); reported after the tables.
    if (result.verdict !== "pass")
      honestFailures.push(
        `${input.promptTokens.length}+${input.outputTokens.length} tokens: ${result.reasons.map((r) => r.message).join("; ")}`,
      );
    samples.push({ generationMs, forwardMs, auditMs, evaluateMs: result.metrics.evaluateMs });
  }
  const pick = (key: keyof CaseTimes) => median(samples.map((sample) => sample[key]));
  return {
    generationMs: pick("generationMs"),
    forwardMs: pick("forwardMs"),
    auditMs: pick("auditMs"),
    evaluateMs: pick("evaluateMs"),
    promptTokens: input?.promptTokens.length ?? 0,
    outputTokens: input?.outputTokens.length ?? 0,
  };
}

/** The first table: audit beside the plain forward pass and the generation, per model and prompt length. */
async function costTable(home: string, progress: Progress) {
  const rows: string[][] = [];
  let auditPerForward = 0;
  let mediumToLimit: number | undefined;
  for (const size of costModels as TestModelSize[]) {
    const model = await setUpModel({ home, size, quant: "q8_0", progress });
    try {
      for (const promptTokens of promptLengths) {
        const padded = paddedRequest({ ...model, tokens: promptTokens, maxTokens: outputTokens });
        progress(
          `section 1: ${model.label}, a ${padded.promptTokens}-token prompt: finding a seed (warm-up)`,
        );
        const { request } = await exactLengthAnswer({ ...model, base: padded.request });
        progress(`section 1: ${model.label}, a ${padded.promptTokens}-token prompt: ${rounds} rounds`);
        const times = await timeCase({ ...model, request });
        const ratio = times.auditMs / times.forwardMs;
        const limit = times.forwardMs / times.generationMs;
        const auditPerGeneration = times.auditMs / times.generationMs;
        auditPerForward = Math.max(auditPerForward, ratio);
        if (size === "medium") mediumToLimit = Math.max(mediumToLimit ?? 0, auditPerGeneration / limit);
        rows.push([
          model.label,
          String(times.promptTokens),
          String(times.outputTokens),
          times.generationMs.toFixed(0),
          times.forwardMs.toFixed(0),
          times.auditMs.toFixed(0),
          times.evaluateMs.toFixed(0),
          roundUp(ratio, 2).toFixed(2),
          roundUp(auditPerGeneration, 2).toFixed(2),
          roundUp(limit, 2).toFixed(2),
        ]);
      }
    } finally {
      await model.close();
    }
  }
  console.log(
    `1a. audit / one plain forward pass over the same tokens (llama.cpp, batches of 512) and / generation; ` +
      `provider, validator and forward pass on ${threads} thread; q8_0; medians of ${rounds} rounds`,
  );
  console.log(
    formatTable(
      [
        "model",
        "prompt tokens",
        "output tokens",
        "generation ms",
        "forward pass ms",
        "audit ms",
        "of which evaluate",
        "audit/forward",
        "audit/generation",
        "limit (forward/generation)",
      ],
      rows,
    ),
  );
  console.log("");
  return { auditPerForward, mediumToLimit };
}

/** The second table: the audit's cost beyond the forward pass per scored position, per vocabulary. */
async function vocabularyTable(home: string, progress: Progress) {
  const rows: string[][] = [];
  let extractionShare = 0;
  for (const tokenizer of vocabularies) {
    const model = await setUpModel({ home, size: "small", quant: "q8_0", tokenizer, progress });
    try {
      const padded = paddedRequest({
        ...model,
        tokens: vocabularyCase.promptTokens,
        maxTokens: vocabularyCase.outputTokens,
      });
      const { request } = await exactLengthAnswer({ ...model, base: padded.request });
      progress(`section 1: small model, ${tokenizer} vocabulary: ${rounds} rounds`);
      const times = await timeCase({ ...model, request });
      const beyond = Math.max(0, times.auditMs - times.forwardMs);
      const share = beyond / times.auditMs;
      extractionShare = Math.max(extractionShare, share);
      rows.push([
        model.label,
        String(times.promptTokens),
        String(times.outputTokens),
        times.forwardMs.toFixed(1),
        times.evaluateMs.toFixed(1),
        times.auditMs.toFixed(1),
        (beyond / times.outputTokens).toFixed(3),
        `${roundUp(share * 100, 1).toFixed(1)}%`,
      ]);
    } finally {
      await model.close();
    }
  }
  console.log(
    "1b. the audit beyond the forward pass (top logits, the checks) per scored position, by vocabulary; " +
      `small q8_0 models that differ only in their vocabulary; ${threads} thread; medians of ${rounds} rounds`,
  );
  console.log(
    formatTable(
      [
        "model",
        "prompt tokens",
        "output tokens",
        "forward pass ms",
        "evaluate ms",
        "audit ms",
        "beyond forward, ms/position",
        "beyond forward, share of audit",
      ],
      rows,
    ),
  );
  console.log("");
  return extractionShare;
}

/** Section 1: both tables; returns the figures its targets read. */
export async function measureAuditCost(parameters: {
  home: string;
  progress: Progress;
}): Promise<AuditCostFigures> {
  if (!Number.isInteger(rounds) || rounds < 1)
    throw new Error("MYCEL_BENCH_VERIFY_ROUNDS must be a whole number >= 1");
  for (const size of costModels)
    if (size !== "small" && size !== "medium")
      throw new Error(`MYCEL_BENCH_VERIFY_COST_MODELS: expected small and/or medium, got "${size}"`);
  const cost = await costTable(parameters.home, parameters.progress);
  const extractionShare = await vocabularyTable(parameters.home, parameters.progress);
  if (honestFailures.length > 0)
    console.log(
      `note: ${honestFailures.length} honest answers of section 1 failed their audit:\n  ${honestFailures.join("\n  ")}\n`,
    );
  return { ...cost, extractionShare };
}
