/** Checks a provider's receipt against what the gateway sent and received; any mismatch rejects it. */
import { getAddress } from "viem";
import { MycelError } from "../errors/index.ts";
import {
  announcementTiming,
  type EndFrame,
  hashRequest,
  hashStreamedText,
  hashTokenIds,
  type InferenceRequest,
  priceOfTokens,
  type ReceiptDomain,
  receiptTypes,
  recoverReceiptSigner,
  type SignedReceipt,
  textBoundCommitment,
} from "../protocol/index.ts";

/** A receipt that does not prove what the provider claims: the provider is penalized. */
export class ReceiptRejectedError extends MycelError {
  override name = "ReceiptRejectedError";
  constructor(reason: string) {
    super(`receipt rejected: ${reason}`, {
      code: "receipt_rejected",
      hint: "the provider is no longer routed to; retry the request",
    });
  }
}

/** Parameters of {@link verifyReceipt}. */
export type VerifyReceiptParameters = {
  end: EndFrame;
  requestId: string;
  client: string;
  /** The provider's announced (peer-bound) address. */
  provider: string;
  request: InferenceRequest;
  /** Output tokens this provider streamed in this segment. */
  outputTokens: readonly number[];
  /**
   * Generation: the text streamed in this segment (its chunks' `text` joined). The receipt's commitment must bind
   * it, with the end frame's finish reason and `fingerprints_hash` (textBoundCommitment). Embeddings leave it out.
   */
  streamedText?: string;
  /** Embeddings: the hash of the vectors received (hashVectors), checked instead of the output tokens' hash. */
  outputHash?: string;
  /** The provider's prices per 1M tokens when it was picked: the receipt must charge exactly these. */
  pricePerMillion: { input: bigint; output: bigint };
  /** The request's price ceiling per 1M tokens: a receipt that charges more than it allows is never paid. */
  maxPricePerMillion?: bigint;
  domain: ReceiptDomain;
  now?: number;
};

/** Verifies signature and every field; returns the receipt or throws {@link ReceiptRejectedError}. */
export async function verifyReceipt(parameters: VerifyReceiptParameters): Promise<SignedReceipt> {
  const receipt = parameters.end.receipt as SignedReceipt;
  const message = receipt.message;
  const reject = (reason: string) => {
    throw new ReceiptRejectedError(reason);
  };
  const domain = parameters.domain;
  if (
    receipt.domain.chainId !== domain.chainId ||
    getAddress(receipt.domain.verifyingContract) !== getAddress(domain.verifyingContract)
  )
    reject("signed for another chain or contract");
  let signer: string;
  try {
    signer = await recoverReceiptSigner(receipt);
  } catch {
    return reject("the signature cannot be recovered");
  }
  const provider = getAddress(parameters.provider);
  if (signer !== provider) reject(`signed by ${signer}, not by the provider ${provider}`);
  if (getAddress(message.provider) !== provider) reject("names another provider");
  if (message.requestId !== parameters.requestId) reject("names another request id");
  if (getAddress(message.client) !== getAddress(parameters.client)) reject("names another client");
  if (message.modelHash !== parameters.request.model_hash) reject("names another model");
  if (message.requestHash !== hashRequest(parameters.request))
    reject("request hash does not match the request sent");
  const promptIds = parameters.end.prompt_token_ids;
  const prefix = parameters.request.prefix_tokens ?? [];
  const promptEndsWithPrefix = prefix.every(
    (token, index) => promptIds[promptIds.length - prefix.length + index] === token,
  );
  if (promptIds.length <= prefix.length || !promptEndsWithPrefix)
    reject("prompt tokens do not end with the continuation prefix");
  if (message.promptHash !== hashTokenIds(promptIds))
    reject("prompt hash does not match the prompt token ids");
  if (message.promptTokens !== promptIds.length) reject("prompt token count does not match");
  if (message.outputHash !== (parameters.outputHash ?? hashTokenIds(parameters.outputTokens)))
    reject(
      parameters.outputHash === undefined
        ? "output hash does not match the tokens streamed"
        : "output hash does not match the vectors received",
    );
  if (message.completionTokens !== parameters.outputTokens.length)
    reject("completion token count does not match");
  if (parameters.streamedText !== undefined) checkTextBound(parameters.end, parameters.streamedText, reject);
  const expectedPrice = priceOfTokens({
    promptTokens: promptIds.length,
    completionTokens: parameters.outputTokens.length,
    pricePerMillion: parameters.pricePerMillion,
  });
  if (BigInt(message.price) !== expectedPrice)
    reject(`price ${message.price} is not the announced ${expectedPrice}`);
  const ceiling = parameters.maxPricePerMillion;
  if (ceiling !== undefined) {
    const { input, output } = parameters.pricePerMillion;
    if (input > ceiling || output > ceiling)
      reject(`prices ${input} / ${output} per 1M tokens are above the price ceiling ${ceiling}`);
    const mostAllowed = priceOfTokens({
      promptTokens: promptIds.length,
      completionTokens: parameters.outputTokens.length,
      pricePerMillion: { input: ceiling, output: ceiling },
    });
    if (BigInt(message.price) > mostAllowed)
      reject(`price ${message.price} is above the ${mostAllowed} the price ceiling allows`);
  }
  const nowSeconds = Math.floor((parameters.now ?? Date.now()) / 1000);
  if (Math.abs(Number(message.timestamp) - nowSeconds) > announcementTiming.maxSkewMs / 1000)
    reject("timestamp is off by more than the tolerated clock skew");
  // Clients get the receipt with Mycel's own types, whatever the provider sent alongside its signature.
  return { ...receipt, types: receiptTypes, primaryType: "Receipt" };
}

/**
 * The commitment must bind the text this gateway relayed and the finish reason it was told: with the end frame's
 * `fingerprints_hash` they must hash to it. A provider that streams other text than it committed to (or leaves the
 * hash out) is rejected like any other bad receipt; one that commits to other text than its tokens' is caught by
 * audits (`text_mismatch`).
 */
function checkTextBound(end: EndFrame, text: string, reject: (reason: string) => void) {
  const fingerprintsHash = end.fingerprints_hash;
  if (fingerprintsHash === undefined)
    return reject(
      "the end frame has no fingerprints_hash, so the commitment cannot be checked against the text",
    );
  const expected = textBoundCommitment({
    finishReason: end.finish_reason,
    fingerprintsHash: fingerprintsHash as `0x${string}`,
    textHash: hashStreamedText(text),
  });
  if (end.receipt.message.commitment !== expected)
    reject("commitment does not bind the text streamed (or the finish reason sent)");
}
