/** What a gateway measures of a provider while it serves: time to first token and decoding speed. */
import type { KnownProvider } from "./providerTable.ts";

/** Weight of the newest sample in a smoothed measurement. */
const newestWeight = 0.3;
/** Output tokens a segment needs before its speed counts. */
export const minimumTokensForRate = 8;
/**
 * Shortest span from the first chunk to the end over which tokens count as decoding speed: chunks that arrive
 * together (batched by the provider, coalesced by TCP) would otherwise look like tens of thousands of tokens per
 * second. Shorter answers are measured over the whole segment instead.
 */
export const minimumStreamingSpanMs = 250;

/** Times of one segment, as the gateway saw them (performance.now() milliseconds). */
export type SegmentTiming = {
  /** When the request went out. */
  startedAt: number;
  /** When the first chunk arrived, and how many tokens it held. */
  firstChunkAt: number;
  firstChunkTokens: number;
  /** When the receipt arrived. */
  endedAt: number;
  /** Output tokens of the segment. */
  tokens: number;
};

function smooth(previous: number | undefined, sample: number): number {
  return previous === undefined ? sample : previous * (1 - newestWeight) + sample * newestWeight;
}

/** Counts a segment's time to first token into the provider's latency. */
export function recordLatency(provider: KnownProvider, latencyMs: number) {
  provider.latencyMs = smooth(provider.latencyMs, latencyMs);
}

/**
 * A segment's decoding speed in tokens per second, or undefined when it is too short to tell: tokens after the first
 * chunk over the time they took when that is long enough, else every token over the whole segment (never more than
 * the provider really produced, as that span holds the whole generation).
 */
export function decodingRate(timing: SegmentTiming): number | undefined {
  if (timing.tokens < minimumTokensForRate) return undefined;
  const streamingMs = timing.endedAt - timing.firstChunkAt;
  if (streamingMs >= minimumStreamingSpanMs)
    return (timing.tokens - timing.firstChunkTokens) / (streamingMs / 1000);
  const wholeMs = timing.endedAt - timing.startedAt;
  return wholeMs > 0 ? timing.tokens / (wholeMs / 1000) : undefined;
}

/** Counts a finished segment into the provider's decoding speed. */
export function recordThroughput(provider: KnownProvider, timing: SegmentTiming) {
  const rate = decodingRate(timing);
  if (rate !== undefined) provider.throughputTps = smooth(provider.throughputTps, rate);
}
