/** What the HTTP API serves from: a local engine, or (in a gateway) the network. */
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  type ChatMessage,
  type Engine,
  type OutputLogprob,
  outputLogprobsOf,
  requestConstraintOf,
  type ToolCallFormat,
  toolCallFormatOf,
} from "../engine/index.ts";
import { InvalidInputError } from "../errors/index.ts";
import {
  buildFingerprints,
  buildInferenceRequest,
  type Evidence,
  hashStreamedText,
  type InferenceRequest,
  type ModelCapability,
  modelHashToBytes32,
  type RequestConstraints,
} from "../protocol/index.ts";

/** A model as the API lists it. */
export type ApiModelInfo = {
  name: string;
  hash: string;
  contextLength?: number;
  /**
   * The tool-call format of the model's chat template, which answers' tool calls are parsed from; absent: the
   * model cannot call tools (requests with tools are refused).
   */
  toolCallFormat?: ToolCallFormat;
  /** Backend-specific fields, listed under `mycel` in /v1/models. */
  extra?: Record<string, unknown>;
  /** What is known of the model file (Ollama's /api/tags and /api/show); absent fields are unknown. */
  details?: ApiModelDetails;
};

/** What is known of a model file: a gateway knows little, `mycel serve` its store's record and the loaded GGUF. */
export type ApiModelDetails = {
  /** The architecture (GGUF `general.architecture`, e.g. "llama", "qwen2"). */
  family?: string;
  parameterCount?: number;
  /** The weights' type, e.g. "F32", "Q4_K_M". */
  quantization?: string;
  sizeBytes?: number;
  /** When the model was added to this machine's store (ISO 8601). */
  addedAt?: string;
  /** The GGUF's chat template (Jinja). */
  chatTemplate?: string;
  trainContextLength?: number;
};

/** The prompt of a request: chat messages, or text (or token ids) for /v1/completions. */
export type ApiPrompt =
  | { kind: "chat"; messages: ChatMessage[] }
  | { kind: "text"; prompt: string | number[] };

/** Sampling settings as the API received them (defaults applied), with the request's constraints. */
export type ApiSampling = RequestConstraints & {
  /** Absent: until the context window is full. */
  maxTokens?: number;
  temperature: number;
  topP: number;
  topK: number;
  seed?: number;
  stop: string[];
};

/** Parameters of {@link InferenceBackend.generate}. */
export type BackendGenerateParameters = {
  model: ApiModelInfo;
  prompt: ApiPrompt;
  sampling: ApiSampling;
  /** Return the answer's evidence under `mycel.evidence` (request option `mycel.include_evidence`). */
  includeEvidence?: boolean;
  /** Gateways: send the answer to a validator for audit (request option `mycel.audit`). */
  requestAudit?: boolean;
  /** Gateways: pay at most this per 1M tokens, input or output (request option `mycel.max_price`; only lowers the gateway's). */
  maxPricePerMillion?: bigint;
  /** Gateways: route only to this provider (a peer id); validators' challenges use it. */
  onlyProvider?: string;
  /** Gateways: route only to providers whose model entry announces these (e.g. tools, grammar). */
  requiredCapabilities?: readonly ModelCapability[];
  signal: AbortSignal;
  /** Called once generation is about to start (after any queueing), so headers can go out. */
  onStart?: () => void;
  /** Text that became safe to show, in order. */
  onText?: (text: string) => void;
};

/** Return type of {@link InferenceBackend.generate}. */
export type BackendGenerateResult = {
  text: string;
  finishReason: "stop" | "length" | "cancelled";
  usage: { promptTokens: number; completionTokens: number; totalTokens: number };
  /** Extra fields returned under `mycel` (model hash, seed, receipts...). */
  mycel: Record<string, unknown>;
  /** The output tokens' log-probabilities, when the request asked for them (`logprobs`). */
  logprobs?: OutputLogprob[];
  /** Milliseconds from the call: waiting for a sequence, to the first token (when known), to the end. */
  timings?: { queuedMs: number; totalMs: number; firstTokenMs?: number };
};

/** What an extra route gets: the request, its path (no trailing slash) and query, and the response to write. */
export type RouteParameters = {
  method: string;
  path: string;
  query: URLSearchParams;
  request: IncomingMessage;
  response: ServerResponse;
  /** The API key the request came with, when the server checks keys and the path needs one. */
  caller?: ApiCaller;
};

/** The API key a request was admitted with: its public id and name (never the key). */
export type ApiCaller = { keyId: string; name: string };

/** Who may use the API: checks each request's key before it is routed, and counts what each key used. */
export type ApiAccess = {
  /**
   * Admits a request to a path under /v1/ or /mycel/ (throws an HttpError: 401, or for a request that spends, 429
   * past the key's rate and 402 past its budget). Returns the caller, or undefined when no key is needed now.
   */
  admit(parameters: { request: IncomingMessage; spends: boolean }): ApiCaller | undefined;
  /** Counts a finished completion against its caller: tokens, and what the answer cost (its `mycel` fields). */
  recordAnswer(parameters: {
    caller: ApiCaller;
    result: Pick<BackendGenerateResult, "usage" | "mycel">;
  }): void;
};

/** Parameters of {@link InferenceBackend.embed}. */
export type BackendEmbedParameters = {
  model: ApiModelInfo;
  /** Each input as text or token ids. */
  inputs: (string | number[])[];
  /** The vector length asked for (`dimensions`); only the model's own is served. */
  dimensions?: number;
  /** Gateways: pay at most this per 1M input tokens (request option `mycel.max_price`). */
  maxPricePerMillion?: bigint;
  /** Gateways: route only to this provider (a peer id). */
  onlyProvider?: string;
  signal: AbortSignal;
};

/** Return type of {@link InferenceBackend.embed}: one unit-length vector per input, in order. */
export type BackendEmbedResult = {
  vectors: number[][];
  usage: { promptTokens: number; completionTokens: 0; totalTokens: number };
  /** Extra fields returned under `mycel` (model hash, receipts...). */
  mycel: Record<string, unknown>;
  timings?: { queuedMs: number; totalMs: number };
};

/** Where the OpenAI-compatible API gets its models and answers. */
export type InferenceBackend = {
  listModels(): ApiModelInfo[];
  /** Finds a model by name or hash (a backend may search before it answers); throws ModelNotFoundError naming the fix. */
  findModel(nameOrHash: string): ApiModelInfo | Promise<ApiModelInfo>;
  generate(parameters: BackendGenerateParameters): Promise<BackendGenerateResult>;
  /** Embeddings (`/v1/embeddings`); absent: this backend serves none. */
  embed?(parameters: BackendEmbedParameters): Promise<BackendEmbedResult>;
  /** The body of GET /health. */
  health(): Record<string, unknown>;
  /** Extra routes (e.g. /mycel/v1/...); returns false when it does not serve the path. */
  route?(parameters: RouteParameters): Promise<boolean>;
};

/** The API served from this process's engine (`mycel serve`); `details` adds what the model store knows. */
export function createEngineBackend(
  engine: Engine,
  options: { details?: (hash: string) => ApiModelDetails | undefined } = {},
): InferenceBackend {
  const describe = (info: ReturnType<Engine["findModel"]>): ApiModelInfo => ({
    name: info.name,
    hash: info.hash,
    contextLength: info.contextSize,
    ...(toolCallFormatOf(info.chatTemplate) ? { toolCallFormat: toolCallFormatOf(info.chatTemplate) } : {}),
    details: {
      chatTemplate: info.chatTemplate,
      trainContextLength: info.trainContextSize,
      quantization: info.weightType === "quantized" ? undefined : info.weightType.toUpperCase(),
      ...options.details?.(info.hash),
    },
    extra: { capabilities: info.capabilities },
  });

  function tokenize(model: ApiModelInfo, prompt: ApiPrompt, sampling: ApiSampling): number[] {
    if (prompt.kind === "chat")
      return engine.tokenizeChat({
        modelHash: model.hash,
        messages: prompt.messages,
        ...(sampling.tools && sampling.tools.length > 0 ? { tools: sampling.tools } : {}),
      });
    if (typeof prompt.prompt === "string")
      return engine.tokenizeCompletion({ modelHash: model.hash, text: prompt.prompt });
    const vocabularySize = engine.findModel(model.hash).vocabularySize;
    const outOfVocabulary = prompt.prompt.find((token) => token >= vocabularySize);
    if (outOfVocabulary !== undefined) {
      throw new InvalidInputError(
        `token ${outOfVocabulary} is outside the vocabulary (size ${vocabularySize})`,
        {
          param: "prompt",
          code: "invalid_value",
        },
      );
    }
    return prompt.prompt;
  }

  return {
    listModels: () => engine.models().map(describe),
    findModel: (nameOrHash) => describe(engine.findModel(nameOrHash)),
    health: () => ({
      status: "ok",
      models: engine
        .models()
        .map((info) => ({ name: info.name, hash: info.hash, slots: engine.stats(info.hash) })),
    }),
    async embed(parameters) {
      const modelHash = parameters.model.hash;
      const inputs = parameters.inputs.map((input) => engine.embeddingTokens({ modelHash, input }));
      const result = await engine.embed({
        modelHash,
        inputs,
        dimensions: parameters.dimensions,
        signal: parameters.signal,
      });
      return {
        vectors: result.vectors,
        usage: {
          promptTokens: result.usage.promptTokens,
          completionTokens: 0,
          totalTokens: result.usage.totalTokens,
        },
        mycel: { model_hash: modelHash },
        timings: result.timings,
      };
    },
    async generate(parameters) {
      const promptTokens = tokenize(parameters.model, parameters.prompt, parameters.sampling);
      if (promptTokens.length === 0) {
        throw new InvalidInputError("the prompt is empty", {
          param: parameters.prompt.kind === "chat" ? "messages" : "prompt",
          code: "invalid_value",
        });
      }
      const onText = parameters.onText;
      const { sampling } = parameters;
      const constraint = await requestConstraintOf({
        responseFormat: sampling.responseFormat,
        tools: sampling.tools,
        toolChoice: sampling.toolChoice,
        parallelToolCalls: sampling.parallelToolCalls,
        chatTemplate: engine.findModel(parameters.model.hash).chatTemplate,
      });
      const result = await engine.generate({
        modelHash: parameters.model.hash,
        promptTokens,
        maxTokens: sampling.maxTokens,
        temperature: sampling.temperature,
        topP: sampling.topP,
        topK: sampling.topK,
        seed: sampling.seed,
        stop: sampling.stop,
        minP: sampling.minP,
        penalties: {
          repeat: sampling.repeatPenalty,
          presence: sampling.presencePenalty,
          frequency: sampling.frequencyPenalty,
        },
        logitBias: sampling.logitBias,
        grammar: constraint?.gbnf,
        signal: parameters.signal,
        onStart: parameters.onStart,
        onDelta: onText
          ? (delta) => {
              if (delta.text) onText(delta.text);
            }
          : undefined,
      });
      const modelHash = modelHashToBytes32(parameters.model.hash);
      const evidence: (Evidence & { request: InferenceRequest }) | undefined =
        parameters.includeEvidence && result.finishReason !== "cancelled"
          ? {
              modelHash,
              promptTokens,
              outputTokens: result.tokens,
              fingerprints: buildFingerprints(result.topLogits),
              finishReason: result.finishReason,
              textHash: hashStreamedText(result.text),
              decoding: result.decoding,
              // The request in wire form (as a gateway would send it), so that evidence + receipt audit as is.
              request: buildInferenceRequest({
                modelHash,
                prompt: parameters.prompt,
                maxTokens: parameters.sampling.maxTokens,
                temperature: parameters.sampling.temperature,
                topP: parameters.sampling.topP,
                topK: parameters.sampling.topK,
                seed: result.seed,
                stop: parameters.sampling.stop,
                constraints: parameters.sampling,
              }),
            }
          : undefined;
      const logprobs =
        sampling.logprobs !== undefined && result.finishReason !== "cancelled"
          ? await outputLogprobsOf({
              engine,
              modelHash: parameters.model.hash,
              promptTokens,
              outputTokens: result.tokens,
              top: sampling.logprobs,
              signal: parameters.signal,
            })
          : undefined;
      return {
        text: result.text,
        finishReason: result.finishReason,
        usage: result.usage,
        mycel: { model_hash: parameters.model.hash, seed: result.seed, ...(evidence ? { evidence } : {}) },
        ...(logprobs ? { logprobs } : {}),
        timings: {
          queuedMs: result.timings.queuedMs,
          totalMs: result.timings.totalMs,
          firstTokenMs: result.timings.firstTokenMs,
        },
      };
    },
  };
}
