/** The network over time: every interval, each provider's latency, throughput, price and load as this gateway sees them. */
import type { Gateway } from "../gateway/index.ts";
import type { HistoryPoint, ProviderView } from "./types.ts";

/** Defaults: a point every 5 s, the last hour kept (720 points). */
export const defaultHistoryOptions = { intervalMs: 5_000, capacity: 720 } as const;

/** A running sampler made by {@link createNetworkHistory}. */
export type NetworkHistory = {
  readonly intervalMs: number;
  readonly capacity: number;
  /** The kept points, oldest first. */
  points(): HistoryPoint[];
  /** Calls `listener` with each new point; returns the unsubscribe function. */
  onPoint(listener: (point: HistoryPoint) => void): () => void;
  /** Takes a point now (also done every interval). */
  sample(): HistoryPoint;
  stop(): void;
};

/** What the history samples: the providers as the gateway sees them, and its activity. */
export type HistorySource = {
  describeProviders(): ProviderView[];
  subscribe: Gateway["subscribe"];
};

/** Samples the gateway's provider table every `intervalMs`, keeping the newest `capacity` points in memory. */
export function createNetworkHistory(parameters: {
  source: HistorySource;
  intervalMs?: number;
  capacity?: number;
}): NetworkHistory {
  const intervalMs = parameters.intervalMs ?? defaultHistoryOptions.intervalMs;
  const capacity = parameters.capacity ?? defaultHistoryOptions.capacity;
  const points: HistoryPoint[] = [];
  const listeners = new Set<(point: HistoryPoint) => void>();
  let tokens = 0;
  let requests = 0;
  let since = Date.now();
  const unsubscribe = parameters.source.subscribe((activity) => {
    if (activity.type === "tokens") tokens += activity.count;
    if (activity.type === "completed") requests += 1;
  });

  function sample(): HistoryPoint {
    const now = Date.now();
    const seconds = Math.max((now - since) / 1000, 0.001);
    const point: HistoryPoint = {
      t: now,
      tokens_per_second: tokens / seconds,
      requests,
      providers: parameters.source
        .describeProviders()
        .filter((provider) => provider.status !== "expired")
        .map((provider) => ({
          address: provider.address,
          latency_ms: provider.latency_ms,
          throughput_tps: provider.throughput_tps,
          price_output: provider.price_per_million.output,
          in_flight: provider.in_flight,
          load: provider.load,
        })),
    };
    tokens = 0;
    requests = 0;
    since = now;
    points.push(point);
    if (points.length > capacity) points.splice(0, points.length - capacity);
    for (const listener of listeners) listener(point);
    return point;
  }

  const timer = setInterval(sample, intervalMs);
  timer.unref();
  return {
    intervalMs,
    capacity,
    points: () => [...points],
    onPoint(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    sample,
    stop() {
      clearInterval(timer);
      unsubscribe();
      listeners.clear();
    },
  };
}
