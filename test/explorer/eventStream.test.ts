import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { HttpError } from "../../src/api/index.ts";
import { ServiceUnavailableError } from "../../src/errors/index.ts";
import {
  createEventStream,
  type EventStream,
  maxEventClients,
  maxEventClientsPerAddress,
} from "../../src/explorer/eventStream.ts";
import type { HistoryPoint } from "../../src/explorer/index.ts";
import { waitFor, withDeadline } from "../helpers.ts";

const point: HistoryPoint = { t: 1_700_000_000_000, tokens_per_second: 12.5, requests: 3, providers: [] };

/** Reads an event stream's body as text, a chunk at a time. */
function bodyReader(response: Response) {
  assert.ok(response.body, "a body");
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  return {
    /** Reads until the text so far contains `expected`, and returns the text so far. */
    async until(expected: string, timeoutMs = 5_000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no ${JSON.stringify(expected)} in ${JSON.stringify(text)}`)),
          timeoutMs,
        );
      });
      try {
        while (!text.includes(expected)) {
          const next = await Promise.race([reader.read(), timeout]);
          if (next.done)
            throw new Error(`the stream ended before ${JSON.stringify(expected)}: ${JSON.stringify(text)}`);
          text += decoder.decode(next.value, { stream: true });
        }
        return text;
      } finally {
        clearTimeout(timer);
      }
    },
    /** Reads to the end (which must come within `timeoutMs`); returns the whole text. */
    async rest(timeoutMs = 5_000) {
      const readAll = async () => {
        for (;;) {
          const next = await reader.read();
          if (next.done) return text;
          text += decoder.decode(next.value, { stream: true });
        }
      };
      return withDeadline(
        () => `the end of the stream (so far ${JSON.stringify(text)})`,
        readAll(),
        timeoutMs,
      );
    },
  };
}

/** Request and response stand-ins that count as one open stream each (no sockets), from `remoteAddress`. */
function fakeClient(parameters: { remoteAddress?: string; headers?: Record<string, string> } = {}) {
  const request = Object.assign(new EventEmitter(), {
    headers: { host: "127.0.0.1:8080", ...parameters.headers },
    socket: { remoteAddress: parameters.remoteAddress ?? "127.0.0.1" },
  }) as unknown as IncomingMessage;
  const written: string[] = [];
  const response = Object.assign(new EventEmitter(), {
    ended: false,
    status: 0,
    writeHead(status: number) {
      response.status = status;
      return response;
    },
    write(text: string) {
      written.push(text);
      return true;
    },
    end() {
      response.ended = true;
      return response;
    },
  });
  return { request, response, written, asResponse: response as unknown as ServerResponse };
}

describe("explorer: event stream", () => {
  let server: Server;
  let stream: EventStream;
  let url: string;

  before(async () => {
    stream = createEventStream();
    server = createServer((request, response) => stream.attach(request, response));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`;
  });
  after(async () => {
    stream.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("opens with a retry line, then sends each published event as `event:` and `data:` lines", async () => {
    const controller = new AbortController();
    const response = await fetch(url, { signal: controller.signal });
    try {
      assert.equal(response.status, 200);
      assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
      assert.equal(response.headers.get("cache-control"), "no-cache");
      const body = bodyReader(response);
      assert.equal(await body.until("\n\n"), "retry: 3000\n\n");
      await waitFor(
        "the client to be counted",
        async () => (stream.clients() === 1 ? true : undefined),
        5_000,
      );
      stream.publish({ type: "history", data: point });
      const text = await body.until("}\n\n");
      assert.equal(text, `retry: 3000\n\nevent: history\ndata: ${JSON.stringify(point)}\n\n`);
      const audit = {
        request_id: `0x${"ab".repeat(32)}`,
        segment: 1,
        audit: {
          verdict: "fail" as const,
          validator: "0x1111111111111111111111111111111111111111",
          reasons: [{ code: "mismatch", message: "a line\nbreak" }],
          metrics: {},
          audited_at: 1_700_000_000_000,
          signature: `0x${"0f".repeat(65)}`,
        },
      };
      stream.publish({ type: "audit", data: audit });
      const after = await body.until("event: audit");
      const last = (await body.until(`${JSON.stringify(audit)}\n\n`)).slice(after.indexOf("event: audit"));
      assert.equal(last, `event: audit\ndata: ${JSON.stringify(audit)}\n\n`, "newlines in data stay escaped");
    } finally {
      controller.abort();
    }
    await waitFor("the client to be dropped", async () => (stream.clients() === 0 ? true : undefined), 5_000);
    assert.equal(stream.clients(), 0);
  });

  it("keeps sending to a client that stays open while another leaves", async () => {
    const staying = new AbortController();
    const leaving = new AbortController();
    const first = bodyReader(await fetch(url, { signal: staying.signal }));
    const second = bodyReader(await fetch(url, { signal: leaving.signal }));
    try {
      await first.until("retry: 3000\n\n");
      await second.until("retry: 3000\n\n");
      await waitFor("two clients", async () => (stream.clients() === 2 ? true : undefined), 5_000);
      leaving.abort();
      await waitFor("one client", async () => (stream.clients() === 1 ? true : undefined), 5_000);
      // A fixed wait on purpose: some time for a wrongly early "close" of the request to drop the staying client
      // too (what is tested is that nothing happens).
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(stream.clients(), 1, "the staying client is still counted");
      stream.publish({ type: "history", data: point });
      assert.match(await first.until("event: history"), /event: history\ndata: /);
    } finally {
      staying.abort();
    }
    await waitFor("no clients", async () => (stream.clients() === 0 ? true : undefined), 5_000);
  });

  it("ends every open stream on close()", async () => {
    const own = createEventStream();
    const ownServer = createServer((request, response) => own.attach(request, response));
    await new Promise<void>((resolve) => ownServer.listen(0, "127.0.0.1", resolve));
    try {
      const ownUrl = `http://127.0.0.1:${(ownServer.address() as AddressInfo).port}/`;
      const readers = [bodyReader(await fetch(ownUrl)), bodyReader(await fetch(ownUrl))];
      for (const reader of readers) await reader.until("retry: 3000\n\n");
      await waitFor("two clients", async () => (own.clients() === 2 ? true : undefined), 5_000);
      own.close();
      assert.equal(own.clients(), 0);
      for (const reader of readers)
        assert.equal(await reader.rest(), "retry: 3000\n\n", "ended, nothing more");
      own.publish({ type: "history", data: point });
      assert.equal(own.clients(), 0);
    } finally {
      ownServer.closeAllConnections();
      await new Promise((resolve) => ownServer.close(resolve));
    }
  });

  it(`refuses a stream beyond ${maxEventClients} with ServiceUnavailableError, until one closes`, () => {
    const own = createEventStream();
    try {
      // From many addresses: one address may hold only maxEventClientsPerAddress of them.
      const clients = Array.from({ length: maxEventClients }, (_, index) =>
        fakeClient({ remoteAddress: `10.0.0.${index}` }),
      );
      for (const client of clients) own.attach(client.request, client.asResponse);
      assert.equal(own.clients(), maxEventClients);
      assert.deepEqual(clients[0]?.written, ["retry: 3000\n\n"]);
      assert.equal(clients[0]?.response.status, 200);

      const extra = fakeClient({ remoteAddress: "10.0.1.1" });
      assert.throws(
        () => own.attach(extra.request, extra.asResponse),
        (error: unknown) => {
          assert.ok(error instanceof ServiceUnavailableError);
          assert.equal(error.retryAfterSeconds, 5);
          assert.match(error.shortMessage, new RegExp(`${maxEventClients} event streams`));
          return true;
        },
      );
      assert.equal(extra.response.status, 0, "the refused response was left alone");
      assert.deepEqual(extra.written, []);
      assert.equal(own.clients(), maxEventClients);

      clients[0]?.response.emit("close");
      assert.equal(own.clients(), maxEventClients - 1, "a closed response frees its place");
      clients[1]?.request.emit("close");
      assert.equal(own.clients(), maxEventClients - 2, "so does a closed request");
      own.attach(extra.request, extra.asResponse);
      assert.equal(own.clients(), maxEventClients - 1);

      own.publish({ type: "history", data: point });
      const event = `event: history\ndata: ${JSON.stringify(point)}\n\n`;
      assert.deepEqual(extra.written, ["retry: 3000\n\n", event]);
      assert.deepEqual(clients[0]?.written, ["retry: 3000\n\n"], "nothing to a closed one");

      own.close();
      assert.equal(own.clients(), 0);
      assert.equal(extra.response.ended, true);
      assert.equal(clients[2]?.response.ended, true);
      assert.equal(clients[0]?.response.ended, false, "a closed one is not ended again");
    } finally {
      own.close();
    }
  });

  it(`refuses one address a stream beyond ${maxEventClientsPerAddress}, and other addresses still get theirs`, () => {
    const own = createEventStream();
    try {
      const page = Array.from({ length: maxEventClientsPerAddress }, () =>
        fakeClient({ remoteAddress: "10.0.0.9" }),
      );
      for (const client of page) own.attach(client.request, client.asResponse);
      const greedy = fakeClient({ remoteAddress: "10.0.0.9" });
      assert.throws(
        () => own.attach(greedy.request, greedy.asResponse),
        (error: unknown) =>
          error instanceof ServiceUnavailableError &&
          error.shortMessage.includes(`${maxEventClientsPerAddress} event streams are open from 10.0.0.9`),
      );
      assert.deepEqual(greedy.written, [], "nothing written to the refused one");
      const other = fakeClient({ remoteAddress: "10.0.0.10" });
      own.attach(other.request, other.asResponse);
      assert.equal(own.clients(), maxEventClientsPerAddress + 1);
      page[0]?.response.emit("close");
      own.attach(greedy.request, greedy.asResponse);
      assert.equal(own.clients(), maxEventClientsPerAddress + 1, "a closed stream frees its address's place");
    } finally {
      own.close();
    }
  });

  it("refuses web pages of other origins with 403, and takes this server's own page and programs", () => {
    const own = createEventStream();
    try {
      const foreignHeaders: Record<string, string>[] = [
        { origin: "https://evil.example" },
        { "sec-fetch-site": "cross-site" },
      ];
      for (const headers of foreignHeaders) {
        const foreign = fakeClient({ headers });
        assert.throws(
          () => own.attach(foreign.request, foreign.asResponse),
          (error: unknown) => error instanceof HttpError && error.status === 403,
          JSON.stringify(headers),
        );
        assert.equal(foreign.response.status, 0);
      }
      const ownHeaders: Record<string, string>[] = [
        {},
        { origin: "http://127.0.0.1:8080", "sec-fetch-site": "same-origin" },
      ];
      for (const headers of ownHeaders) {
        const welcome = fakeClient({ headers });
        own.attach(welcome.request, welcome.asResponse);
        assert.equal(welcome.response.status, 200, JSON.stringify(headers));
      }
    } finally {
      own.close();
    }
  });
});
