/**
 * How far a validator's re-evaluation may drift from a provider's fingerprints before an answer fails, per weight
 * type. Chosen from `npm run calibrate` (docs/VERIFICATION.md has the table and the reasoning): honest drift
 * across threads, batch sizes, prompt lengths and processes stays well inside them, every cheat lands well
 * outside.
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

/** A token whose log-probability under the claimed model is below this could not have been sampled. */
export const impossibleLogprob = -20;

/** Tolerances per weight type ("quantized": any type without its own row, the most lenient). */
export const auditTolerances: Record<string, AuditTolerances> = {
  f32: { chunkMeanGapError: 0.08, positionGapError: 0.3, nearTie: 0.3 },
  f16: { chunkMeanGapError: 0.08, positionGapError: 0.3, nearTie: 0.3 },
  q8_0: { chunkMeanGapError: 0.3, positionGapError: 0.75, nearTie: 0.75 },
  quantized: { chunkMeanGapError: 0.5, positionGapError: 2, nearTie: 2 },
};

/** The tolerances for a model's weight type. */
export function tolerancesFor(weightType: string): AuditTolerances {
  return auditTolerances[weightType] ?? (auditTolerances.quantized as AuditTolerances);
}
