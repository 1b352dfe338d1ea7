import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../../src/config/index.ts";
import { InvalidInputError } from "../../src/errors/index.ts";
import { temporaryHome } from "../helpers.ts";

describe("configuration", () => {
  let directory: { home: string; remove: () => Promise<void> };
  const saved = { ...process.env };
  before(async () => {
    directory = await temporaryHome("mycel-config-");
  });
  after(async () => {
    process.env = saved;
    await directory.remove();
  });

  it("defaults bind loopback with 1 thread per sequence on 2 cores", () => {
    delete process.env.MYCEL_PORT;
    delete process.env.MYCEL_PARALLELISM;
    const config = loadConfig({ home: join(directory.home, "empty") });
    assert.equal(config.serve.host, "127.0.0.1");
    assert.equal(config.serve.port, 8080);
    assert.equal(config.home, join(directory.home, "empty"));
    assert.ok(config.engine.threadsPerSequence >= 1);
  });

  it("layers config.json < environment < flags", async () => {
    await writeFile(
      join(directory.home, "config.json"),
      JSON.stringify({ engine: { parallelism: 3, maxQueue: 7 }, serve: { port: 9001 } }),
    );
    delete process.env.MYCEL_PORT;
    process.env.MYCEL_PARALLELISM = "5";
    const fromFileAndEnv = loadConfig({ home: directory.home });
    assert.equal(fromFileAndEnv.serve.port, 9001);
    assert.equal(fromFileAndEnv.engine.maxQueue, 7);
    assert.equal(fromFileAndEnv.engine.parallelism, 5);
    const withFlags = loadConfig({
      home: directory.home,
      engine: { parallelism: 1, maxQueue: undefined },
      serve: { port: 0 },
    });
    assert.equal(withFlags.engine.parallelism, 1);
    assert.equal(withFlags.engine.maxQueue, 7, "an undefined flag leaves the value alone");
    assert.equal(withFlags.serve.port, 0);
    delete process.env.MYCEL_PARALLELISM;
  });

  it("refuses a bad config file or environment value, naming it", async () => {
    await writeFile(join(directory.home, "config.json"), JSON.stringify({ engine: { parallelism: 0 } }));
    assert.throws(
      () => loadConfig({ home: directory.home }),
      (error: unknown) =>
        error instanceof InvalidInputError && /config\.json: engine\.parallelism/.test(error.message),
    );
    await writeFile(join(directory.home, "config.json"), JSON.stringify({ serve: { colour: "blue" } }));
    assert.throws(() => loadConfig({ home: directory.home }), /config\.json/);
    await writeFile(join(directory.home, "config.json"), "{nope");
    assert.throws(() => loadConfig({ home: directory.home }), /not valid JSON/);
    await writeFile(join(directory.home, "config.json"), "{}");
    process.env.MYCEL_PORT = "eighty";
    assert.throws(
      () => loadConfig({ home: directory.home }),
      /MYCEL_PORT=eighty is not a non-negative integer/,
    );
    delete process.env.MYCEL_PORT;
  });
});
