/** The model part: GGUF writing, deterministic test models, downloads and the content-addressed store. */
export {
  huggingFaceEndpoint,
  type ModelSource,
  parseModelSource,
  type TransferProgress,
} from "./download.ts";
export { type EncodeGgufParameters, encodeGguf, type GgufMetadataEntry, type GgufTensor } from "./gguf.ts";
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
  type GenerateTestModelParameters,
  type GenerateTestModelReturnType,
  generateTestModel,
  type TestModelQuant,
  type TestModelSize,
  testModelName,
} from "./testModel.ts";
export {
  chatmlToolsChatTemplate,
  llama3ChatTemplate,
  type TestModelTokenizer,
  testModelChatTemplate,
  testModelTokenizers,
} from "./testTokenizers.ts";
