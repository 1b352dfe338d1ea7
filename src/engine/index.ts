/** The engine part: node-llama-cpp inference (generate, evaluate), chat templates and streaming text helpers. */
export { defaultEngineOptions, type EngineOptions } from "../config/index.ts";
export {
  type ChatMessage,
  type ChatToolCall,
  createSentinels,
  fallbackChatTemplate,
  type PromptSegment,
  type RenderChatPromptParameters,
  type RenderedChatPrompt,
  renderChatPrompt,
  renderLegacyChatPrompt,
  type SpecialToken,
  splitAtSpecialTokens,
} from "./chatPrompt.ts";
export {
  enforceableJsonSchema,
  enforceableTools,
  type OutputConstraint,
  type OutputFormat,
  outputConstraintOf,
  type RequestConstraintParameters,
  requestConstraintOf,
  toolsInPlay,
} from "./constraints.ts";
export {
  canEmbed,
  createEmbedder,
  type Embedder,
  type EmbedParameters,
  type EmbedReturnType,
  embeddingLimits,
  type ModelCapability,
  modelCapabilities,
  normalizeVector,
} from "./embeddings.ts";
export {
  createEngine,
  type Engine,
  type EvaluateParameters,
  type EvaluateReturnType,
  exactReplayMaxTokens,
  type FinishReason,
  type GenerateParameters,
  type GenerateReturnType,
  type GenerationDelta,
  getSharedLlama,
  type LoadedModelInfo,
  type PositionLogprobs,
  penaltiesApply,
  penaltyWindow,
  type RepetitionPenalties,
  type SamplingParameters,
  type TokenLogprob,
  type TopLogits,
  topLogitsCount,
} from "./engine.ts";
export { lowestLogprob, type OutputLogprob, outputLogprobsOf, type TokenLogprobEntry } from "./logprobs.ts";
export {
  createPieceTable,
  decodeByteLevelText,
  type PieceTable,
  type PieceTokenAttributes,
  type PieceVocabularyType,
} from "./pieces.ts";
export {
  allowedTokens,
  allowsMostTokens,
  type ConstrainedDrawWay,
  createTokenBuckets,
  type GrammarWalker,
  type LazySampleOutcome,
  type SamplerExtras,
  type TokenBuckets,
} from "./samplerHook.ts";
export { createSlotPool, type SlotLease, type SlotPool } from "./slots.ts";
export {
  createDeltaBatcher,
  createIncrementalDecoder,
  createStopMatcher,
  type DeltaBatcher,
  decodeTokens,
  type IncrementalDecoder,
  type StopMatcher,
  streamBatchIntervalMs,
} from "./textStream.ts";
export {
  type CreateToolCallParserParameters,
  collectToolCallEvents,
  createToolCallParser,
  hermesToolCallTags,
  newToolCallId,
  type ParseToolCallsReturnType,
  parseToolCalls,
  type ToolCall,
  type ToolCallEvent,
  type ToolCallFormat,
  type ToolCallParser,
  type ToolDefinition,
  toolCallFormatOf,
} from "./toolCalls.ts";
export {
  argumentsSchemaOf,
  type BuildToolGrammarParameters,
  boundJsonNumbers,
  buildToolGrammar,
  type CheckToolArgumentsReturnType,
  checkToolArguments,
  prefixGrammarRules,
  type ToolChoice,
  type ToolConstraint,
  toolConstraintOf,
  toolsOfChoice,
} from "./toolGrammar.ts";
