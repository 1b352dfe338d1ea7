import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { after, before, describe, it } from "node:test";
import {
  type ApiServer,
  type InferenceBackend,
  isLoopbackHostHeader,
  isSameOrigin,
  startApiServer,
} from "../../src/api/index.ts";
import { ModelNotFoundError } from "../../src/errors/index.ts";

/** A backend that serves no models: enough for /health and the Host check. */
const emptyBackend: InferenceBackend = {
  listModels: () => [],
  findModel(nameOrHash) {
    throw new ModelNotFoundError(nameOrHash);
  },
  generate: () => Promise.reject(new Error("this backend does not generate")),
  health: () => ({ status: "ok" }),
};

/** GET `path` with the Host header set to `host` (fetch does not let a caller set it). */
function getWithHost(server: ApiServer, path: string, host: string) {
  return new Promise<{ status: number; body: unknown }>((resolve, reject) => {
    const outgoing = httpRequest(
      { host: "127.0.0.1", port: server.port, path, method: "GET", headers: { host } },
      (response) => {
        let text = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          text += chunk;
        });
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) }));
        response.on("error", reject);
      },
    );
    outgoing.on("error", reject);
    outgoing.end();
  });
}

describe("API: Host header check", () => {
  it("takes loopback names with any port as loopback", () => {
    for (const header of [
      "127.0.0.1:8080",
      "127.0.0.1",
      "localhost",
      "localhost:1",
      "[::1]:80",
      "[::1]",
      "127.1.2.3",
    ])
      assert.equal(isLoopbackHostHeader(header), true, header);
  });

  it("takes every other name as foreign", () => {
    const foreign = [
      "evil.example",
      "evil.example:8080",
      "127.0.0.1.evil.example",
      "localhost.evil",
      "localhost.evil:80",
      "evil-localhost",
      "128.0.0.1",
      "10.0.0.1:80",
      "",
      undefined,
      "[::2]:80",
      "[::1",
    ];
    for (const header of foreign) assert.equal(isLoopbackHostHeader(header), false, String(header));
  });

  describe("a server on 127.0.0.1", () => {
    let server: ApiServer;

    before(async () => {
      server = await startApiServer({ backend: emptyBackend, host: "127.0.0.1", port: 0 });
    });
    after(() => server?.close());

    it("answers with its own address as Host", async () => {
      assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const response = await fetch(`${server.url}/health`);
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), { status: "ok" });
      const named = await getWithHost(server, "/health", `localhost:${server.port}`);
      assert.equal(named.status, 200, "localhost is loopback too");
    });

    it("refuses another name with 421 misdirected_request, on every path", async () => {
      for (const path of ["/health", "/v1/models", "/no/such/route"]) {
        const refused = await getWithHost(server, path, "evil.example");
        assert.equal(refused.status, 421, path);
        const { error } = refused.body as { error: { code: string; message: string; type: string } };
        assert.equal(error.code, "misdirected_request", path);
        assert.equal(error.type, "invalid_request_error");
        assert.match(error.message, /localhost only, not evil\.example/);
      }
      const rebound = await getWithHost(server, "/health", `127.0.0.1.evil.example:${server.port}`);
      assert.equal(rebound.status, 421, "a name that only starts like loopback");
    });

    it("refuses a POST from another web page's origin with 403, and takes its own origin and none", async () => {
      const post = (origin: string | undefined) =>
        fetch(`${server.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "text/plain", ...(origin ? { origin } : {}) },
          body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
        });
      const foreign = await post("http://evil.example");
      assert.equal(foreign.status, 403);
      const { error } = (await foreign.json()) as { error: { code: string; message: string } };
      assert.equal(error.code, "cross_origin_refused");
      assert.match(error.message, /evil\.example/);
      assert.equal((await post("null")).status, 403, "an opaque origin (sandboxed frame, file://)");
      // Its own origin and no origin at all reach the API: here the model is unknown (404), not refused.
      assert.equal((await post(server.url)).status, 404);
      assert.equal((await post(undefined)).status, 404);
    });
  });
});

describe("API: Origin check", () => {
  it("takes no Origin, or the server's own, as the same origin", () => {
    assert.equal(isSameOrigin(undefined, "127.0.0.1:8080"), true, "not a browser");
    assert.equal(isSameOrigin("http://127.0.0.1:8080", "127.0.0.1:8080"), true);
    assert.equal(isSameOrigin("http://localhost:8080", "LOCALHOST:8080"), true);
  });

  it("takes any other origin as foreign", () => {
    for (const [origin, host] of [
      ["http://evil.example", "127.0.0.1:8080"],
      ["http://127.0.0.1:9999", "127.0.0.1:8080"],
      ["http://localhost:8080", "127.0.0.1:8080"],
      ["null", "127.0.0.1:8080"],
      ["file://", "127.0.0.1:8080"],
      ["http://127.0.0.1:8080", undefined],
    ] as const)
      assert.equal(isSameOrigin(origin, host), false, `${origin} on ${host}`);
  });
});
