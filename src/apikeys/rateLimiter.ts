/** Requests per minute per key: a token bucket that holds a minute's requests and refills evenly. */

/** The rate limiter of a gateway's keys (in memory: a restart gives every key a full minute). */
export type RateLimiter = {
  /** Takes one request of the key's allowance; returns the seconds to wait when none is left, else undefined. */
  take(parameters: { keyId: string; perMinute: number; now: number }): number | undefined;
};

/** Creates a rate limiter with one bucket per key. */
export function createRateLimiter(): RateLimiter {
  const buckets = new Map<string, { tokens: number; at: number }>();
  return {
    take({ keyId, perMinute, now }) {
      const perMs = perMinute / 60_000;
      const bucket = buckets.get(keyId) ?? { tokens: perMinute, at: now };
      bucket.tokens = Math.min(perMinute, bucket.tokens + (now - bucket.at) * perMs);
      bucket.at = now;
      buckets.set(keyId, bucket);
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return undefined;
      }
      return Math.max(1, Math.ceil((1 - bucket.tokens) / perMs / 1000));
    },
  };
}
