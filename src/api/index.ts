/** The api part: the OpenAI-compatible HTTP server, its backends and its error mapping. */
export {
  type ApiAccess,
  type ApiCaller,
  type ApiModelDetails,
  type ApiModelInfo,
  type ApiPrompt,
  type ApiSampling,
  type BackendEmbedParameters,
  type BackendEmbedResult,
  type BackendGenerateParameters,
  type BackendGenerateResult,
  createEngineBackend,
  type InferenceBackend,
  type RouteParameters,
} from "./backend.ts";
export { type CompletionContext, handleChatCompletion, handleCompletion } from "./completions.ts";
export {
  type EmbeddingRequest,
  embeddingInputsOf,
  embeddingRequestSchema,
  encodeVectorBase64,
  handleEmbeddings,
} from "./embeddings.ts";
export {
  guardRequest,
  isLoopbackHost,
  isLoopbackHostHeader,
  isSameOrigin,
  readJsonBody,
  refuseForeignPages,
  requestPath,
  sendJson,
} from "./http.ts";
export { HttpError, type OpenAiErrorBody, type OpenAiErrorResponse, toOpenAiError } from "./openaiErrors.ts";
export {
  type ChatCompletionRequest,
  type CompletionRequest,
  chatCompletionRequestSchema,
  completionRequestSchema,
  parseRequest,
} from "./schemas.ts";
export {
  type ApiServer,
  defaultHttpLimits,
  defaultMaxBodyBytes,
  type HttpLimits,
  type StartApiServerParameters,
  startApiServer,
} from "./server.ts";
