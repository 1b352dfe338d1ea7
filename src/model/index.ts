/** The model part: GGUF writing, deterministic test models, downloads and the content-addressed store. */
export {
  huggingFaceEndpoint,
  type ModelSource,
  parseModelSource,
  type TransferProgress,
} from "./download.ts";
export { type EncodeGgufParameters, encodeGguf, type GgufMetadataEntry, type GgufTensor } from "./gguf.ts";
export {
  type ChatTemplateReport,
  guessTemplateFamily,
  type ModelReport,
  readModelReport,
  type SpecialToken,
  templateSupportsTools,
} from "./modelReport.ts";
export {
  type AddModelParameters,
  type AddModelReturnType,
  type ModelRecord,
  type ModelStore,
  openModelStore,
  readModelMetadata,
} from "./store.ts";
export {
  defaultTestModelQuant,
  defaultTestModelTokenizer,
  type GenerateTestModelParameters,
  type GenerateTestModelReturnType,
  generateTestModel,
  type TestModelQuant,
  type TestModelSize,
  testModelName,
  testModelParameterCount,
} from "./testModel.ts";
export {
  chatmlToolsChatTemplate,
  llama3ChatTemplate,
  type TestModelTokenizer,
  testModelChatTemplate,
  testModelTokenizers,
} from "./testTokenizers.ts";
