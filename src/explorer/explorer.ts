/**
 * The explorer's server side: JSON views of the network, the registry, receipts and audits, payments and
 * validators under /mycel/v1/, live updates as server-sent events, and the built web app at "/".
 */
import type { Hex } from "viem";
import { HttpError, type RouteParameters, sendJson } from "../api/index.ts";
import { type ChainConnection, type Deployments, getTokenInfo, type TokenInfo } from "../chain/index.ts";
import { describeError, InvalidInputError, ServiceUnavailableError } from "../errors/index.ts";
import type { Gateway } from "../gateway/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import type { MycelNode } from "../p2p/index.ts";
import { recoverReceiptSigner, type SignedReceipt } from "../protocol/index.ts";
import { fetchEvidence } from "../protocols/index.ts";
import type { SearchedReceipt, StoredAuditVerdict } from "../store/index.ts";
import { cachedRead, readPayments, readProviderStakes, readRegistry, readValidators } from "./chainView.ts";
import { createEventStream } from "./eventStream.ts";
import { describeProviders, describeUsage, summarizeGatewayPayments } from "./gatewayViews.ts";
import { createNetworkHistory } from "./history.ts";
import { defaultExplorerDirectory, serveExplorerFile } from "./staticFiles.ts";
import type {
  AuditSummary,
  ExplorerInfo,
  ExplorerProvider,
  PaymentsView,
  ReceiptDetail,
  ReceiptList,
  ReceiptSummary,
  RegistryList,
  RegistryModel,
  ValidatorsView,
} from "./types.ts";

/** Parameters of {@link createExplorer}. */
export type CreateExplorerParameters = {
  gateway: Gateway;
  /** The gateway's node: evidence is fetched from providers through it. */
  node: MycelNode;
  /** The chain the gateway pays on: stake, registry, channels and validators come from it. */
  chain?: { connection: ChainConnection; deployments: Deployments };
  /** The built web app (default web/dist of this checkout). */
  directory?: string;
  history?: { intervalMs?: number; capacity?: number };
  /** How often open pages get the provider table (default 2 s). */
  providersEveryMs?: number;
  logger?: Logger;
};

/** A running explorer: give its `route` to the API server (after the gateway's own routes). */
export type Explorer = {
  route(parameters: RouteParameters): Promise<boolean>;
  stop(): void;
};

/** Largest page of receipts one request returns. */
export const maxReceiptsPage = 100;

/** JSON views change with every request: never cached, never sniffed. */
const viewHeaders = { "cache-control": "no-store", "x-content-type-options": "nosniff" };

function toAuditSummary(verdict: StoredAuditVerdict): AuditSummary {
  return {
    verdict: verdict.verdict,
    validator: verdict.validator,
    reasons: verdict.reasons,
    metrics: verdict.metrics,
    audited_at: verdict.auditedAt,
    signature: verdict.signature,
  };
}

type ReceiptMessage = { promptTokens?: number; completionTokens?: number; price?: string };

/** Parses a whole number query parameter within [minimum, maximum]. */
function integerParameter(
  query: URLSearchParams,
  name: string,
  fallback: number,
  minimum: number,
  maximum: number,
) {
  const text = query.get(name);
  if (text === null || text === "") return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < minimum || value > maximum)
    throw new InvalidInputError(
      `${name} must be a whole number from ${minimum} to ${maximum}, not ${JSON.stringify(text)}`,
      {
        param: name,
        code: "invalid_value",
      },
    );
  return value;
}

/** Starts the explorer's sampling and event stream. */
export function createExplorer(parameters: CreateExplorerParameters): Explorer {
  const { gateway, chain, node } = parameters;
  const { receipts } = gateway;
  const logger = parameters.logger ?? silentLogger;
  const directory = parameters.directory ?? defaultExplorerDirectory;
  const history = createNetworkHistory({
    source: { describeProviders: () => describeProviders(gateway), subscribe: gateway.subscribe },
    ...parameters.history,
  });
  const events = createEventStream();

  /** A cached chain read whose failure says which chain did not answer (503, retried after the cache time). */
  const fromChain = <T>(
    what: string,
    ttlMs: number,
    read: (context: NonNullable<typeof chain>) => Promise<T>,
  ) =>
    chain
      ? cachedRead(async () => {
          try {
            return await read(chain);
          } catch (error) {
            throw new ServiceUnavailableError(
              `cannot read ${what} from the chain at ${chain.connection.rpcUrl}`,
              {
                details: describeError(error),
                hint: "check that the chain's RPC (--rpc-url) answers; the other views work meanwhile",
                retryAfterSeconds: 5,
              },
            );
          }
        }, ttlMs)
      : undefined;
  const token = fromChain("the payment token", 3_600_000, (context) =>
    getTokenInfo(context.connection, context.deployments.contracts.token),
  );
  const stakes = fromChain("provider stakes", 5_000, readProviderStakes);
  const registry = fromChain("the model registry", 5_000, readRegistry);
  const payments = fromChain("payment channels", 2_000, (context) =>
    readPayments({ ...context, gateway: gateway.address }),
  );
  const validators = fromChain("validators and epochs", 2_000, readValidators);

  async function providers(): Promise<ExplorerProvider[]> {
    let stakeOf: Map<string, bigint> | undefined;
    try {
      stakeOf = await stakes?.();
    } catch (error) {
      logger.debug("stakes not read", { error: describeError(error) });
    }
    return describeProviders(gateway).map((provider) => ({
      ...provider,
      stake: stakeOf?.get(provider.address.toLowerCase())?.toString() ?? null,
    }));
  }

  function modelNames(): Map<string, string> {
    return new Map(gateway.catalog.models().map((model) => [`0x${model.hash}`, model.name]));
  }

  function toReceiptSummary(stored: SearchedReceipt, names: Map<string, string>): ReceiptSummary {
    const message = ((stored.receipt as { message?: ReceiptMessage }).message ?? {}) as ReceiptMessage;
    return {
      request_id: stored.requestId,
      segment: stored.segment,
      provider: stored.provider,
      model_hash: stored.modelHash,
      model_name: names.get(stored.modelHash.toLowerCase()) ?? null,
      created_at: stored.createdAt,
      prompt_tokens: Number(message.promptTokens ?? 0),
      completion_tokens: Number(message.completionTokens ?? 0),
      price: String(message.price ?? "0"),
      sampled_to: stored.sampledTo,
      audit: stored.audit ? toAuditSummary(stored.audit) : null,
    };
  }

  function searchReceipts(query: URLSearchParams): ReceiptList {
    const limit = integerParameter(query, "limit", 25, 1, maxReceiptsPage);
    const offset = integerParameter(query, "offset", 0, 0, Number.MAX_SAFE_INTEGER);
    const text = (query.get("q") ?? "").trim();
    if (text.length > 200)
      throw new InvalidInputError("q is longer than 200 characters", { param: "q", code: "invalid_value" });
    const auditedText = query.get("audited");
    if (auditedText !== null && auditedText !== "" && auditedText !== "true" && auditedText !== "false")
      throw new InvalidInputError(`audited must be true or false, not ${JSON.stringify(auditedText)}`, {
        param: "audited",
        code: "invalid_value",
      });
    const names = modelNames();
    const lowered = text.toLowerCase();
    const modelHashes = lowered
      ? [...names.entries()].filter(([, name]) => name.toLowerCase().includes(lowered)).map(([hash]) => hash)
      : [];
    const found = receipts.searchReceipts({
      query: text,
      modelHashes,
      audited: auditedText === "true" ? true : auditedText === "false" ? false : undefined,
      limit,
      offset,
    });
    return {
      object: "list",
      total: found.total,
      limit,
      offset,
      data: found.receipts.map((receipt) => toReceiptSummary(receipt, names)),
    };
  }

  function storedReceipts(requestId: string) {
    const stored = receipts.receiptsWithAudits(requestId as Hex);
    if (stored.length === 0)
      throw new HttpError(404, `no receipts for request ${requestId}`, {
        code: "not_found",
        hint: "this gateway keeps the receipts of the requests it served; search them at GET /mycel/v1/receipts?q=",
      });
    return stored;
  }

  async function receiptDetail(requestId: string): Promise<ReceiptDetail> {
    const stored = storedReceipts(requestId);
    const names = modelNames();
    const verification = await Promise.all(
      stored.map(async (entry) => {
        const signer = await recoverReceiptSigner(entry.receipt as SignedReceipt).catch(() => null);
        const named = (entry.receipt as { message?: { provider?: string } }).message?.provider ?? "";
        return {
          segment: entry.segment,
          signer,
          valid: signer !== null && signer.toLowerCase() === named.toLowerCase(),
        };
      }),
    );
    const summaries = stored.map((entry) => toReceiptSummary(entry, names));
    return {
      request_id: requestId.toLowerCase(),
      receipts: stored.map((entry) => entry.receipt),
      summaries,
      verification,
      cost: summaries.reduce((sum, summary) => sum + BigInt(summary.price), 0n).toString(),
    };
  }

  async function receiptEvidence(requestId: string) {
    const stored = storedReceipts(requestId);
    const evidence = [];
    for (const entry of stored) {
      const provider = gateway.providers
        .all()
        .find((known) => known.address.toLowerCase() === entry.provider.toLowerCase());
      if (!provider)
        throw new ServiceUnavailableError(`provider ${entry.provider} is not on the network now`, {
          hint: "the evidence stays with the provider (for 7 days); try again when it is back",
        });
      try {
        const frame = await fetchEvidence(
          { node },
          { providerPeerId: provider.peerId, requestId: requestId as Hex },
        );
        evidence.push({ segment: entry.segment, provider: entry.provider, ...frame.evidence });
      } catch (error) {
        throw new ServiceUnavailableError(`provider ${entry.provider} did not hand over the evidence`, {
          details: describeError(error),
          hint: "the provider may have restarted without its evidence store, or pruned it after 7 days",
        });
      }
    }
    return { request_id: requestId.toLowerCase(), evidence };
  }

  async function registryView(): Promise<RegistryList> {
    const entries = registry ? await registry() : [];
    const served = new Map<string, RegistryModel["served_by"]>();
    const servedNames = new Map<string, string>();
    for (const provider of describeProviders(gateway)) {
      if (provider.status === "expired") continue;
      for (const model of provider.models) {
        const list = served.get(model.hash) ?? [];
        list.push({
          address: provider.address,
          peer_id: provider.peer_id,
          price_per_million: provider.price_per_million,
        });
        served.set(model.hash, list);
        servedNames.set(model.hash, model.name);
      }
    }
    const data: RegistryModel[] = entries.map((entry) => ({
      ...entry,
      registered: true,
      served_by: served.get(entry.model_hash.toLowerCase()) ?? [],
    }));
    const registeredHashes = new Set(entries.map((entry) => entry.model_hash.toLowerCase()));
    for (const [hash, servedBy] of served) {
      if (registeredHashes.has(hash)) continue;
      data.push({
        model_hash: hash,
        name: servedNames.get(hash) ?? hash,
        registered: false,
        license: null,
        publisher: null,
        registered_at: null,
        deprecated: false,
        metadata_uri: null,
        parents: [],
        children: [],
        served_by: servedBy,
      });
    }
    return { object: "list", chain: chain !== undefined, data };
  }

  async function paymentsView(): Promise<PaymentsView> {
    const onChain = payments ? await payments() : { channels: [], providers: [], settlements: [] };
    return {
      object: "mycel.payments",
      chain: chain !== undefined,
      token: token ? await token() : null,
      gateway: summarizeGatewayPayments(gateway.payments),
      ...onChain,
    };
  }

  async function validatorsView(): Promise<ValidatorsView> {
    if (!validators)
      return {
        object: "mycel.validators",
        chain: false,
        current_epoch: null,
        max_score: 10_000,
        validators: [],
        epochs: [],
        standings: [],
        slashes: [],
      };
    return { object: "mycel.validators", chain: true, ...(await validators()) };
  }

  async function info(): Promise<ExplorerInfo> {
    let tokenInfo: TokenInfo | undefined;
    if (token) tokenInfo = await token();
    return {
      object: "mycel.explorer",
      gateway: { address: gateway.address, peer_id: gateway.peerId },
      chain:
        chain && tokenInfo
          ? {
              chain_id: chain.deployments.chainId,
              token: { address: tokenInfo.address, symbol: tokenInfo.symbol, decimals: tokenInfo.decimals },
              contracts: { ...chain.deployments.contracts },
            }
          : null,
      audit: gateway.audit,
      history: { interval_ms: history.intervalMs, capacity: history.capacity },
    };
  }

  // ---- live updates ----
  const stopHistory = history.onPoint((point) => events.publish({ type: "history", data: point }));
  const providersTimer = setInterval(() => {
    if (events.clients() === 0) return;
    providers()
      .then((data) => events.publish({ type: "providers", data }))
      .catch((error) => logger.debug("providers not published", { error: describeError(error) }));
  }, parameters.providersEveryMs ?? 2_000);
  providersTimer.unref();
  const stopActivity = gateway.subscribe((activity) => {
    if (activity.type === "receipt") {
      const stored = receipts
        .receiptsWithAudits(activity.requestId)
        .find((entry) => entry.segment === activity.segment);
      if (stored) events.publish({ type: "receipt", data: toReceiptSummary(stored, modelNames()) });
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
    "/mycel/v1/explorer": info,
    "/mycel/v1/providers": async () => ({ object: "list", data: await providers() }),
    "/mycel/v1/network/history": () => ({
      interval_ms: history.intervalMs,
      capacity: history.capacity,
      points: history.points(),
    }),
    "/mycel/v1/registry": registryView,
    "/mycel/v1/payments": paymentsView,
    "/mycel/v1/validators": validatorsView,
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
        providers()
          .then((data) => response.write(`event: providers\ndata: ${JSON.stringify(data)}\n\n`))
          .catch(() => undefined);
        return true;
      }
      if (path === "/mycel/v1/receipts") {
        sendJson(response, 200, searchReceipts(query), viewHeaders);
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
      sendJson(
        response,
        200,
        match[2] ? await receiptEvidence(requestId) : await receiptDetail(requestId),
        viewHeaders,
      );
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
