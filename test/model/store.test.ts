import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { InvalidModelFileError, ModelNotFoundError } from "../../src/errors/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { temporaryHome } from "../helpers.ts";

describe("model store", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let modelPath: string;
  const made = generateTestModel({ size: "tiny", seed: 11 });
  const expectedHash = createHash("sha256").update(made.bytes).digest("hex");

  before(async () => {
    directory = await temporaryHome("mycel-store-");
    modelPath = join(directory.home, "some-model.gguf");
    await writeFile(modelPath, made.bytes);
  });
  after(() => directory.remove());

  it("adds a file content-addressed by sha256, with its metadata", async () => {
    const store = openModelStore({ home: join(directory.home, "a") });
    const progress: number[] = [];
    const { model, alreadyPresent } = await store.add({
      source: modelPath,
      onProgress: (p) => progress.push(p.received),
    });
    assert.equal(alreadyPresent, false);
    assert.equal(model.hash, expectedHash);
    assert.equal(model.name, "some-model");
    assert.equal(model.architecture, "llama");
    assert.equal(model.quantization, "F32");
    assert.equal(model.parameterCount, made.parameterCount);
    assert.equal(model.sizeBytes, made.bytes.length);
    assert.equal(model.license, "Apache-2.0");
    assert.equal(model.contextLength, 2048);
    assert.equal(progress.at(-1), made.bytes.length);
    assert.deepEqual(
      await readdir(join(directory.home, "a", "models")),
      [`${expectedHash}.gguf`, "index.json"].sort(),
    );
    const again = await store.add({ source: modelPath });
    assert.equal(again.alreadyPresent, true);
    assert.equal((await store.list()).length, 1);
  });

  it("resolves by name, hash, sha256: prefix and unique hash prefix", async () => {
    const store = openModelStore({ home: join(directory.home, "a") });
    for (const query of ["some-model", expectedHash, `sha256:${expectedHash}`, expectedHash.slice(0, 8)]) {
      assert.equal((await store.resolve(query)).hash, expectedHash, query);
    }
    await assert.rejects(store.resolve("nope"), ModelNotFoundError);
    await assert.rejects(
      store.resolve(expectedHash.slice(0, 5)),
      ModelNotFoundError,
      "5 characters is too short",
    );
  });

  it("gives a second model with a taken name a suffixed name", async () => {
    const store = openModelStore({ home: join(directory.home, "a") });
    const other = generateTestModel({ size: "tiny", seed: 12 });
    const otherPath = join(directory.home, "other", "some-model.gguf");
    await mkdir(join(directory.home, "other"), { recursive: true });
    await writeFile(otherPath, other.bytes);
    const { model } = await store.add({ source: otherPath });
    assert.match(model.name, /^some-model-[0-9a-f]{8}$/);
    assert.equal((await store.list()).length, 2);
    await store.remove(model.name);
  });

  it("refuses a file that is not GGUF and changes nothing", async () => {
    const store = openModelStore({ home: join(directory.home, "a") });
    const before = await store.list();
    const textPath = join(directory.home, "notes.gguf");
    await writeFile(textPath, "this is not a model\n");
    await assert.rejects(store.add({ source: textPath }), InvalidModelFileError);
    const corruptPath = join(directory.home, "corrupt.gguf");
    await writeFile(
      corruptPath,
      Buffer.concat([Buffer.from("GGUF"), Buffer.from([3, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255])]),
    );
    await assert.rejects(store.add({ source: corruptPath }), InvalidModelFileError);
    assert.deepEqual(await store.list(), before);
    assert.deepEqual(await readdir(join(directory.home, "a", "tmp")), [], "no temporary file left behind");
    await assert.rejects(store.add({ source: join(directory.home, "missing.gguf") }), /cannot read/);
  });

  it("removes a model and its file", async () => {
    const store = openModelStore({ home: join(directory.home, "a") });
    const removed = await store.remove(expectedHash.slice(0, 10));
    assert.equal(removed.hash, expectedHash);
    assert.deepEqual(await store.list(), []);
    assert.deepEqual(await readdir(join(directory.home, "a", "models")), ["index.json"]);
    await assert.rejects(store.remove(expectedHash), ModelNotFoundError);
  });

  it("adds in-memory bytes (make-test) idempotently", async () => {
    const store = openModelStore({ home: join(directory.home, "b") });
    const first = await store.addBytes({ bytes: made.bytes, name: made.name, source: "make-test" });
    const second = await store.addBytes({ bytes: made.bytes, name: made.name, source: "make-test" });
    assert.equal(first.model.hash, expectedHash);
    assert.equal(second.alreadyPresent, true);
    assert.equal((await store.list()).length, 1);
  });
});
