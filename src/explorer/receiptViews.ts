/**
 * The receipts views: search over the receipts this gateway stored (with their audit state), a request's receipts
 * with their signatures checked again and its cost, and its evidence fetched from the providers.
 */
import type { Hex } from "viem";
import { HttpError } from "../api/index.ts";
import { describeError, InvalidInputError, ServiceUnavailableError } from "../errors/index.ts";
import type { Gateway } from "../gateway/index.ts";
import type { MycelNode } from "../p2p/index.ts";
import { recoverReceiptSigner, type SignedReceipt } from "../protocol/index.ts";
import { fetchEvidence } from "../protocols/index.ts";
import type { SearchedReceipt, StoredAuditVerdict } from "../store/index.ts";
import type { AuditSummary, ReceiptDetail, ReceiptList, ReceiptSummary } from "./types.ts";

/** Largest page of receipts one request returns. */
export const maxReceiptsPage = 100;

type ReceiptMessage = { promptTokens?: number; completionTokens?: number; price?: string };

/** A verdict as the views show it. */
export function toAuditSummary(verdict: StoredAuditVerdict): AuditSummary {
  return {
    verdict: verdict.verdict,
    validator: verdict.validator,
    reasons: verdict.reasons,
    metrics: verdict.metrics,
    audited_at: verdict.auditedAt,
    signature: verdict.signature,
  };
}

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

/** The receipts views of a gateway. */
export function createReceiptViews(parameters: {
  gateway: Gateway;
  node: Pick<MycelNode, "openStream" | "handleProtocol">;
}) {
  const { gateway, node } = parameters;
  const { receipts } = gateway;

  function modelNames(): Map<string, string> {
    return new Map(gateway.catalog.models().map((model) => [`0x${model.hash}`, model.name]));
  }

  function summaryOf(stored: SearchedReceipt, names = modelNames()): ReceiptSummary {
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

  function search(query: URLSearchParams): ReceiptList {
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
      data: found.receipts.map((receipt) => summaryOf(receipt, names)),
    };
  }

  function stored(requestId: string) {
    const found = receipts.receiptsWithAudits(requestId as Hex);
    if (found.length === 0)
      throw new HttpError(404, `no receipts for request ${requestId}`, {
        code: "not_found",
        hint: "this gateway keeps the receipts of the requests it served; search them at GET /mycel/v1/receipts?q=",
      });
    return found;
  }

  async function detail(requestId: string): Promise<ReceiptDetail> {
    const found = stored(requestId);
    const names = modelNames();
    const verification = await Promise.all(
      found.map(async (entry) => {
        const signer = await recoverReceiptSigner(entry.receipt as SignedReceipt).catch(() => null);
        const named = (entry.receipt as { message?: { provider?: string } }).message?.provider ?? "";
        return {
          segment: entry.segment,
          signer,
          valid: signer !== null && signer.toLowerCase() === named.toLowerCase(),
        };
      }),
    );
    const summaries = found.map((entry) => summaryOf(entry, names));
    return {
      request_id: requestId.toLowerCase(),
      receipts: found.map((entry) => entry.receipt),
      summaries,
      verification,
      cost: summaries.reduce((sum, summary) => sum + BigInt(summary.price), 0n).toString(),
    };
  }

  async function evidence(requestId: string) {
    const collected = [];
    for (const entry of stored(requestId)) {
      const provider = gateway.providers
        .all()
        .find((known) => known.address.toLowerCase() === entry.provider.toLowerCase());
      if (!provider)
        throw new ServiceUnavailableError(`provider ${entry.provider} is not on the network now`, {
          hint: "the evidence stays with the provider (7 days unless it set --evidence-retention); try again when it is back",
        });
      try {
        const frame = await fetchEvidence(
          { node },
          { providerPeerId: provider.peerId, requestId: requestId as Hex },
        );
        collected.push({ segment: entry.segment, provider: entry.provider, ...frame.evidence });
      } catch (error) {
        throw new ServiceUnavailableError(`provider ${entry.provider} did not hand over the evidence`, {
          details: describeError(error),
          hint: "the provider may have restarted without its evidence store, or pruned it after its retention (7 days by default)",
        });
      }
    }
    return { request_id: requestId.toLowerCase(), evidence: collected };
  }

  /** The newest receipt of a segment as the live `receipt` event carries it. */
  function summaryOfSegment(requestId: Hex, segment: number): ReceiptSummary | undefined {
    const found = receipts.receiptsWithAudits(requestId).find((entry) => entry.segment === segment);
    return found && summaryOf(found);
  }

  return { search, detail, evidence, summaryOfSegment, modelNames };
}
