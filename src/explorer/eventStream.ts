/** Server-sent events: live updates for every open explorer page (GET /mycel/v1/events). */
import type { IncomingMessage, ServerResponse } from "node:http";
import { ServiceUnavailableError } from "../errors/index.ts";
import type { ExplorerEvent } from "./types.ts";

/** Open event streams at most; beyond that a new one is refused with 503 (each holds a socket). */
export const maxEventClients = 64;
/** A comment line this often keeps proxies and idle timeouts from closing a quiet stream. */
const heartbeatMs = 15_000;

/** The open event streams, made by {@link createEventStream}. */
export type EventStream = {
  /** Turns the response into an event stream until the client goes away. */
  attach(request: IncomingMessage, response: ServerResponse): void;
  publish(event: ExplorerEvent): void;
  clients(): number;
  close(): void;
};

export function createEventStream(): EventStream {
  const clients = new Set<ServerResponse>();
  const heartbeat = setInterval(() => {
    for (const client of clients) client.write(": keep-alive\n\n");
  }, heartbeatMs);
  heartbeat.unref();
  return {
    attach(request, response) {
      if (clients.size >= maxEventClients)
        throw new ServiceUnavailableError(
          `${clients.size} event streams are open, the most this gateway keeps`,
          {
            hint: "close other explorer tabs, or poll the JSON endpoints instead",
            retryAfterSeconds: 5,
          },
        );
      response.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        connection: "keep-alive",
        "x-content-type-options": "nosniff",
      });
      response.write("retry: 3000\n\n");
      clients.add(response);
      const forget = () => clients.delete(response);
      request.once("close", forget);
      response.once("close", forget);
    },
    publish(event) {
      if (clients.size === 0) return;
      const text = `event: ${event.type}\ndata: ${JSON.stringify(event.data)}\n\n`;
      for (const client of clients) client.write(text);
    },
    clients: () => clients.size,
    close() {
      clearInterval(heartbeat);
      for (const client of clients) client.end();
      clients.clear();
    },
  };
}
