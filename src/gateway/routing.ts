/** Routing: which provider serves a request, scored by price, latency, success rate, load and reputation. */
import type { KnownProvider } from "./providerTable.ts";

/** A provider's on-chain reputation for routing: 1 until validators have scored it (newcomers get a chance). */
export function reputationOf(provider: Pick<KnownProvider, "reputation">): number {
  return provider.reputation ?? 1;
}

/** Weights of the routing score (higher score wins). */
export const routingWeights = { price: 1, latency: 1, success: 2, load: 1, reputation: 1 } as const;

/** Scores one provider against the others for a request; in about [0, 6]. */
export function scoreProvider(parameters: {
  provider: KnownProvider;
  candidates: readonly KnownProvider[];
}): number {
  const { provider, candidates } = parameters;
  const priceOf = (entry: KnownProvider) =>
    Number(BigInt(entry.announcement.price.input) + BigInt(entry.announcement.price.output));
  const prices = candidates.map(priceOf);
  const maxPrice = Math.max(...prices, 0);
  const minPrice = Math.min(...prices);
  const price = maxPrice === minPrice ? 1 : 1 - (priceOf(provider) - minPrice) / (maxPrice - minPrice);
  // Optimistic for newcomers: an unmeasured provider scores as fast and reliable until it has been tried, so
  // every new provider gets a chance to prove itself (and a cheat is found out on its first answer).
  const latency = provider.latencyMs === undefined ? 1 : 1 / (1 + provider.latencyMs / 100);
  const attempts = provider.successes + provider.failures;
  const success = attempts === 0 ? 1 : (provider.successes + 1) / (attempts + 2);
  const capacity = provider.announcement.capacity;
  const load =
    1 -
    Math.min(
      1,
      (capacity.busy + capacity.waiting + provider.inFlight) / (capacity.parallelism + capacity.max_queue),
    );
  return (
    routingWeights.price * price +
    routingWeights.latency * latency +
    routingWeights.success * success +
    routingWeights.load * load +
    routingWeights.reputation * reputationOf(provider)
  );
}

/** Orders usable candidates best first, leaving out banned, untrusted and excluded ones. */
export function rankProviders(parameters: {
  candidates: readonly KnownProvider[];
  exclude?: ReadonlySet<string>;
  /** Providers whose on-chain reputation (0..1) is below this are left out. */
  minimumReputation?: number;
  now?: number;
}): KnownProvider[] {
  const now = parameters.now ?? Date.now();
  const minimum = parameters.minimumReputation ?? 0;
  const usable = parameters.candidates.filter(
    (entry) =>
      !entry.untrusted &&
      entry.bannedUntil <= now &&
      reputationOf(entry) >= minimum &&
      !parameters.exclude?.has(entry.peerId),
  );
  const scored = usable.map((provider) => ({
    provider,
    idle: hasIdleSequence(provider),
    score: scoreProvider({ provider, candidates: usable }),
  }));
  // A provider with a sequence free for this gateway's request comes before any that would queue it, whatever their
  // price: piling requests on the cheapest provider while others sit idle made answers wait behind each other.
  scored.sort((a, b) => Number(b.idle) - Number(a.idle) || b.score - a.score);
  return scored.map((entry) => entry.provider);
}

/** Whether a provider has a sequence free for one more of this gateway's requests (fewer in flight than it runs at once). */
export function hasIdleSequence(provider: Pick<KnownProvider, "inFlight" | "announcement">): boolean {
  return provider.inFlight < provider.announcement.capacity.parallelism;
}
