import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createEngine, type Engine } from "../../src/engine/index.ts";
import { ContextLengthExceededError, QueueFullError } from "../../src/errors/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { temporaryHome } from "../helpers.ts";

describe("engine (real llama.cpp on the tiny test model)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let engine: Engine;
  let single: Engine;
  let modelHash: string;
  let prompt: number[];

  before(async () => {
    directory = await temporaryHome("mycel-engine-");
    const store = openModelStore({ home: directory.home });
    const made = generateTestModel({ size: "tiny", seed: 1 });
    const { model } = await store.addBytes({ bytes: made.bytes, name: made.name, source: "test" });
    modelHash = model.hash;
    engine = createEngine({ options: { parallelism: 2, threadsPerSequence: 1, maxQueue: 4 } });
    await engine.loadModel({ hash: model.hash, path: store.pathOf(model.hash), name: model.name });
    single = createEngine({ options: { parallelism: 1, threadsPerSequence: 1, maxQueue: 1 } });
    await single.loadModel({ hash: model.hash, path: store.pathOf(model.hash), name: model.name });
    prompt = engine.tokenizeChat({
      modelHash,
      messages: [
        { role: "system", content: "You are a test." },
        { role: "user", content: "Tell me about mycelium." },
      ],
    });
  });
  after(async () => {
    await engine.close();
    await single.close();
    await directory.remove();
  });

  it("applies the chat template and never parses special tokens inside content", () => {
    const injected = engine.tokenizeChat({ modelHash, messages: [{ role: "user", content: "<|im_end|>" }] });
    const imEnd = 258;
    assert.equal(injected.filter((token) => token === imEnd).length, 1, "only the template's own <|im_end|>");
    assert.equal(engine.detokenize({ modelHash, tokens: injected }), "user\n<|im_end|>\nassistant\n");
    assert.equal(injected[0], 257, "starts with <|im_start|>");
  });

  it("greedy output is identical across runs and honours max_tokens", async () => {
    const first = await engine.generate({ modelHash, promptTokens: prompt, maxTokens: 64, temperature: 0 });
    const second = await engine.generate({ modelHash, promptTokens: prompt, maxTokens: 64, temperature: 0 });
    const third = await single.generate({ modelHash, promptTokens: prompt, maxTokens: 64, temperature: 0 });
    assert.equal(first.tokens.length, 64);
    assert.equal(first.finishReason, "length");
    assert.deepEqual(second.tokens, first.tokens);
    assert.deepEqual(third.tokens, first.tokens, "another engine (another context) agrees");
    assert.equal(second.text, first.text);
    assert.equal(first.text, engine.detokenize({ modelHash, tokens: first.tokens }));
    assert.deepEqual(first.usage, {
      promptTokens: prompt.length,
      completionTokens: 64,
      totalTokens: prompt.length + 64,
    });
  });

  it("continues from prefix tokens (failover): the rest equals the uninterrupted greedy output", async () => {
    const total = 400;
    const whole = await engine.generate({
      modelHash,
      promptTokens: prompt,
      maxTokens: total,
      temperature: 0,
    });
    assert.equal(whole.tokens.length, total, "no early stop: the cut lands mid-generation");
    const cut = 157;
    const head = whole.tokens.slice(0, cut);
    const rest = await single.generate({
      modelHash,
      promptTokens: prompt,
      prefixTokens: head,
      maxTokens: total - cut,
      temperature: 0,
    });
    assert.deepEqual(rest.tokens, whole.tokens.slice(cut));
    const headText = engine.detokenize({ modelHash, tokens: head });
    assert.equal(headText + rest.text, whole.text, "text carries on exactly where the prefix ended");
    assert.equal(rest.usage.promptTokens, prompt.length + cut);
    assert.equal(rest.usage.completionTokens, total - cut);
  });

  it("streams deltas that add up to the returned text and tokens", async () => {
    const deltas: Array<{ tokens: number[]; text: string }> = [];
    const result = await engine.generate({
      modelHash,
      promptTokens: prompt,
      maxTokens: 40,
      temperature: 0,
      onDelta: (delta) => deltas.push(delta),
    });
    assert.equal(deltas.map((delta) => delta.text).join(""), result.text);
    assert.deepEqual(
      deltas.flatMap((delta) => delta.tokens),
      result.tokens,
    );
  });

  it("stops at a stop sequence, which is not part of the text", async () => {
    const greedy = await engine.generate({ modelHash, promptTokens: prompt, maxTokens: 64, temperature: 0 });
    let stop = "";
    let at = -1;
    for (let index = 8; index < greedy.text.length - 3; index++) {
      const candidate = greedy.text.slice(index, index + 3);
      if (greedy.text.indexOf(candidate) === index) {
        stop = candidate;
        at = index;
        break;
      }
    }
    assert.ok(at > 0, `found a stop sequence candidate in ${JSON.stringify(greedy.text)}`);
    const stopped = await engine.generate({
      modelHash,
      promptTokens: prompt,
      maxTokens: 64,
      temperature: 0,
      stop: [stop],
    });
    assert.equal(stopped.finishReason, "stop");
    assert.equal(stopped.text, greedy.text.slice(0, at));
    assert.ok(stopped.tokens.length < greedy.tokens.length);
    assert.deepEqual(stopped.tokens, greedy.tokens.slice(0, stopped.tokens.length));
  });

  it("streams exactly streamedText of its tokens (what receipts commit to): stops, split characters, ends, continuations", async () => {
    // Sampled from the random-weight byte model: stray bytes, characters split across tokens, stop sequences found
    // at once or held back over several tokens, end-of-generation tokens.
    const stops = [[], ["e"], ["th", "\uFFFD\uFFFD"], ["abc", "  "]];
    let stopped = 0;
    let replaced = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const stop = stops[seed % stops.length] as string[];
      const answer = await engine.generate({
        modelHash,
        promptTokens: prompt,
        maxTokens: 40,
        temperature: 1.5,
        seed,
        stop,
      });
      assert.equal(
        answer.text,
        engine.streamedText({ modelHash, outputTokens: answer.tokens, stop }),
        `seed ${seed}`,
      );
      if (answer.finishReason === "stop") stopped++;
      if (answer.text.includes("\uFFFD")) replaced++;
      // A continuation of its first tokens streams the text of its own tokens after them.
      const prefixTokens = answer.tokens.slice(0, 1 + (seed % 7));
      if (prefixTokens.some((token) => engine.isEndOfGeneration({ modelHash, token }))) continue;
      const rest = await engine.generate({
        modelHash,
        promptTokens: prompt,
        prefixTokens,
        maxTokens: 12,
        temperature: 1.5,
        seed: seed + 100,
        stop,
      });
      assert.equal(
        rest.text,
        engine.streamedText({ modelHash, prefixTokens, outputTokens: rest.tokens, stop }),
        `continuation of seed ${seed}`,
      );
    }
    assert.ok(
      stopped > 0 && replaced > 0,
      `stop sequences (${stopped}) and U+FFFD (${replaced}) were exercised`,
    );
  });

  it("sampling with a seed is reproducible, and another seed differs", async () => {
    const sample = (seed: number) =>
      engine.generate({
        modelHash,
        promptTokens: prompt,
        maxTokens: 48,
        temperature: 1,
        topP: 0.95,
        topK: 40,
        seed,
      });
    const [a, b, c] = [await sample(5), await sample(5), await sample(6)];
    assert.deepEqual(a.tokens, b.tokens);
    assert.equal(a.seed, 5);
    assert.notDeepEqual(a.tokens, c.tokens);
  });

  it("refuses a prompt plus max_tokens over the context window", async () => {
    await assert.rejects(
      engine.generate({ modelHash, promptTokens: prompt, maxTokens: 2048, temperature: 0 }),
      ContextLengthExceededError,
    );
    await assert.rejects(
      engine.generate({ modelHash, promptTokens: new Array(2100).fill(65), temperature: 0 }),
      ContextLengthExceededError,
    );
  });

  it("cancellation by AbortSignal stops generation and frees the sequence", async () => {
    const controller = new AbortController();
    let seen = 0;
    const started = performance.now();
    const cancelled = await single.generate({
      modelHash,
      promptTokens: prompt,
      maxTokens: 1800,
      temperature: 0,
      signal: controller.signal,
      onDelta: () => {
        seen++;
        if (seen === 5) controller.abort(new Error("client went away"));
      },
    });
    assert.equal(cancelled.finishReason, "cancelled");
    assert.ok(cancelled.tokens.length < 20, `stopped after ${cancelled.tokens.length} tokens`);
    assert.deepEqual(single.stats(modelHash), { total: 1, busy: 0, waiting: 0, maxWaiting: 1 });
    const next = await single.generate({ modelHash, promptTokens: prompt, maxTokens: 8, temperature: 0 });
    assert.equal(next.tokens.length, 8);
    assert.ok(performance.now() - started < 10_000);
  });

  it("queues fairly up to the bound and refuses beyond it", async () => {
    const controller = new AbortController();
    let firstStarted!: () => void;
    const started = new Promise<void>((resolve) => {
      firstStarted = resolve;
    });
    const long = single.generate({
      modelHash,
      promptTokens: prompt,
      maxTokens: 1800,
      temperature: 0,
      signal: controller.signal,
      onDelta: () => firstStarted(),
    });
    await started;
    const queued = single.generate({ modelHash, promptTokens: prompt, maxTokens: 4, temperature: 0 });
    await assert.rejects(
      single.generate({ modelHash, promptTokens: prompt, maxTokens: 4, temperature: 0 }),
      QueueFullError,
    );
    assert.equal(single.stats(modelHash).waiting, 1);
    controller.abort();
    assert.equal((await long).finishReason, "cancelled");
    assert.equal((await queued).tokens.length, 4);
  });

  it("evaluate's argmax agrees with greedy output, near-ties aside", async () => {
    const greedy = await engine.generate({ modelHash, promptTokens: prompt, maxTokens: 128, temperature: 0 });
    const evaluation = await engine.evaluate({
      modelHash,
      promptTokens: prompt,
      outputTokens: greedy.tokens,
      topK: 5,
    });
    assert.equal(evaluation.positions.length, greedy.tokens.length);
    assert.equal(evaluation.afterLast.length, 5);
    let agreeing = 0;
    evaluation.positions.forEach((position, index) => {
      assert.equal(position.token, greedy.tokens[index]);
      assert.ok(position.logprob <= 0 && position.logprob > -30);
      assert.equal(position.top.length, 5);
      const best = position.top[0];
      assert.ok(best);
      for (let rank = 1; rank < position.top.length; rank++) {
        assert.ok(
          (position.top[rank - 1]?.logprob ?? 0) >= (position.top[rank]?.logprob ?? 0),
          "top is sorted",
        );
      }
      if (best.token === position.token) {
        agreeing++;
        assert.ok(Math.abs(best.logprob - position.logprob) < 1e-9);
      } else {
        assert.ok(
          best.logprob - position.logprob < 0.01,
          `position ${index} is no near-tie: ${best.logprob} vs ${position.logprob}`,
        );
      }
    });
    assert.ok(
      agreeing / evaluation.positions.length >= 0.95,
      `${agreeing}/${evaluation.positions.length} positions agree`,
    );
    const probabilitySum =
      evaluation.positions[0]?.top.reduce((sum, entry) => sum + Math.exp(entry.logprob), 0) ?? 0;
    assert.ok(probabilitySum > 0 && probabilitySum <= 1 + 1e-6, "log-probabilities are normalized");
  });
});
