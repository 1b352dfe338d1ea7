/** The provider role: inference over libp2p with signed receipts, announced on gossipsub and the DHT. */

export {
  type Announcer,
  reachableAddresses,
  type StartAnnouncerParameters,
  startAnnouncer,
} from "./announcer.ts";
export { type AnswerContext, answerRequest, type ProviderComponents } from "./answer.ts";
export { describeEmbeddings, type EmbedContext, embedAndSign, embeddingCommitment } from "./embed.ts";
export {
  defaultEvidenceRetentionMs,
  type Provider,
  type ProviderPrice,
  type StartProviderParameters,
  startProvider,
} from "./provider.ts";
export { type DescribeAnswerParameters, describeAnswer } from "./receipt.ts";
