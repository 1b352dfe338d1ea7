/** What a provider signs for an answer: the receipt message, bound to the request, the tokens, the text and the evidence. */
import type { Hex } from "viem";
import {
  buildFingerprints,
  type DecodingSettings,
  type Evidence,
  hashFingerprints,
  hashRequest,
  hashStreamedText,
  hashTokenIds,
  type PositionTopLogits,
  priceOfTokens,
  type ReceiptMessage,
  type RequestFrame,
  textBoundCommitment,
} from "../protocol/index.ts";

/** Parameters of {@link describeAnswer}. */
export type DescribeAnswerParameters = {
  frame: RequestFrame;
  provider: Hex;
  /** Every token the provider evaluated before generating: the prompt and any continuation prefix. */
  evaluated: number[];
  outputTokens: number[];
  topLogits: readonly PositionTopLogits[];
  finishReason: Evidence["finishReason"];
  /** The text streamed for `outputTokens` (the chunks' `text` joined): the commitment binds it. */
  text: string;
  /** How the engine decoded (the generation's `decoding`): the evidence states it for validators. */
  decoding?: DecodingSettings;
  pricePerMillion: { input: bigint; output: bigint };
  now?: number;
};

/**
 * The receipt message of an answer and the evidence behind it: a fingerprint of the distributions each output
 * token was sampled from, bound with the finish reason and the hash of the streamed text into the receipt's
 * commitment; and the fingerprints' hash, which the `end` frame carries so that the gateway can check the text.
 */
export function describeAnswer(parameters: DescribeAnswerParameters): {
  message: ReceiptMessage;
  evidence: Evidence;
  fingerprintsHash: Hex;
} {
  const { frame, evaluated, outputTokens, finishReason } = parameters;
  const fingerprints = buildFingerprints(parameters.topLogits);
  const fingerprintsHash = hashFingerprints(fingerprints);
  const textHash = hashStreamedText(parameters.text);
  const message: ReceiptMessage = {
    requestId: frame.id as Hex,
    client: frame.client as Hex,
    provider: parameters.provider,
    modelHash: frame.request.model_hash as Hex,
    requestHash: hashRequest(frame.request),
    promptHash: hashTokenIds(evaluated),
    outputHash: hashTokenIds(outputTokens),
    commitment: textBoundCommitment({ finishReason, fingerprintsHash, textHash }),
    promptTokens: evaluated.length,
    completionTokens: outputTokens.length,
    price: priceOfTokens({
      promptTokens: evaluated.length,
      completionTokens: outputTokens.length,
      pricePerMillion: parameters.pricePerMillion,
    }),
    timestamp: BigInt(Math.floor((parameters.now ?? Date.now()) / 1000)),
  };
  const evidence: Evidence = {
    modelHash: frame.request.model_hash,
    promptTokens: evaluated,
    outputTokens,
    fingerprints,
    finishReason,
    textHash,
    ...(parameters.decoding ? { decoding: parameters.decoding } : {}),
  };
  return { message, evidence, fingerprintsHash };
}
