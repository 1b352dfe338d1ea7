import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import type { ApiAccess } from "../../src/api/index.ts";
import { startApiServer } from "../../src/api/index.ts";
import { createEngine } from "../../src/engine/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { runMycel, type ServeProcess, startMycelServer, temporaryHome } from "../helpers.ts";

const modelName = "mycel-test-tiny-s1-f32";

/** Decodes OpenAI's base64 embedding: little-endian float32 values. */
function decodeBase64(text: string): number[] {
  const bytes = Buffer.from(text, "base64");
  return Array.from({ length: bytes.length / 4 }, (_, index) => bytes.readFloatLE(index * 4));
}

describe("/v1/embeddings (a real `mycel serve` process, the official openai client)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let server: ServeProcess;
  let client: OpenAI;
  const post = (body: unknown) =>
    fetch(`${server.url}/v1/embeddings`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });

  before(async () => {
    directory = await temporaryHome("mycel-api-embeddings-");
    const made = await runMycel(["model", "make-test", "--size", "tiny", "--seed", "1"], {
      home: directory.home,
    });
    assert.equal(made.code, 0, made.stderr);
    server = await startMycelServer(["serve", "--model", modelName, "--port", "0", "--parallelism", "1"], {
      home: directory.home,
    });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "not-needed", maxRetries: 0 });
  });
  after(async () => {
    const code = await server?.stop();
    assert.equal(code, 0, "the server exits cleanly on SIGTERM");
    await directory.remove();
  });

  it("embeds two inputs; the client's base64 decodes to the float answer; capabilities are listed", async () => {
    const inputs = ["Mycelium connects trees.", "Spores travel far."];
    const answer = await client.embeddings.create({ model: modelName, input: inputs });
    assert.equal(answer.object, "list");
    assert.equal(answer.model, modelName);
    assert.equal(answer.data.length, 2);
    assert.deepEqual(
      answer.data.map((entry) => entry.index),
      [0, 1],
    );
    assert.ok(answer.usage.prompt_tokens > 2);
    assert.equal(answer.usage.total_tokens, answer.usage.prompt_tokens);
    const floats = (await (
      await post({ model: modelName, input: inputs, encoding_format: "float" })
    ).json()) as {
      data: { embedding: number[] }[];
      mycel: { model_hash: string };
    };
    assert.match(floats.mycel.model_hash, /^[0-9a-f]{64}$/);
    for (const [index, entry] of answer.data.entries()) {
      assert.equal(entry.embedding.length, 64);
      assert.deepEqual(
        entry.embedding,
        floats.data[index]?.embedding,
        "the SDK's decoded base64 equals the floats",
      );
    }
    const raw = (await (
      await post({ model: modelName, input: inputs[0], encoding_format: "base64" })
    ).json()) as {
      data: { embedding: string }[];
    };
    assert.deepEqual(decodeBase64(raw.data[0]?.embedding ?? ""), floats.data[0]?.embedding);
    const tokens = (await (
      await post({
        model: modelName,
        input: [
          [72, 101, 108],
          [108, 111],
        ],
      })
    ).json()) as {
      data: unknown[];
    };
    assert.equal(tokens.data.length, 2, "token-id inputs embed too");
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as {
      data: { mycel: { capabilities: string[] } }[];
    };
    assert.ok(models.data[0]?.mycel.capabilities.includes("embeddings"));
  });

  it("refuses what it does not serve with a 400 naming the field", async () => {
    const cases: [unknown, string, string][] = [
      [{ model: modelName, input: "x", truncate: true }, "truncate", "unsupported_parameter"],
      [{ model: modelName, input: "x", dimensions: 32 }, "dimensions", "invalid_value"],
      [{ model: modelName, input: "" }, "input", "invalid_value"],
      [{ model: modelName, input: Array(257).fill("x") }, "input", "invalid_value"],
      [{ model: modelName, input: "x", encoding_format: "int8" }, "encoding_format", "invalid_value"],
      [{ model: modelName, input: "word ".repeat(5000) }, "input[0]", "context_length_exceeded"],
    ];
    for (const [body, param, code] of cases) {
      const response = await post(body);
      const error = ((await response.json()) as { error: { param: string; code: string; message: string } })
        .error;
      assert.equal(response.status, 400, JSON.stringify(error));
      assert.equal(error.param, param, error.message);
      assert.equal(error.code, code, error.message);
    }
    await assert.rejects(
      client.embeddings.create({ model: modelName, input: "x", dimensions: 8 }),
      (error: unknown) => error instanceof OpenAI.BadRequestError && /64 dimensions/.test(error.message),
    );
    // `user` is ignored by design, and the model's own dimensions are accepted.
    const ok = await post({ model: modelName, input: "x", user: "someone", dimensions: 64 });
    assert.equal(ok.status, 200);
  });
});

describe("/v1/embeddings and API keys (in process)", () => {
  it("is a spending path, and each answer is counted against its key", async () => {
    const directory = await temporaryHome("mycel-api-embeddings-keys-");
    const engine = createEngine({ options: { parallelism: 1, threadsPerSequence: 1, maxQueue: 1 } });
    const admitted: boolean[] = [];
    const counted: { promptTokens: number; completionTokens: number }[] = [];
    const access: ApiAccess = {
      admit: ({ spends }) => {
        admitted.push(spends);
        return { keyId: "key-1", name: "test" };
      },
      recordAnswer: ({ result }) => {
        counted.push(result.usage);
      },
    };
    try {
      const store = openModelStore({ home: directory.home });
      const made = generateTestModel({ size: "tiny", seed: 1 });
      const { model } = await store.addBytes({ bytes: made.bytes, name: made.name, source: "test" });
      await engine.loadModel({ hash: model.hash, path: store.pathOf(model.hash), name: model.name });
      const server = await startApiServer({ engine, access });
      try {
        const response = await fetch(`${server.url}/v1/embeddings`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: made.name, input: ["one", "two"] }),
        });
        const body = (await response.json()) as { usage: { prompt_tokens: number } };
        assert.equal(response.status, 200);
        assert.deepEqual(admitted, [true], "admitted as a request that spends (rate limit and budget apply)");
        assert.deepEqual(counted, [
          {
            promptTokens: body.usage.prompt_tokens,
            completionTokens: 0,
            totalTokens: body.usage.prompt_tokens,
          },
        ]);
      } finally {
        await server.close();
      }
    } finally {
      await engine.close();
      await directory.remove();
    }
  });
});
