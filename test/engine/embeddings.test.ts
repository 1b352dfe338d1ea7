import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createEngine, type Engine, modelCapabilities, normalizeVector } from "../../src/engine/index.ts";
import { InvalidInputError, QueueFullError } from "../../src/errors/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { temporaryHome } from "../helpers.ts";

describe("engine embeddings (real llama.cpp on the tiny test model)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let engine: Engine;
  let other: Engine;
  let modelHash: string;

  before(async () => {
    directory = await temporaryHome("mycel-embeddings-");
    const store = openModelStore({ home: directory.home });
    const made = generateTestModel({ size: "tiny", seed: 1 });
    const { model } = await store.addBytes({ bytes: made.bytes, name: made.name, source: "test" });
    modelHash = model.hash;
    const options = { parallelism: 1, threadsPerSequence: 1, maxQueue: 1, contextSize: 64 };
    engine = createEngine({ options });
    other = createEngine({ options });
    for (const each of [engine, other])
      await each.loadModel({ hash: model.hash, path: store.pathOf(model.hash), name: model.name });
  });
  after(async () => {
    await engine.close();
    await other.close();
    await directory.remove();
  });

  it("announces embeddings among the model's capabilities", () => {
    assert.deepEqual(engine.findModel(modelHash).capabilities, [
      "chat",
      "completion",
      "embeddings",
      "grammar",
    ]);
    // tools: a template whose tool-call format Mycel parses, not any template that mentions tools.
    assert.deepEqual(
      modelCapabilities({ chatTemplate: "{% if tools %}<tool_call>{% endif %}", embeddings: false }),
      ["chat", "completion", "tools", "grammar"],
    );
    assert.deepEqual(modelCapabilities({ chatTemplate: "{% if tools %}x{% endif %}", embeddings: false }), [
      "chat",
      "completion",
      "grammar",
    ]);
  });

  it("gives one unit-length vector per input, the same numbers every time and in another engine", async () => {
    const inputs = ["Mycelium is a network.", "Fungi share nutrients."].map((input) =>
      engine.embeddingTokens({ modelHash, input }),
    );
    const first = await engine.embed({ modelHash, inputs });
    const again = await engine.embed({ modelHash, inputs: [...inputs].reverse() });
    const elsewhere = await other.embed({ modelHash, inputs });
    assert.equal(first.vectors.length, 2);
    for (const vector of first.vectors) {
      assert.equal(vector.length, 64, "the tiny model's embedding size");
      const norm = Math.sqrt(vector.reduce((sum, value) => sum + value * value, 0));
      assert.ok(Math.abs(norm - 1) < 1e-5, `unit length, got ${norm}`);
    }
    assert.notDeepEqual(first.vectors[0], first.vectors[1], "different inputs, different vectors");
    assert.deepEqual(again.vectors, [...first.vectors].reverse(), "bit-identical, whatever the order");
    assert.deepEqual(elsewhere.vectors, first.vectors, "another context agrees exactly");
    const tokens = inputs[0]?.length ?? 0;
    assert.deepEqual(first.tokenCounts, [tokens, inputs[1]?.length]);
    assert.equal(first.usage.promptTokens, tokens + (inputs[1]?.length ?? 0));
  });

  it("refuses an input longer than the context, naming it, and an empty one", async () => {
    const short = engine.embeddingTokens({ modelHash, input: "short" });
    const most = engine.findModel(modelHash).contextSize - 1;
    const long = engine.embeddingTokens({ modelHash, input: "a b c d e f g h ".repeat(80) });
    assert.ok(long.length > most);
    await assert.rejects(
      engine.embed({ modelHash, inputs: [short, long] }),
      (error: unknown) =>
        error instanceof InvalidInputError &&
        error.param === "input[1]" &&
        error.code === "context_length_exceeded" &&
        error.message.includes(`this model embeds at most ${most} per input`),
    );
    await assert.rejects(engine.embed({ modelHash, inputs: [[]] }), /input 0 is empty/);
    await assert.rejects(engine.embed({ modelHash, inputs: [[1_000_000]] }), /outside the vocabulary/);
  });

  it("queues at most maxQueue requests behind the running one", async () => {
    const inputs = [engine.embeddingTokens({ modelHash, input: "queue" })];
    const running = [engine.embed({ modelHash, inputs }), engine.embed({ modelHash, inputs })];
    await assert.rejects(engine.embed({ modelHash, inputs }), QueueFullError);
    await Promise.all(running);
  });

  it("normalizes vectors to unit length", () => {
    assert.deepEqual(normalizeVector([3, 4]), [Math.fround(0.6), Math.fround(0.8)]);
    assert.deepEqual(normalizeVector([0, 0]), [0, 0]);
  });
});
