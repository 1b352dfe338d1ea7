/**
 * One answer, from request frame to receipt: check that the client is the peer that sends it, admit it (model
 * known, payee session opened on its channel), only then tokenize within the limits, generate with the output going
 * out as paid for, sign the receipt, keep the evidence, and wait for the voucher that pays for it.
 */
import { type Address, type Hex, isAddressEqual } from "viem";
import {
  createDeltaBatcher,
  type Engine,
  type GenerateParameters,
  type GenerateReturnType,
  type GenerationDelta,
  type LoadedModelInfo,
  outputLogprobsOf,
  requestConstraintOf,
  streamBatchIntervalMs,
} from "../engine/index.ts";
import { describeError, InvalidInputError, MycelError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import { ethereumAddressOfPeerId } from "../p2p/index.ts";
import { openPayeeSession, type PayeeSession, type ProviderPayments } from "../payments/index.ts";
import {
  buildErrorFrame,
  type InferenceRequest,
  maxLogprobsPerFrame,
  type ReceiptDomain,
  type ReceiptMessage,
  type SignedReceipt,
  wireVersion,
} from "../protocol/index.ts";
import {
  errorFrameOf,
  type InferenceExchange,
  type InferenceLimits,
  maxTokensPerChunk,
} from "../protocols/index.ts";
import type { EvidenceStore } from "../store/index.ts";
import { embedAndSign } from "./embed.ts";
import { watchGatewayControl } from "./gatewayControl.ts";
import { describeAnswer } from "./receipt.ts";

/** Parts a provider is built from that a test may replace (e.g. a receipt signer that cheats). */
export type ProviderComponents = {
  signReceipt: (parameters: {
    privateKey: Hex;
    domain: ReceiptDomain;
    message: ReceiptMessage;
  }) => Promise<SignedReceipt>;
  /** Generates an answer (the engine's generate); test fixtures replace it to cheat. */
  generate: (parameters: GenerateParameters & { request: InferenceRequest }) => Promise<GenerateReturnType>;
};

/** What answering needs: the provider's models, engine, key, price, limits, payments and evidence store. */
export type AnswerContext = {
  /** Served models by 0x bytes32 hash. */
  models: ReadonlyMap<string, LoadedModelInfo>;
  engine: Pick<
    Engine,
    | "tokenizeChat"
    | "tokenizeCompletion"
    | "evaluate"
    | "tokenBytes"
    | "isEndOfGeneration"
    | "embeddingTokens"
    | "embed"
  >;
  components: ProviderComponents;
  privateKey: Hex;
  address: Address;
  domain: ReceiptDomain;
  price: { input: bigint; output: bigint };
  limits: InferenceLimits;
  payments: ProviderPayments | undefined;
  evidence: EvidenceStore;
  logger: Logger;
  /** Called with the client of each request answered with a receipt (it has a good record from then on). */
  onServed?: (client: Address) => void;
};

/** A request whose `client` is not the peer that sent it: nobody may name another's channel or debts. */
export class ClientNotPeerError extends MycelError {
  override name = "ClientNotPeerError";
}

/**
 * Checks that the request's client is the authenticated peer of the stream (its secp256k1 key is the client's
 * Ethereum key): a request can only name channels of its sender, and what it leaves unpaid is its sender's own.
 */
function checkClientIsPeer(exchange: InferenceExchange): Address {
  const peerAddress = ethereumAddressOfPeerId(exchange.peerId);
  const client = exchange.request.client as Address;
  if (peerAddress === undefined)
    throw new ClientNotPeerError(`peer ${exchange.peerId} has no secp256k1 key, so it cannot be a client`, {
      code: "client_not_peer",
      hint: "the request's client must be the key of the node that sends it: run the node with its Ethereum key",
    });
  if (!isAddressEqual(peerAddress, client))
    throw new ClientNotPeerError(`the request names client ${client}, but it comes from ${peerAddress}`, {
      code: "client_not_peer",
      hint: "the request's client must be the key of the node that sends it",
    });
  return peerAddress;
}

function tokenize(context: AnswerContext, model: LoadedModelInfo, request: InferenceRequest): number[] {
  if (request.kind === "chat")
    return context.engine.tokenizeChat({
      modelHash: model.hash,
      messages: request.messages ?? [],
      ...(request.tools ? { tools: request.tools } : {}),
    });
  const prompt = request.prompt ?? "";
  if (typeof prompt === "string")
    return context.engine.tokenizeCompletion({ modelHash: model.hash, text: prompt });
  const outside = prompt.find((token) => token >= model.vocabularySize);
  if (outside !== undefined)
    throw new InvalidInputError(`token ${outside} is outside the vocabulary`, { param: "prompt" });
  return prompt;
}

/** The prompt's tokens and the continuation prefix, within the provider's prompt limit. */
function promptOf(context: AnswerContext, model: LoadedModelInfo, request: InferenceRequest) {
  const promptTokens = tokenize(context, model, request);
  const prefixTokens = request.prefix_tokens ?? [];
  const evaluated = [...promptTokens, ...prefixTokens];
  if (evaluated.length > context.limits.maxPromptTokens)
    throw new MycelError(
      `${evaluated.length} prompt tokens exceed this provider's limit of ${context.limits.maxPromptTokens}`,
      { code: "prompt_too_long" },
    );
  return { promptTokens, prefixTokens, evaluated };
}

/**
 * Answers one request on an inference stream; throws (answered with an error frame) when it cannot start. Nothing
 * runs before admission: the client is the sending peer, the model is served here, the channel may pay; only then
 * is the prompt tokenized.
 */
export async function answerRequest(exchange: InferenceExchange, context: AnswerContext): Promise<void> {
  const { request: frame } = exchange;
  const client = checkClientIsPeer(exchange);
  const model = context.models.get(frame.request.model_hash);
  if (!model)
    throw new MycelError(`model ${frame.request.model_hash} is not served here`, { code: "model_not_found" });
  const generation = new AbortController();
  const session = await openPayeeSession<GenerationDelta>({
    payments: context.payments,
    paid: context.price.input > 0n || context.price.output > 0n,
    channelId: frame.payment?.channel_id as Hex | undefined,
    client,
    release: (deltas) =>
      exchange.send({
        v: wireVersion,
        type: "chunk",
        tokens: deltas.flatMap((delta) => delta.tokens),
        text: deltas.map((delta) => delta.text).join(""),
      }),
    maxTokensPerRelease: maxTokensPerChunk,
    sendPaid: (paid) => exchange.send(paid),
    onStop: (reason) => generation.abort(reason),
    logger: context.logger,
    peerId: exchange.peerId,
  });
  try {
    if (frame.request.kind === "embed")
      return await embedAndSign({ exchange, context, model, session, cancel: generation });
    const prompt = promptOf(context, model, frame.request);
    await generateAndSign({ exchange, context, model, ...prompt, session, generation });
  } finally {
    session.end();
  }
}

/**
 * Sends the log-probabilities of the whole answer (continuation prefix and this provider's output) in frames of
 * {@link maxLogprobsPerFrame}, before the end frame.
 */
async function sendLogprobs(parameters: {
  exchange: InferenceExchange;
  context: AnswerContext;
  input: { model: LoadedModelInfo; promptTokens: number[]; prefixTokens: number[] };
  outputTokens: number[];
}) {
  const { exchange, context, input } = parameters;
  const entries = await outputLogprobsOf({
    engine: context.engine,
    modelHash: input.model.hash,
    promptTokens: input.promptTokens,
    outputTokens: [...input.prefixTokens, ...parameters.outputTokens],
    top: exchange.request.request.logprobs ?? 0,
  });
  for (let start = 0; start < entries.length; start += maxLogprobsPerFrame)
    exchange.send({
      v: wireVersion,
      type: "logprobs",
      entries: entries.slice(start, start + maxLogprobsPerFrame),
    });
}

/** Generates with the output metered by the session, then signs the receipt and keeps the evidence. */
async function generateAndSign(input: {
  exchange: InferenceExchange;
  context: AnswerContext;
  model: LoadedModelInfo;
  promptTokens: number[];
  prefixTokens: number[];
  evaluated: number[];
  session: PayeeSession<GenerationDelta>;
  generation: AbortController;
}) {
  const { exchange, context, session, generation } = input;
  const { request: frame, peerId } = exchange;
  const { logger } = context;
  let timedOut = false;
  const total = setTimeout(() => {
    timedOut = true;
    generation.abort(new Error("total time limit"));
  }, context.limits.totalTimeoutMs);
  const onBroken = () => generation.abort(new Error("stream broken"));
  exchange.broken.addEventListener("abort", onBroken, { once: true });
  // The gateway may cancel at any time, or go away: either stops generation and frees the sequence. It also pays
  // with vouchers, during the answer and right after it.
  const control = watchGatewayControl({
    exchange,
    session,
    stopWork: () => generation.abort(new Error("cancelled by the gateway")),
  });
  // Tokens go out at once when they come slower than streamBatchIntervalMs; faster ones are gathered into one
  // chunk per interval. Every frame costs encryption, syscalls and a window update on the main thread, which also
  // drives llama.cpp's token loop: per-token frames made the network path 15% slower.
  const chunks = createDeltaBatcher<GenerationDelta>({
    intervalMs: streamBatchIntervalMs,
    maxItems: maxTokensPerChunk,
    onBatch: (deltas) => session.offer(deltas),
  });
  try {
    const { request } = frame;
    // Compiled before any work: a schema no grammar enforces is the client's error.
    const constraint = await requestConstraintOf({
      responseFormat: request.response_format,
      tools: request.tools,
      toolChoice: request.tool_choice,
      parallelToolCalls: request.parallel_tool_calls,
      chatTemplate: input.model.chatTemplate,
    });
    const result = await context.components.generate({
      request: frame.request,
      modelHash: input.model.hash,
      promptTokens: input.promptTokens,
      prefixTokens: input.prefixTokens,
      maxTokens: frame.request.max_tokens,
      temperature: frame.request.temperature,
      topP: frame.request.top_p,
      topK: frame.request.top_k,
      seed: frame.request.seed,
      stop: frame.request.stop,
      minP: request.min_p,
      penalties: {
        repeat: request.repeat_penalty,
        presence: request.presence_penalty,
        frequency: request.frequency_penalty,
      },
      logitBias: request.logit_bias,
      grammar: constraint?.gbnf,
      signal: generation.signal,
      onDelta: (delta) => chunks.push(delta),
    });
    chunks.flush();
    await session.drained();
    await exchange.flushed();
    const stopReason = session.stopReason();
    const broken = exchange.broken.aborted;
    if (result.finishReason === "cancelled" || broken || stopReason) {
      logger.info("request cancelled", { peer: peerId, completionTokens: result.tokens.length });
      if (stopReason && !broken) exchange.send(errorFrameOf(stopReason));
      else if (timedOut && !broken)
        exchange.send(
          buildErrorFrame({
            code: "time_limit",
            message: `a request may take at most ${context.limits.totalTimeoutMs} ms here`,
          }),
        );
      await exchange.flushed();
      return;
    }
    const { message, evidence, fingerprintsHash } = describeAnswer({
      frame,
      provider: context.address,
      evaluated: input.evaluated,
      outputTokens: result.tokens,
      topLogits: result.topLogits,
      finishReason: result.finishReason,
      text: result.text,
      decoding: result.decoding,
      pricePerMillion: context.price,
    });
    const receipt = await context.components.signReceipt({
      privateKey: context.privateKey,
      domain: context.domain,
      message,
    });
    // Kept before the answer ends: a validator may ask for it as soon as the gateway has the receipt.
    try {
      context.evidence.save({
        requestId: frame.id as Hex,
        provider: context.address,
        evidence,
        request: frame.request,
        receipt,
      });
    } catch (error) {
      logger.warn("evidence not stored", { error: describeError(error) });
    }
    if (request.logprobs !== undefined)
      await sendLogprobs({ exchange, context, input, outputTokens: result.tokens });
    session.complete(message.price);
    context.onServed?.(frame.client as Address);
    exchange.send({
      v: wireVersion,
      type: "end",
      finish_reason: result.finishReason,
      prompt_token_ids: input.evaluated,
      fingerprints_hash: fingerprintsHash,
      receipt,
    });
    await exchange.flushed();
    control.markAnswered();
    logger.info("request served", {
      peer: peerId,
      model: input.model.name,
      promptTokens: input.evaluated.length,
      completionTokens: result.tokens.length,
      continuation: input.prefixTokens.length > 0,
    });
    // The voucher for the receipt comes next; the gateway closes its side once it is acknowledged.
    if (session.metered) await control.awaitFinalVoucher();
  } finally {
    chunks.cancel();
    clearTimeout(total);
    exchange.broken.removeEventListener("abort", onBroken);
    generation.abort(new Error("request finished"));
    await control.stop();
  }
}
