/**
 * Challenges: requests of the validator's own, sent through its own gateway to one provider at a time, that look
 * like user traffic; their answers are audited like samples.
 */
import { randomInt } from "node:crypto";
import type { Hex } from "viem";
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import { hashRequest, signAuditSample } from "../protocol/index.ts";
import type { AuditVerdict } from "../verify/index.ts";
import type { AuditQueue } from "./auditQueue.ts";
import type { AuditSample, SampleAuditor } from "./audits.ts";
import type { ValidatorNetwork } from "./network.ts";

/** Prompts of challenge requests: the kind of thing users ask. */
export const challengePrompts = [
  "What is a good name for a bakery?",
  "Explain photosynthesis in two sentences.",
  "Write a haiku about autumn.",
  "How do I boil an egg?",
  "Summarize the plot of a detective story.",
  "Give me three tips for learning to code.",
  "What is the capital of France?",
  "Translate 'good morning' into Spanish.",
  "Why do cats purr?",
  "Suggest a weekend hiking plan.",
];

/** How long one challenge request may take. */
const challengeTimeoutMs = 120_000;

/** Parameters of {@link createChallenger}. */
export type CreateChallengerParameters = {
  network: ValidatorNetwork;
  /** Models challenges may ask for: those this validator can audit (its store's), by name and hash. */
  models: () => { name: string; hash: string }[];
  queue: AuditQueue;
  /** The challenge gateway's key (its answers' client): signs each challenge's audit sample. */
  challengeKey: Hex;
  auditSample: (sample: AuditSample) => ReturnType<SampleAuditor>;
  logger: Logger;
};

/** Sends one challenge now; resolves with its verdict, or undefined when nothing could be challenged. */
export type Challenger = () => Promise<AuditVerdict | undefined>;

/** Creates the challenger. */
export function createChallenger(parameters: CreateChallengerParameters): Challenger {
  const { network, logger } = parameters;
  const pick = <T>(items: readonly T[]): T | undefined => items[randomInt(0, Math.max(1, items.length))];
  return async () => {
    const live = new Set(network.liveModels().map((model) => model.hash));
    const model = pick(parameters.models().filter((entry) => live.has(entry.hash)));
    if (!model) return undefined;
    const target = pick(network.providersOf(`0x${model.hash}`));
    if (!target) return undefined;
    let answered: Awaited<ReturnType<ValidatorNetwork["ask"]>>;
    try {
      answered = await network.ask({
        model,
        messages: [{ role: "user", content: pick(challengePrompts) as string }],
        maxTokens: 16 + randomInt(0, 48),
        temperature: pick([0, 0.7, 1]) as number,
        providerPeerId: target.peerId,
        signal: AbortSignal.timeout(challengeTimeoutMs),
      });
    } catch (error) {
      logger.info("challenge request failed", { provider: target.address, error: describeError(error) });
      return undefined;
    }
    const { receipts, request } = answered;
    const receipt = receipts[receipts.length - 1];
    if (!receipt) return undefined;
    if (hashRequest(request) !== receipt.message.requestHash) {
      logger.info("challenge answer is not for the request sent (a failover?): not audited", {
        provider: target.address,
      });
      return undefined;
    }
    const requestId = receipt.message.requestId as Hex;
    // The provider hands evidence to the receipt's client only, or to the holder of a sample it signed.
    const signedSample = await signAuditSample({
      privateKey: parameters.challengeKey,
      sample: { request_id: requestId, provider_peer_id: target.peerId, request, receipt },
    });
    return parameters.queue.enqueue(() =>
      parameters.auditSample({
        requestId,
        providerPeerId: target.peerId,
        receipt,
        signedSample,
        source: "challenge",
      }),
    );
  };
}
