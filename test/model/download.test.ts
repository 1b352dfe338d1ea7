import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdir } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { DownloadError, InvalidModelFileError } from "../../src/errors/index.ts";
import { generateTestModel, openModelStore, parseModelSource } from "../../src/model/index.ts";
import { temporaryHome } from "../helpers.ts";

/** A loopback file server with Range support that can cut the first transfer in half. */
function startFileServer(files: Record<string, Uint8Array>) {
  const log: Array<{ path: string; range: string | undefined }> = [];
  let cutNext = false;
  const server: Server = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://x").pathname;
    log.push({ path, range: request.headers.range });
    const file = files[path];
    if (!file) {
      response.writeHead(404).end("not found");
      return;
    }
    const range = /bytes=(\d+)-/.exec(request.headers.range ?? "");
    const start = range ? Number(range[1]) : 0;
    const body = Buffer.from(file).subarray(start);
    response.writeHead(range ? 206 : 200, {
      "content-length": body.length,
      ...(range ? { "content-range": `bytes ${start}-${file.length - 1}/${file.length}` } : {}),
    });
    if (cutNext) {
      cutNext = false;
      response.write(body.subarray(0, Math.floor(body.length / 2)), () => response.socket?.destroy());
      return;
    }
    response.end(body);
  });
  return new Promise<{
    url: string;
    log: typeof log;
    cutNextTransfer: () => void;
    close: () => Promise<void>;
  }>((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}`,
        log,
        cutNextTransfer: () => {
          cutNext = true;
        },
        close: () => new Promise((done) => server.close(() => done())),
      });
    });
  });
}

describe("model downloads", () => {
  const made = generateTestModel({ size: "tiny", seed: 21, quant: "f16" });
  const hash = createHash("sha256").update(made.bytes).digest("hex");
  let directory: { home: string; remove: () => Promise<void> };
  let server: Awaited<ReturnType<typeof startFileServer>>;

  before(async () => {
    directory = await temporaryHome("mycel-download-");
    server = await startFileServer({
      "/files/model.gguf": made.bytes,
      "/page.gguf": Buffer.from("<!doctype html><html>login</html>"),
      "/owner/repo/resolve/main/sub/model-q.gguf": made.bytes,
    });
  });
  after(async () => {
    await server.close();
    await directory.remove();
  });

  it("parses hf: sources into resolve URLs", () => {
    const source = parseModelSource("hf:TheOwner/the-repo/dir/file.gguf@v1");
    assert.equal(source.kind, "url");
    assert.match(
      source.kind === "url" ? source.url : "",
      /\/TheOwner\/the-repo\/resolve\/v1\/dir\/file\.gguf$/,
    );
    assert.throws(() => parseModelSource("hf:owner/file.gguf"), DownloadError);
    assert.deepEqual(parseModelSource("./local.gguf"), { kind: "file", path: "./local.gguf" });
  });

  it("resumes an interrupted download and hashes the whole file", async () => {
    const store = openModelStore({ home: join(directory.home, "resume") });
    server.cutNextTransfer();
    const url = `${server.url}/files/model.gguf`;
    await assert.rejects(
      store.add({ source: url }),
      (error: unknown) => error instanceof DownloadError && /interrupted|ended early/.test(error.message),
    );
    assert.deepEqual(await store.list(), [], "nothing is added from a partial download");
    const progress: Array<{ received: number; resumedFrom: number }> = [];
    const { model } = await store.add({ source: url, onProgress: (p) => progress.push(p) });
    assert.equal(model.hash, hash);
    assert.equal(model.sizeBytes, made.bytes.length);
    const lastRange = server.log.filter((entry) => entry.path === "/files/model.gguf").at(-1)?.range;
    assert.match(lastRange ?? "", /^bytes=\d+-$/, "the second request asked for the rest only");
    assert.ok((progress[0]?.resumedFrom ?? 0) > 0, "progress reports the resume point");
    assert.deepEqual(
      await readdir(join(directory.home, "resume", "downloads")),
      [],
      "the part file became the model",
    );
  });

  it("downloads hf: sources from the configured endpoint", async () => {
    process.env.MYCEL_HF_ENDPOINT = server.url;
    try {
      const store = openModelStore({ home: join(directory.home, "hf") });
      const { model } = await store.add({ source: "hf:owner/repo/sub/model-q.gguf" });
      assert.equal(model.hash, hash);
      assert.equal(model.name, "model-q");
      await assert.rejects(store.add({ source: "hf:owner/repo/missing.gguf" }), /HTTP 404/);
    } finally {
      delete process.env.MYCEL_HF_ENDPOINT;
    }
  });

  it("refuses a URL that serves something other than GGUF", async () => {
    const store = openModelStore({ home: join(directory.home, "html") });
    await assert.rejects(store.add({ source: `${server.url}/page.gguf` }), InvalidModelFileError);
    assert.deepEqual(await store.list(), []);
    assert.deepEqual(await readdir(join(directory.home, "html", "downloads")), []);
  });

  it("fails at once with a clear message when the host cannot be reached", async () => {
    const store = openModelStore({ home: join(directory.home, "offline") });
    const closed = await startFileServer({});
    const deadUrl = `${closed.url}/model.gguf`;
    await closed.close();
    const started = performance.now();
    await assert.rejects(
      store.add({ source: deadUrl }),
      (error: unknown) =>
        error instanceof DownloadError &&
        error.code === "network_unreachable" &&
        /offline/.test(error.message),
    );
    assert.ok(performance.now() - started < 5_000, "no retry loop before failing");
  });
});
