/**
 * Grammar benchmark: generation under a `response_format` JSON schema vs unconstrained, on the same prompt and
 * seed, greedy and at temperature 1, side by side in one run, on the gpt2-family test models (a real 50,257-token
 * vocabulary, where a grammar costs most). The grammar is applied lazily (the engine's default) and, for
 * comparison, eagerly (llama.cpp over the whole vocabulary at every step). Run with `npm run bench:grammar`;
 * see bench/grammar/README.md.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { startApiServer } from "../../src/api/index.ts";
import { createEngine, type Engine, type OutputFormat, outputConstraintOf } from "../../src/engine/index.ts";
import { generateTestModel, openModelStore, type TestModelSize } from "../../src/model/index.ts";
import { formatTable, machineBusyMs, median, roundDown, verdict } from "../shared/report.ts";

const rounds = 7;
const maxTokens = 96;
const seed = 42;
const contextSize = 1024;
/** The model the target is measured on; the other is shown for comparison (see README). */
const targetSize: TestModelSize = "small";
const sizes: readonly TestModelSize[] = ["small", "tiny"];
const target = 0.8;
const messages: { role: "user"; content: string }[] = [
  {
    role: "user",
    content:
      "Report on the forest network as JSON: its mood, whether it is ok, how many trees, and a short note.",
  },
];
/** A realistic schema: an enum, a boolean, an integer, and a short string (so random-weight models end). */
const responseFormat: OutputFormat = {
  type: "json_schema",
  json_schema: {
    name: "forest_report",
    strict: true,
    schema: {
      type: "object",
      properties: {
        mood: { type: "string", enum: ["calm", "curious", "restless"] },
        ok: { type: "boolean" },
        trees: { type: "integer" },
        note: { type: "string", maxLength: 16 },
      },
      required: ["mood", "ok", "trees", "note"],
      additionalProperties: false,
    },
  },
};

/** One timed generation: completion tokens, time to the first one, and total time. */
type Sample = {
  tokens: number;
  firstTokenMs: number;
  totalMs: number;
  text: string;
  /** CPU time this process (llama.cpp's threads included) spent on the whole call. */
  cpuMs?: number;
  /** A lazy grammar's positions: kept unconstrained, sampled again masked, masked at once. */
  outcomes?: { kept: number; resampled: number; masked: number };
};

/** Tokens per second after the first token (the prefill), so that answers of different lengths compare. */
function decodeRate(sample: Sample) {
  return sample.tokens > 1
    ? (sample.tokens - 1) / ((sample.totalMs - sample.firstTokenMs) / 1000)
    : Number.NaN;
}

type Variant = { label: string; constrained: boolean; temperature: number; run: () => Promise<Sample> };

function engineVariant(parameters: {
  engine: Engine;
  modelHash: string;
  promptTokens: number[];
  temperature: number;
  grammar?: { gbnf: string; sampling: "lazy" | "eager" };
}): Variant {
  const { engine, modelHash, promptTokens, temperature, grammar } = parameters;
  return {
    label: `engine, T=${temperature}, ${grammar ? `json_schema (${grammar.sampling})` : "unconstrained"}`,
    constrained: grammar !== undefined,
    temperature,
    async run() {
      const result = await engine.generate({
        modelHash,
        promptTokens,
        maxTokens,
        temperature,
        seed,
        ...(grammar ? { grammar: grammar.gbnf, grammarSampling: grammar.sampling } : {}),
      });
      return {
        tokens: result.tokens.length,
        firstTokenMs: result.timings.firstTokenMs ?? result.timings.totalMs,
        totalMs: result.timings.totalMs,
        text: result.text,
        outcomes: result.grammarSampling,
      };
    },
  };
}

function apiVariant(parameters: { client: OpenAI; model: string; constrained: boolean }): Variant {
  const { client, model, constrained } = parameters;
  return {
    label: `HTTP API (openai, streaming), T=0, ${constrained ? "json_schema" : "unconstrained"}`,
    constrained,
    temperature: 0,
    async run() {
      const started = performance.now();
      const stream = await client.chat.completions.create({
        model,
        messages,
        max_tokens: maxTokens,
        temperature: 0,
        seed,
        stream: true,
        stream_options: { include_usage: true },
        ...(constrained ? { response_format: responseFormat as OpenAI.ResponseFormatJSONSchema } : {}),
      });
      let firstTokenMs: number | undefined;
      let text = "";
      let tokens = 0;
      for await (const chunk of stream) {
        const content = chunk.choices[0]?.delta?.content;
        if (content) {
          firstTokenMs ??= performance.now() - started;
          text += content;
        }
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
      }
      const totalMs = performance.now() - started;
      return { tokens, firstTokenMs: firstTokenMs ?? totalMs, totalMs, text };
    },
  };
}

/** Share of all cores' time other processes took since `start` (see bench/engine). */
function watchOtherProcessesCpu() {
  const started = performance.now();
  const busyAtStart = machineBusyMs();
  const ownAtStart = process.cpuUsage();
  return () => {
    const own = process.cpuUsage(ownAtStart);
    const otherMs = machineBusyMs() - busyAtStart - (own.user + own.system) / 1000;
    return Math.max(0, otherMs / ((performance.now() - started) * cpus().length));
  };
}

async function measure(parameters: { home: string; size: TestModelSize; gbnf: string }) {
  const { home, size, gbnf } = parameters;
  const generated = generateTestModel({ size, tokenizer: "gpt2" });
  const store = openModelStore({ home });
  const { model: record } = await store.addBytes({
    bytes: generated.bytes,
    name: generated.name,
    source: "make-test (bench/grammar)",
  });
  const engine = createEngine({ options: { parallelism: 1, threadsPerSequence: 1, contextSize } });
  const server = await startApiServer({ engine, host: "127.0.0.1", port: 0 });
  try {
    const info = await engine.loadModel({
      hash: record.hash,
      path: store.pathOf(record.hash),
      name: record.name,
    });
    const promptTokens = engine.tokenizeChat({ modelHash: info.hash, messages });
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "none", maxRetries: 0 });
    const common = { engine, modelHash: info.hash, promptTokens };
    const variants: Variant[] = [];
    for (const temperature of [0, 1]) {
      variants.push(engineVariant({ ...common, temperature }));
      variants.push(engineVariant({ ...common, temperature, grammar: { gbnf, sampling: "lazy" } }));
      variants.push(engineVariant({ ...common, temperature, grammar: { gbnf, sampling: "eager" } }));
    }
    if (size === targetSize) {
      variants.push(apiVariant({ client, model: info.name, constrained: false }));
      variants.push(apiVariant({ client, model: info.name, constrained: true }));
    }
    const samples = new Map(variants.map((variant) => [variant, [] as Sample[]]));
    const texts = new Map(variants.map((variant) => [variant, new Set<string>()]));
    for (const variant of variants) await variant.run();
    for (let round = 0; round < rounds; round++) {
      for (const variant of round % 2 === 0 ? variants : [...variants].reverse()) {
        const cpuBefore = process.cpuUsage();
        const sample = await variant.run();
        const cpu = process.cpuUsage(cpuBefore);
        sample.cpuMs = (cpu.user + cpu.system) / 1000;
        samples.get(variant)?.push(sample);
        texts.get(variant)?.add(sample.text);
      }
    }
    const rate = (variant: Variant) => median((samples.get(variant) ?? []).map(decodeRate));
    /** Tokens per CPU second of the whole call (prefill included): steadier than wall time on a busy machine. */
    const cpuRate = (variant: Variant) =>
      median(
        (samples.get(variant) ?? []).map((sample) => sample.tokens / ((sample.cpuMs ?? Number.NaN) / 1000)),
      );
    const baseline = (variant: Variant) =>
      variants.find(
        (other) =>
          !other.constrained &&
          other.temperature === variant.temperature &&
          other.label.startsWith(variant.label.split(",")[0] ?? ""),
      );
    const constraint = await outputConstraintOf(responseFormat);
    const rows = variants.map((variant) => {
      const list = samples.get(variant) ?? [];
      const base = baseline(variant);
      const valid = list.filter((sample) => constraint?.violation(sample.text) === undefined).length;
      const share = (key: "kept" | "resampled" | "masked") => {
        const shares = list.flatMap((sample) =>
          sample.outcomes ? [sample.outcomes[key] / sample.tokens] : [],
        );
        return shares.length > 0 ? `${Math.round(median(shares) * 100)}%` : "-";
      };
      return [
        variant.label,
        String(median(list.map((sample) => sample.tokens))),
        median(list.map((sample) => sample.firstTokenMs)).toFixed(1),
        rate(variant).toFixed(1),
        base && base !== variant ? roundDown(rate(variant) / rate(base), 2).toFixed(2) : "-",
        cpuRate(variant).toFixed(1),
        base && base !== variant ? roundDown(cpuRate(variant) / cpuRate(base), 2).toFixed(2) : "-",
        variant.constrained ? `${valid}/${list.length}` : "-",
        variant.label.includes("lazy")
          ? `${share("kept")} / ${share("resampled")} / ${share("masked")}`
          : "-",
        String(texts.get(variant)?.size ?? 0),
      ];
    });
    console.log(
      `\nmodel ${info.name}: ${(generated.parameterCount / 1e6).toFixed(1)}M params, ${generated.quant}, ` +
        `vocabulary ${info.vocabularySize}, prompt ${promptTokens.length} tokens, max_tokens ${maxTokens}, seed ${seed}; ` +
        `1 sequence x 1 thread; 1 warm-up + ${rounds} rounds (medians)`,
    );
    console.log(
      formatTable(
        [
          "path",
          "tokens",
          "first token (ms)",
          "tokens/s",
          "vs unconstrained",
          "tokens/CPU-s",
          "vs unconstrained (CPU)",
          "schema-valid",
          "kept / resampled / masked",
          "texts",
        ],
        rows,
      ),
    );
    for (const variant of variants.filter((each) => each.constrained)) {
      const text = [...(texts.get(variant) ?? [])][0] ?? "";
      const violation = constraint?.violation(text);
      console.log(`  ${variant.label}: ${JSON.stringify(text)}${violation ? ` (${violation})` : ""}`);
    }
    const lazyGreedy = variants.find((variant) => variant.label === "engine, T=0, json_schema (lazy)");
    const lazySampled = variants.find((variant) => variant.label === "engine, T=1, json_schema (lazy)");
    const ratioOf = (variant: Variant | undefined) => {
      const base = variant && baseline(variant);
      return variant && base ? rate(variant) / rate(base) : Number.NaN;
    };
    const cpuRatioOf = (variant: Variant | undefined) => {
      const base = variant && baseline(variant);
      return variant && base ? cpuRate(variant) / cpuRate(base) : Number.NaN;
    };
    return {
      ratio: Math.min(ratioOf(lazyGreedy), ratioOf(lazySampled)),
      cpuRatio: Math.min(cpuRatioOf(lazyGreedy), cpuRatioOf(lazySampled)),
    };
  } finally {
    await server.close();
    await engine.close();
  }
}

async function main() {
  const home = await mkdtemp(join(tmpdir(), "mycel-bench-grammar-"));
  process.env.MYCEL_HOME = home;
  try {
    const constraint = await outputConstraintOf(responseFormat);
    if (!constraint) throw new Error("no constraint");
    const otherCpu = watchOtherProcessesCpu();
    let targetRatio = Number.NaN;
    let targetCpuRatio = Number.NaN;
    for (const size of sizes) {
      const { ratio, cpuRatio } = await measure({ home, size, gbnf: constraint.gbnf });
      if (size === targetSize) {
        targetRatio = ratio;
        targetCpuRatio = cpuRatio;
      }
    }
    console.log(
      `\ntokens/s: completion tokens after the first / time after the first (prefill left out, answers differ in length);` +
        ` vs unconstrained: the same path and temperature without the schema; tokens/CPU-s: completion tokens per second of this process's CPU time over the whole call (prefill included; steadier on a busy machine); kept / resampled / masked: a lazy grammar's positions kept` +
        ` unconstrained, sampled again masked after a rejection, and sampled masked at once after rejections; texts: distinct answers over the rounds (1: deterministic)`,
    );
    console.log(
      `other processes used ${(otherCpu() * 100).toFixed(0)}% of the machine's CPU during the run\n`,
    );
    console.log(
      `(for comparison, per CPU second: ${roundDown(targetCpuRatio, 2).toFixed(2)}; not the target, which is tokens/s)`,
    );
    const shown = roundDown(targetRatio, 2);
    console.log(
      `json_schema tokens/s vs unconstrained (engine, ${targetSize} gpt2 model, worse of T=0 and T=1): ${shown.toFixed(2)} ` +
        `(target >= ${target}) ${verdict(targetRatio >= target)}`,
    );
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

await main();
