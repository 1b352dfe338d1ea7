/** The gateway as the API's backend: /v1/models from the catalog, completions answered over the network. */
import type { BackendEmbedResult, BackendGenerateResult, InferenceBackend } from "../api/index.ts";
import type { Catalog } from "./catalog.ts";
import type { GatewayEmbedAnswer } from "./embeddings.ts";
import type { GatewayAnswer } from "./failover.ts";

/** The `mycel` object of an API response: the answer's request id, seed, providers and receipts. */
export function mycelFieldsOf(answer: GatewayAnswer): Record<string, unknown> {
  const unreceipted = {
    ...(answer.unreceiptedCost === undefined ? {} : { unreceipted_cost: answer.unreceiptedCost.toString() }),
    ...(answer.unreceiptedProviders === undefined
      ? {}
      : { unreceipted_providers: answer.unreceiptedProviders }),
  };
  // Nobody reads a cancelled answer's fields but the API key's meter: what it cost so far.
  if (answer.finishReason === "cancelled")
    return { request_id: answer.requestId, receipts: answer.receipts, ...unreceipted };
  return {
    request_id: answer.requestId,
    model_hash: answer.modelHash,
    seed: answer.seed,
    providers: answer.providers,
    failovers: answer.failovers,
    receipts: answer.receipts,
    ...unreceipted,
    ...(answer.evidence === undefined ? {} : { evidence: answer.evidence }),
    ...(answer.audit === undefined ? {} : { audit: answer.audit }),
    ...(answer.warnings === undefined ? {} : { warnings: answer.warnings }),
  };
}

/** Parameters of {@link createGatewayBackend}. */
export type CreateGatewayBackendParameters = {
  catalog: Catalog;
  /** Finds a model (default: the catalog's find); may search the network before it gives up. */
  findModel?: InferenceBackend["findModel"];
  answer: (parameters: Parameters<InferenceBackend["generate"]>[0]) => Promise<GatewayAnswer>;
  /** Embeddings over the network (absent: the gateway serves none). */
  embed?: (parameters: Parameters<NonNullable<InferenceBackend["embed"]>>[0]) => Promise<GatewayEmbedAnswer>;
  health: () => Record<string, unknown>;
};

/** The InferenceBackend a gateway serves the OpenAI-compatible API from. */
export function createGatewayBackend(parameters: CreateGatewayBackendParameters): InferenceBackend {
  return {
    listModels: parameters.catalog.models,
    findModel: parameters.findModel ?? parameters.catalog.find,
    health: parameters.health,
    async generate(request): Promise<BackendGenerateResult> {
      const answer = await parameters.answer(request);
      return {
        text: answer.text,
        finishReason: answer.finishReason,
        usage: answer.usage,
        mycel: mycelFieldsOf(answer),
        ...(answer.logprobs === undefined ? {} : { logprobs: answer.logprobs }),
        timings: { queuedMs: 0, totalMs: answer.totalMs },
      };
    },
    ...(parameters.embed ? { embed: embedWith(parameters.embed) } : {}),
  };
}

/** The backend's embed over the gateway's: the `mycel` object names the request, provider and its receipt. */
function embedWith(
  embed: NonNullable<CreateGatewayBackendParameters["embed"]>,
): NonNullable<InferenceBackend["embed"]> {
  return async (request): Promise<BackendEmbedResult> => {
    const answer = await embed(request);
    return {
      vectors: answer.vectors,
      usage: answer.usage,
      mycel: {
        request_id: answer.requestId,
        model_hash: answer.modelHash,
        providers: [answer.provider],
        failovers: answer.failovers,
        receipts: [answer.receipt],
      },
      timings: { queuedMs: 0, totalMs: answer.totalMs },
    };
  };
}
