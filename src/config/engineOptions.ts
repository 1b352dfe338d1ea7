/** How the inference engine uses this machine: sequences, threads, context and queue. */
import { availableParallelism } from "node:os";

/** Settings of the inference engine. */
export type EngineOptions = {
  /** Sequences that generate at once per model (each has its own llama.cpp context). */
  parallelism: number;
  /** llama.cpp threads per sequence; 1 on machines with <= 2 cores (more threads there made generation 10-50x slower). */
  threadsPerSequence: number;
  /** Context window per sequence; defaults to the model's training context, at most 4096. */
  contextSize?: number;
  /** Requests that may wait for a free sequence before new ones are refused. */
  maxQueue: number;
  /** Tokens evaluated per llama.cpp batch. */
  batchSize: number;
};

/** Engine defaults for this machine: 1 thread per sequence and 2 sequences on <= 2 cores. */
export function defaultEngineOptions(cores = availableParallelism()): EngineOptions {
  const parallelism = Math.max(2, Math.min(8, cores));
  return {
    parallelism,
    threadsPerSequence: cores <= 2 ? 1 : Math.max(1, Math.floor(cores / parallelism)),
    maxQueue: 64,
    batchSize: 512,
  };
}
