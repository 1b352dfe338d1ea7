import assert from "node:assert/strict";
import { readdir, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runMycel, startMycelServer, temporaryHome } from "../helpers.ts";

describe("the mycel command", () => {
  let directory: { home: string; remove: () => Promise<void> };
  before(async () => {
    directory = await temporaryHome("mycel-cli-");
  });
  after(() => directory.remove());

  const mycel = (args: string[], env?: Record<string, string>) =>
    runMycel(args, { home: directory.home, env });

  it("make-test is deterministic and prints the name and sha256", async () => {
    const first = await mycel(["model", "make-test"]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /mycel-test-tiny-s1-f32/);
    const hash = /sha256: ([0-9a-f]{64})/.exec(first.stdout)?.[1];
    assert.ok(hash);
    const second = await mycel(["model", "make-test", "--size", "tiny", "--seed", "1", "--quant", "f32"]);
    assert.equal(/sha256: ([0-9a-f]{64})/.exec(second.stdout)?.[1], hash);
    assert.match(second.stdout, /already in the store/);
    const other = await mycel(["model", "make-test", "--seed", "2", "--quant", "q8_0"]);
    assert.equal(other.code, 0, other.stderr);
    assert.notEqual(/sha256: ([0-9a-f]{64})/.exec(other.stdout)?.[1], hash);
  });

  it("lists models with their GGUF metadata", async () => {
    const listed = await mycel(["model", "list"]);
    assert.equal(listed.code, 0, listed.stderr);
    const lines = listed.stdout.trim().split("\n");
    assert.match(lines[0] ?? "", /^NAME\s+HASH\s+ARCH\s+PARAMS\s+QUANT\s+SIZE\s+LICENSE$/);
    assert.match(
      listed.stdout,
      /mycel-test-tiny-s1-f32\s+[0-9a-f]{16}\s+llama\s+115\.4K\s+F32\s+456\.8 KiB\s+Apache-2\.0/,
    );
    assert.match(listed.stdout, /mycel-test-tiny-s2-q8_0\s+[0-9a-f]{16}\s+llama\s+115\.4K\s+Q8_0/);
    const json = JSON.parse((await mycel(["model", "list", "--json"])).stdout) as Array<{ name: string }>;
    assert.equal(json.length, 2);
  });

  it("refuses a file that is not a model with a clear message and changes nothing", async () => {
    const path = join(directory.home, "readme.gguf");
    await writeFile(path, "hello");
    const before = (await mycel(["model", "list", "--json"])).stdout;
    const added = await mycel(["model", "add", path]);
    assert.equal(added.code, 1);
    assert.match(added.stderr, /^error: .*is not a GGUF file/m);
    assert.match(added.stderr, /Hint: /);
    assert.equal((await mycel(["model", "list", "--json"])).stdout, before);
  });

  it("fails at once with a clear message when a download host is unreachable", async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const probe = createServer();
      probe.listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const started = performance.now();
    const added = await mycel(["model", "add", "hf:someone/some-model/model.Q4_K_M.gguf"], {
      MYCEL_HF_ENDPOINT: `http://127.0.0.1:${closedPort}`,
    });
    assert.equal(added.code, 1);
    assert.match(
      added.stderr,
      new RegExp(`cannot reach 127\\.0\\.0\\.1:${closedPort} \\(ECONNREFUSED\\): are you offline\\?`),
    );
    assert.ok(performance.now() - started < 15_000);
  });

  it("adds a local file, and removes a model by name", async () => {
    const exported = join(directory.home, "models");
    const files = (await readdir(exported)).filter((file) => file.endsWith(".gguf"));
    assert.equal(files.length, 2);
    const removed = await mycel(["model", "rm", "mycel-test-tiny-s2-q8_0"]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stdout, /removed: mycel-test-tiny-s2-q8_0/);
    const missing = await mycel(["model", "rm", "mycel-test-tiny-s2-q8_0"]);
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      /model "mycel-test-tiny-s2-q8_0" not found\nHint: .*in the store: mycel-test-tiny-s1-f32 \(`mycel model list`\)/,
    );
  });

  it("serve names the fix for an unknown model and for bad flags", async () => {
    const unknown = await mycel(["serve", "--model", "llama-9000"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /model "llama-9000" not found/);
    const badPort = await mycel(["serve", "--model", "x", "--port", "http"]);
    assert.notEqual(badPort.code, 0);
    assert.match(badPort.stderr, /--port must be an integer from 0 to 65535/);
  });

  it("demo (npm start) serves the tiny model and its printed curl example works", async () => {
    const demo = await startMycelServer(["demo", "--port", "0"], { home: directory.home });
    try {
      assert.match(demo.url, /^http:\/\/127\.0\.0\.1:\d+$/, "binds loopback by default");
      const example = /-d '(\{.*\})'/.exec(demo.output())?.[1];
      assert.ok(example, demo.output());
      assert.match(demo.output(), new RegExp(`curl -s ${demo.url}/v1/chat/completions`));
      const response = await fetch(`${demo.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: example,
      });
      assert.equal(response.status, 200);
      const body = (await response.json()) as {
        choices: Array<{ message: { content: string } }>;
        usage: { completion_tokens: number };
      };
      assert.ok(body.usage.completion_tokens > 0);
    } finally {
      assert.equal(await demo.stop(), 0);
    }
  });
});
