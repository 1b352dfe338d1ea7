/** The api part: the OpenAI-compatible HTTP server and its error mapping. */
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
  defaultMaxBodyBytes,
  type StartApiServerParameters,
  startApiServer,
} from "./server.ts";
