/**
 * The API server's limits, in process on loopback with raw sockets: a request whose headers or body do not arrive
 * within their timeouts is answered 408 and closed; connections beyond the cap are closed at once while those held
 * keep being served; malformed URLs are a 400; an idle kept-alive connection is closed.
 */
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { type ApiServer, type InferenceBackend, startApiServer } from "../../src/api/index.ts";
import { ModelNotFoundError } from "../../src/errors/index.ts";
import { waitFor, withDeadline } from "../helpers.ts";

const backend: InferenceBackend = {
  listModels: () => [],
  findModel(nameOrHash) {
    throw new ModelNotFoundError(nameOrHash);
  },
  generate: () => Promise.reject(new Error("this backend does not generate")),
  health: () => ({ status: "ok" }),
};

/** A raw connection: what it received, and a promise of its close (with the time it took from opening). */
function rawConnection(server: ApiServer) {
  const openedAt = Date.now();
  const socket: Socket = connect(server.port, "127.0.0.1");
  let received = "";
  socket.setEncoding("latin1");
  socket.on("data", (chunk: string) => {
    received += chunk;
  });
  socket.on("error", () => undefined);
  const closed = new Promise<number>((resolve) => socket.on("close", () => resolve(Date.now() - openedAt)));
  const connected = new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  return { socket, connected, closed, received: () => received };
}

describe("API server limits (in process, raw sockets)", () => {
  let server: ApiServer;
  before(async () => {
    server = await startApiServer({
      backend,
      limits: { headerTimeoutMs: 1_000, bodyTimeoutMs: 2_000, keepAliveTimeoutMs: 1_000, maxConnections: 4 },
    });
  });
  after(async () => {
    await server.close();
  });

  it("answers 408 and closes a request whose headers take longer than the header timeout", async () => {
    const slow = rawConnection(server);
    await slow.connected;
    slow.socket.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    const heldMs = await withDeadline("the slow-header connection to close", slow.closed, 5_000);
    assert.match(slow.received(), /^HTTP\/1\.1 408 /);
    assert.ok(heldMs >= 900 && heldMs < 3_000, `closed after ${heldMs} ms`);
  });

  it("answers 408 and closes a request whose body takes longer than the body timeout", async () => {
    const slow = rawConnection(server);
    await slow.connected;
    slow.socket.write(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    );
    const trickle = setInterval(() => slow.socket.write(" "), 200);
    const heldMs = await withDeadline("the slow-body connection to close", slow.closed, 6_000).finally(() =>
      clearInterval(trickle),
    );
    assert.match(slow.received(), /^HTTP\/1\.1 408 /);
    assert.ok(heldMs >= 1_900 && heldMs < 4_000, `closed after ${heldMs} ms`);
  });

  it("closes connections beyond the cap at once and keeps serving those it holds", async () => {
    const held = Array.from({ length: 4 }, () => rawConnection(server));
    await Promise.all(held.map((connection) => connection.connected));
    const extra = rawConnection(server);
    await withDeadline("the connection beyond the cap to be closed", extra.closed, 2_000);
    assert.equal(extra.received(), "", "nothing answered on it");
    const first = held[0] as ReturnType<typeof rawConnection>;
    first.socket.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    await withDeadline(
      "an answer on a held connection",
      new Promise<void>((resolve) => first.socket.on("data", () => resolve())),
      2_000,
    );
    assert.match(first.received(), /^HTTP\/1\.1 200 /);
    for (const connection of held) connection.socket.destroy();
    await Promise.all(held.map((connection) => connection.closed));
    await waitFor(
      "the server to count no connection",
      () =>
        new Promise<true | undefined>((resolve) =>
          server.server.getConnections((_, count) => resolve(count === 0 ? true : undefined)),
        ),
    );
  });

  it("closes an idle kept-alive connection after the keep-alive timeout", async () => {
    const idle = rawConnection(server);
    await idle.connected;
    idle.socket.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const heldMs = await withDeadline("the idle connection to close", idle.closed, 5_000);
    assert.match(idle.received(), /^HTTP\/1\.1 200 /);
    assert.ok(heldMs < 4_000, `closed after ${heldMs} ms`);
  });

  it("answers 400 to URLs that do not decode or parse", async () => {
    for (const path of ["/v1/models/%", "/v1/models/%E0%A4%A", "http://[/v1/models"]) {
      const connection = rawConnection(server);
      await connection.connected;
      connection.socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
      await withDeadline(`the answer to ${path}`, connection.closed, 3_000);
      assert.match(connection.received(), /^HTTP\/1\.1 400 /, path);
      assert.match(connection.received(), /"code":"invalid_url"/, path);
    }
  });

  it("refuses a body timeout shorter than the header timeout", async () => {
    await assert.rejects(
      startApiServer({ backend, limits: { headerTimeoutMs: 5_000, bodyTimeoutMs: 1_000 } }),
      /body timeout .* is shorter than the header timeout/,
    );
  });
});
