/**
 * The explorer's server side: JSON views of the network, the registry, receipts and audits, payments and validators
 * under /mycel/v1/, live updates as server-sent events, and the built web app at "/". This file wires the views
 * (networkViews.ts, receiptViews.ts, gatewayViews.ts) to their routes and keeps the live feed going.
 */
import { type RouteParameters, sendJson } from "../api/index.ts";
import { describeError, InvalidInputError } from "../errors/index.ts";
import type { Gateway } from "../gateway/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import type { MycelNode } from "../p2p/index.ts";
import { createEventStream } from "./eventStream.ts";
import { describeProviders, describeUsage } from "./gatewayViews.ts";
import { createNetworkHistory } from "./history.ts";
import { createNetworkViews, type ExplorerChain } from "./networkViews.ts";
import { createReceiptViews, toAuditSummary } from "./receiptViews.ts";
import { defaultExplorerDirectory, serveExplorerFile } from "./staticFiles.ts";

/** Parameters of {@link createExplorer}. */
export type CreateExplorerParameters = {
  gateway: Gateway;
  /** The gateway's node: evidence is fetched from providers through it. */
  node: Pick<MycelNode, "openStream" | "handleProtocol"> & Partial<Pick<MycelNode, "connectionKind">>;
  /** The chain the gateway pays on: stake, registry, channels and validators come from it. */
  chain?: ExplorerChain;
  /** The built web app (default web/dist of this checkout). */
  directory?: string;
  history?: { intervalMs?: number; capacity?: number };
  /** How often open pages get the provider table (default 2 s). */
  providersEveryMs?: number;
  logger?: Logger;
};

/** A running explorer: give its `route` to the API server. */
export type Explorer = {
  route(parameters: RouteParameters): Promise<boolean>;
  stop(): void;
};

/** JSON views change with every request: never cached, never sniffed. */
const viewHeaders = { "cache-control": "no-store", "x-content-type-options": "nosniff" };

/** Starts the explorer's sampling and event stream. */
export function createExplorer(parameters: CreateExplorerParameters): Explorer {
  const { gateway } = parameters;
  const logger = parameters.logger ?? silentLogger;
  const directory = parameters.directory ?? defaultExplorerDirectory;
  const history = createNetworkHistory({
    source: { describeProviders: () => describeProviders(gateway), subscribe: gateway.subscribe },
    ...parameters.history,
  });
  const { connectionKind } = parameters.node;
  const network = createNetworkViews({
    gateway,
    chain: parameters.chain,
    history,
    connectionOf: connectionKind
      ? (peerId) => {
          try {
            return connectionKind(peerId);
          } catch {
            return null;
          }
        }
      : undefined,
    logger,
  });
  const receipts = createReceiptViews({ gateway, node: parameters.node });
  const events = createEventStream();

  // ---- live updates ----
  const stopHistory = history.onPoint((point) => events.publish({ type: "history", data: point }));
  const providersTimer = setInterval(() => {
    if (events.clients() === 0) return;
    network
      .providers()
      .then((data) => events.publish({ type: "providers", data }))
      .catch((error) => logger.debug("providers not published", { error: describeError(error) }));
  }, parameters.providersEveryMs ?? 2_000);
  providersTimer.unref();
  const stopActivity = gateway.subscribe((activity) => {
    if (activity.type === "receipt") {
      const summary = receipts.summaryOfSegment(activity.requestId, activity.segment);
      if (summary) events.publish({ type: "receipt", data: summary });
    }
    if (activity.type === "audit")
      events.publish({
        type: "audit",
        data: {
          request_id: activity.requestId,
          segment: activity.segment,
          audit: toAuditSummary(activity.verdict),
        },
      });
  });

  const jsonRoutes: Record<string, () => unknown> = {
    "/mycel/v1/explorer": network.info,
    "/mycel/v1/providers": async () => ({ object: "list", data: await network.providers() }),
    "/mycel/v1/network/history": () => ({
      interval_ms: history.intervalMs,
      capacity: history.capacity,
      points: history.points(),
    }),
    "/mycel/v1/registry": network.registry,
    "/mycel/v1/payments": network.payments,
    "/mycel/v1/validators": network.validators,
    "/mycel/v1/usage": () => describeUsage(gateway),
  };

  return {
    async route(input) {
      const { method, path, query, response } = input;
      const acceptEncoding = input.request.headers["accept-encoding"];
      if (serveExplorerFile({ directory, method, path, acceptEncoding, response })) return true;
      if (method !== "GET") return false;
      const json = jsonRoutes[path];
      if (json) {
        sendJson(response, 200, await json(), viewHeaders);
        return true;
      }
      if (path === "/mycel/v1/events") {
        events.attach(input.request, response);
        // The newest state at once, so a page need not wait for the next tick.
        network
          .providers()
          .then((data) => response.write(`event: providers\ndata: ${JSON.stringify(data)}\n\n`))
          .catch(() => undefined);
        return true;
      }
      if (path === "/mycel/v1/receipts") {
        sendJson(response, 200, receipts.search(query), viewHeaders);
        return true;
      }
      const match = /^\/mycel\/v1\/receipts\/([^/]+)(\/evidence)?$/.exec(path);
      if (!match?.[1]) return false;
      const requestId = match[1];
      if (!/^0x[0-9a-fA-F]{64}$/.test(requestId))
        throw new InvalidInputError("a request id is 0x and 64 hex digits", {
          param: "requestId",
          code: "invalid_value",
        });
      const view = match[2] ? await receipts.evidence(requestId) : await receipts.detail(requestId);
      sendJson(response, 200, view, viewHeaders);
      return true;
    },
    stop() {
      clearInterval(providersTimer);
      stopHistory();
      stopActivity();
      history.stop();
      events.close();
    },
  };
}
