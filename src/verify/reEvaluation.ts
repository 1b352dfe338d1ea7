/**
 * How an audit batches its re-evaluation so that llama.cpp's arithmetic is the provider's: the prompt in the
 * batches the provider prefilled it in (the same numbers, and the physical limit of its cost), then the output in
 * batches whose kernels compute as the provider's single-token decodes did. Measured in docs/VERIFICATION.md
 * "Re-evaluation" (`npm run calibrate`).
 */
import { exactReplayMaxTokens } from "../engine/index.ts";
import type { AuditInput } from "../protocol/index.ts";
import {
  assumedDecoding,
  auditBatchSize,
  auditPrefillMaxBatchSize,
  auditPrefillMinBatchSize,
} from "./tolerances.ts";

/** The batches of an audit's `engine.evaluate`: its `prefill` and `batchSize` parameters. */
export type ReEvaluationBatches = { prefill: { tokens: number; batchSize: number }; batchSize: number };

/** The batches that re-evaluate `input` as its provider decoded it (see the module's comment). */
export function reEvaluationBatchesOf(
  input: Pick<AuditInput, "promptTokens" | "request" | "decoding">,
): ReEvaluationBatches {
  const decoding = input.decoding ?? assumedDecoding;
  const prefillBatchSize = Math.min(
    auditPrefillMaxBatchSize,
    Math.max(auditPrefillMinBatchSize, decoding.batchSize),
  );
  // A continuation's prefix tokens were decoded one by one after the prompt, unless there were too many to replay.
  const prefix = input.request.prefix_tokens?.length ?? 0;
  const prefilled =
    prefix <= exactReplayMaxTokens ? input.promptTokens.length - prefix : input.promptTokens.length;
  return {
    prefill: { tokens: Math.max(0, prefilled), batchSize: prefillBatchSize },
    // On one thread the small-batch kernels match a single-token decode; on more, the provider's decode is closer
    // to the large-batch kernels (drift 0.008-0.018 instead of 0.05-0.06 at ~1850 tokens, 2-4 provider threads).
    batchSize: decoding.threads > 1 ? prefillBatchSize : auditBatchSize,
  };
}
