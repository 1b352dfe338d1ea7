/**
 * One embeddings answer (`kind: "embed"`): the inputs tokenized within the limits, embedded, each vector sent in its
 * own `embedding` frame, then the receipt: outputHash over the vectors' float32 little-endian bytes, promptTokens all
 * the inputs' tokens, completionTokens 0, priced at the input price. Then the voucher that pays for it.
 */
import type { Address, Hex } from "viem";
import type { Engine, LoadedModelInfo } from "../engine/index.ts";
import { MycelError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type { PayeeSession } from "../payments/index.ts";
import {
  buildErrorFrame,
  encodeVectors,
  hashRequest,
  hashTokenIds,
  hashVectors,
  priceOfTokens,
  type ReceiptDomain,
  type ReceiptMessage,
  type RequestFrame,
  type SignedReceipt,
  wireVersion,
} from "../protocol/index.ts";
import type { InferenceExchange, InferenceLimits } from "../protocols/index.ts";
import { watchGatewayControl } from "./gatewayControl.ts";

/** What an embeddings answer needs of the provider (a part of answer.ts's AnswerContext). */
export type EmbedContext = {
  engine: Pick<Engine, "embeddingTokens" | "embed">;
  components: {
    signReceipt: (parameters: {
      privateKey: Hex;
      domain: ReceiptDomain;
      message: ReceiptMessage;
    }) => Promise<SignedReceipt>;
  };
  privateKey: Hex;
  address: Address;
  domain: ReceiptDomain;
  price: { input: bigint; output: bigint };
  limits: InferenceLimits;
  logger: Logger;
  onServed?: (client: Address) => void;
};

/** An embeddings receipt commits to no sampled tokens: its commitment is zero. */
export const embeddingCommitment: Hex = `0x${"0".repeat(64)}`;

/** The receipt message of an embeddings answer. */
export function describeEmbeddings(parameters: {
  frame: RequestFrame;
  provider: Hex;
  /** Every input's tokens as embedded, in order. */
  inputTokens: readonly (readonly number[])[];
  vectors: readonly (readonly number[])[];
  pricePerMillion: { input: bigint; output: bigint };
  now?: number;
}): ReceiptMessage {
  const { frame } = parameters;
  const tokens = parameters.inputTokens.flat();
  return {
    requestId: frame.id as Hex,
    client: frame.client as Hex,
    provider: parameters.provider,
    modelHash: frame.request.model_hash as Hex,
    requestHash: hashRequest(frame.request),
    promptHash: hashTokenIds(tokens),
    outputHash: hashVectors(parameters.vectors),
    commitment: embeddingCommitment,
    promptTokens: tokens.length,
    completionTokens: 0,
    price: priceOfTokens({
      promptTokens: tokens.length,
      completionTokens: 0,
      pricePerMillion: parameters.pricePerMillion,
    }),
    timestamp: BigInt(Math.floor((parameters.now ?? Date.now()) / 1000)),
  };
}

/** Embeds the request's inputs, sends the vectors and the signed receipt, and waits for the voucher that pays for it. */
export async function embedAndSign(input: {
  exchange: InferenceExchange;
  context: EmbedContext;
  model: LoadedModelInfo;
  session: PayeeSession<{ tokens: readonly number[] }>;
  cancel: AbortController;
}) {
  const { exchange, context, model, session, cancel } = input;
  const { request: frame, peerId } = exchange;
  const request = frame.request;
  if (!model.capabilities.includes("embeddings"))
    throw new MycelError(`model ${request.model_hash} does not make embeddings here`, {
      code: "model_not_found",
    });
  const inputTokens = (request.inputs ?? []).map((each) =>
    context.engine.embeddingTokens({ modelHash: model.hash, input: each }),
  );
  const total = inputTokens.reduce((sum, tokens) => sum + tokens.length, 0);
  if (total > context.limits.maxPromptTokens)
    throw new MycelError(
      `${total} input tokens exceed this provider's limit of ${context.limits.maxPromptTokens} per request`,
      { code: "prompt_too_long" },
    );
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    cancel.abort(new Error("total time limit"));
  }, context.limits.totalTimeoutMs);
  const onBroken = () => cancel.abort(new Error("stream broken"));
  exchange.broken.addEventListener("abort", onBroken, { once: true });
  // The gateway may cancel, and pays with a voucher once it has the receipt.
  const control = watchGatewayControl({
    exchange,
    session,
    stopWork: () => cancel.abort(new Error("cancelled by the gateway")),
  });
  try {
    let result: Awaited<ReturnType<Engine["embed"]>>;
    try {
      result = await context.engine.embed({
        modelHash: model.hash,
        inputs: inputTokens,
        dimensions: request.dimensions,
        signal: cancel.signal,
      });
    } catch (error) {
      if (!cancel.signal.aborted) throw error;
      if (timedOut && !exchange.broken.aborted)
        exchange.send(
          buildErrorFrame({
            code: "time_limit",
            message: `a request may take at most ${context.limits.totalTimeoutMs} ms here`,
          }),
        );
      context.logger.info("embeddings cancelled", { peer: peerId });
      return;
    }
    for (const [index, vector] of result.vectors.entries())
      exchange.send({
        v: wireVersion,
        type: "embedding",
        index,
        data: Buffer.from(encodeVectors([vector])).toString("base64"),
      });
    const message = describeEmbeddings({
      frame,
      provider: context.address,
      inputTokens,
      vectors: result.vectors,
      pricePerMillion: context.price,
    });
    const receipt = await context.components.signReceipt({
      privateKey: context.privateKey,
      domain: context.domain,
      message,
    });
    session.complete(message.price);
    context.onServed?.(frame.client as Address);
    exchange.send({
      v: wireVersion,
      type: "end",
      finish_reason: "stop",
      prompt_token_ids: inputTokens.flat(),
      receipt,
    });
    await exchange.flushed();
    control.markAnswered();
    context.logger.info("embeddings served", {
      peer: peerId,
      model: model.name,
      inputs: inputTokens.length,
      promptTokens: total,
    });
    if (session.metered) await control.awaitFinalVoucher();
  } finally {
    clearTimeout(timer);
    exchange.broken.removeEventListener("abort", onBroken);
    cancel.abort(new Error("request finished"));
    await control.stop();
  }
}
