/**
 * `/mycel/infer/1.0.0`: a gateway sends a provider one request; the provider streams chunks and ends with a
 * signed receipt; vouchers, acknowledgements and a cancel may cross at any time (docs/PROTOCOL.md).
 *
 * @example
 * ```ts
 * await serveInference({ node }, { answer: async (exchange) => { exchange.send(chunk); exchange.send(end); } });
 * const call = await callInference({ node }, { providerPeerId, request, openTimeoutMs: 30_000 });
 * for (let frame = await call.next({ timeoutMs: 5_000 }); frame; frame = await call.next({ timeoutMs: 5_000 })) ...
 * ```
 */

export {
  createStreamAdmission,
  type PendingStream,
  type StreamAdmission,
  type StreamAdmissionCounts,
  type StreamAdmissionLimits,
  StreamLimitError,
} from "./admission.ts";
export {
  type CallInferenceParameters,
  callInference,
  type InferenceCall,
  type InferenceReply,
} from "./client.ts";
export {
  busyRetryAfterMs,
  defaultInferenceLimits,
  type InferenceLimits,
  inferenceProtocolId,
  maxTokensPerChunk,
} from "./constants.ts";
export {
  type InferenceExchange,
  type InferenceService,
  type ServeInferenceParameters,
  serveInference,
} from "./server.ts";
