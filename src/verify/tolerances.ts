/**
 * How far a validator's re-evaluation may drift from a provider's fingerprints before an answer fails, per weight
 * type. Chosen from `npm run calibrate` and `npm run bench:verify` (docs/VERIFICATION.md has the tables and the
 * reasoning): every honest answer measured (threads, batch sizes, prompts up to the whole context window,
 * temperatures, processes) stays inside them and every cheat measured lands outside.
 */
export type AuditTolerances = {
  /** Largest mean gap error (nats) over a chunk of at least {@link minChunkPositions} positions. */
  chunkMeanGapError: number;
  /** Largest gap error (nats) at any one position. */
  positionGapError: number;
  /** At temperature 0, a token that is not the argmax passes when it is at most this far (nats) below it. */
  nearTie: number;
};

/** Chunks shorter than this (an answer's last) are judged by the per-position bound only. */
export const minChunkPositions = 8;

/**
 * Tokens per llama.cpp batch in an audit's re-evaluation of the output of a provider that decodes on one thread.
 * A provider decodes its output one token at a time; on one thread, llama.cpp's kernels for batches of at most 32
 * tokens compute each position as that single-token decode does, to ~0.005 nats, while batches of 512 drift to
 * 0.06 at the end of a 2048-token window (`npm run calibrate`, docs/VERIFICATION.md "Re-evaluation").
 */
export const auditBatchSize = 32;

/**
 * The largest batch of a provider's prefill an audit re-evaluates as the provider did (an auditor's engine batch
 * size); a larger one is re-evaluated in batches of this size.
 */
export const auditPrefillMaxBatchSize = 512;

/** The smallest batch an audit re-evaluates a prompt in, whatever the provider states (a bound on the audit's cost). */
export const auditPrefillMinBatchSize = 16;

/** What an audit assumes of evidence that does not state how it was decoded: the provider defaults of 2-core machines. */
export const assumedDecoding = { batchSize: 512, threads: 1 } as const;

/** A token whose log-probability under the claimed model is below this could not have been sampled. */
export const impossibleLogprob = -20;

/**
 * Tolerances per weight type ("quantized": any type without its own row, the most lenient; not calibrated: the
 * test models come in f32, f16 and q8_0 only). Calibrated on the small test model with audits re-evaluating as the
 * provider decoded (2026-12-08, `npm run calibrate`, tables in docs/VERIFICATION.md). f16 and f32: the worst honest
 * chunk mean is 0.0004 for 1-thread providers at any prompt length and 0.0245 for a 2-thread provider at the end of
 * the window; q8_0 weights served for an f16 claim start at 0.1059. 0.045 sits between them: 1.84x the worst
 * honest, 2.35x below the closest cheat. Position error 0.3: 7x the worst honest (0.043); it does not separate
 * that cheat (0.21 up), the chunk mean does. q8_0: worst honest 0.11 chunk mean and 0.26 position (multi-thread
 * providers, whose output is re-evaluated in large batches; 0.0004 on one thread); its cheats measured start at
 * 1.17 and 1.97. On the medium test model a 1-thread q8_0 provider's output re-evaluated in batches of 512 drifts
 * 0.49-0.60, so q8_0's tolerance is not calibrated there for multi-thread providers (docs/VERIFICATION.md, known
 * gaps). nearTie = positionGapError: an honest near-tie flip at temperature 0 is that same per-position drift.
 */
export const auditTolerances: Record<string, AuditTolerances> = {
  f32: { chunkMeanGapError: 0.045, positionGapError: 0.3, nearTie: 0.3 },
  f16: { chunkMeanGapError: 0.045, positionGapError: 0.3, nearTie: 0.3 },
  q8_0: { chunkMeanGapError: 0.3, positionGapError: 0.75, nearTie: 0.75 },
  quantized: { chunkMeanGapError: 0.5, positionGapError: 2, nearTie: 2 },
};

/** The tolerances for a model's weight type. */
export function tolerancesFor(weightType: string): AuditTolerances {
  return auditTolerances[weightType] ?? (auditTolerances.quantized as AuditTolerances);
}
