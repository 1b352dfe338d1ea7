/** Server-sent events: live updates for every open explorer page (GET /mycel/v1/events). */
import type { IncomingMessage, ServerResponse } from "node:http";
import { refuseForeignPages } from "../api/index.ts";
import { ServiceUnavailableError } from "../errors/index.ts";
import type { ExplorerEvent } from "./types.ts";

/** Open event streams at most; beyond that a new one is refused with 503 (each holds a socket). */
export const maxEventClients = 64;
/** Open event streams one client (one remote address) may hold, so that one page cannot take them all. */
export const maxEventClientsPerAddress = 16;
/** A comment line this often keeps proxies and idle timeouts from closing a quiet stream. */
const heartbeatMs = 15_000;

/** The open event streams, made by {@link createEventStream}. */
export type EventStream = {
  /**
   * Turns the response into an event stream until the client goes away. Refuses web pages of other origins (403),
   * and a stream beyond {@link maxEventClients} or {@link maxEventClientsPerAddress} of one address (503).
   */
  attach(request: IncomingMessage, response: ServerResponse): void;
  publish(event: ExplorerEvent): void;
  clients(): number;
  close(): void;
};

/** Creates the event streams of one explorer. */
export function createEventStream(): EventStream {
  const clients = new Set<ServerResponse>();
  const perAddress = new Map<string, number>();
  const heartbeat = setInterval(() => {
    for (const client of clients) client.write(": keep-alive\n\n");
  }, heartbeatMs);
  heartbeat.unref();
  return {
    attach(request, response) {
      refuseForeignPages(request);
      const address = request.socket?.remoteAddress ?? "unknown";
      const held = perAddress.get(address) ?? 0;
      if (held >= maxEventClientsPerAddress)
        throw new ServiceUnavailableError(
          `${held} event streams are open from ${address}, the most one client keeps`,
          {
            hint: "close other explorer tabs, or poll the JSON endpoints instead",
            retryAfterSeconds: 5,
          },
        );
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
      perAddress.set(address, held + 1);
      const forget = () => {
        if (!clients.delete(response)) return;
        const left = (perAddress.get(address) ?? 1) - 1;
        if (left > 0) perAddress.set(address, left);
        else perAddress.delete(address);
      };
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
      perAddress.clear();
    },
  };
}
