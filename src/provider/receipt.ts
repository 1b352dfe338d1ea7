/** What a provider signs for an answer: the receipt message, bound to the request, the tokens and the evidence. */
import type { Hex } from "viem";
import {
  buildFingerprints,
  type Evidence,
  evidenceCommitment,
  hashRequest,
  hashTokenIds,
  type PositionTopLogits,
  priceOfTokens,
  type ReceiptMessage,
  type RequestFrame,
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
  pricePerMillion: { input: bigint; output: bigint };
  now?: number;
};

/**
 * The receipt message of an answer and the evidence behind it: a fingerprint of the distributions each output
 * token was sampled from, bound with the finish reason into the receipt's commitment.
 */
export function describeAnswer(parameters: DescribeAnswerParameters): {
  message: ReceiptMessage;
  evidence: Evidence;
} {
  const { frame, evaluated, outputTokens, finishReason } = parameters;
  const fingerprints = buildFingerprints(parameters.topLogits);
  const message: ReceiptMessage = {
    requestId: frame.id as Hex,
    client: frame.client as Hex,
    provider: parameters.provider,
    modelHash: frame.request.model_hash as Hex,
    requestHash: hashRequest(frame.request),
    promptHash: hashTokenIds(evaluated),
    outputHash: hashTokenIds(outputTokens),
    commitment: evidenceCommitment({ fingerprints, finishReason }),
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
  };
  return { message, evidence };
}
