/**
 * Which inference streams a provider takes, so that holding its capacity costs an attacker more than it costs the
 * provider. A new stream first waits for its request frame in a small pending budget that takes no serving
 * capacity (capped per peer, and per host for peers the provider does not trust yet); a trusted peer's stream
 * pushes out the oldest stranger's waiting stream when the budget is full. Once its request arrives, a stream takes
 * a serving slot: per peer, in all, and strangers share a bounded part of them, so the rest stays with peers that
 * have a funded channel or a good record. Every refusal is a {@link StreamLimitError}: busy, with when to retry.
 */
import { MycelError } from "../../errors/index.ts";
import { busyRetryAfterMs, type InferenceLimits } from "./constants.ts";

/** A stream refused (or pushed out) for want of capacity: the peer may come back after {@link busyRetryAfterMs}. */
export class StreamLimitError extends MycelError {
  override name = "StreamLimitError";
  readonly retryAfterMs = busyRetryAfterMs;
}

/** The limits admission enforces. */
export type StreamAdmissionLimits = Pick<
  InferenceLimits,
  | "maxStreamsPerPeer"
  | "maxInboundStreams"
  | "maxStrangerStreams"
  | "maxPendingStreams"
  | "maxPendingStreamsPerPeer"
  | "maxPendingStreamsPerHost"
>;

/** A stream that waits for its request frame. */
export type PendingStream = {
  peerId: string;
  /** The remote IP address (or another key standing for the remote host). */
  host: string;
  /** Whether the provider trusts the peer (a funded channel, a good record). */
  trusted: boolean;
  /** Called when a trusted peer's stream pushes this one out: the stream should be answered and closed. */
  evict: (reason: StreamLimitError) => void;
};

/** Counts of the streams admitted now. */
export type StreamAdmissionCounts = { pending: number; serving: number; strangersServing: number };

/** The admission state of one provider (see {@link createStreamAdmission}). */
export type StreamAdmission = {
  /** Takes a pending slot for a new stream, or throws {@link StreamLimitError}; returns the function that frees it. */
  admitPending(stream: PendingStream): () => void;
  /** Takes a serving slot for a stream whose request arrived, or throws {@link StreamLimitError}; returns its release. */
  admitServing(stream: { peerId: string; trusted: boolean }): () => void;
  counts(): StreamAdmissionCounts;
};

/** Counts per key, dropping keys that reach zero. */
function createTally() {
  const counts = new Map<string, number>();
  return {
    of: (key: string) => counts.get(key) ?? 0,
    add(key: string) {
      counts.set(key, (counts.get(key) ?? 0) + 1);
    },
    remove(key: string) {
      const left = (counts.get(key) ?? 1) - 1;
      if (left > 0) counts.set(key, left);
      else counts.delete(key);
    },
  };
}

function busy(message: string, code: "busy" | "too_many_streams" = "busy"): StreamLimitError {
  return new StreamLimitError(message, {
    code,
    hint: `ask again after ${busyRetryAfterMs} ms, or ask another provider`,
  });
}

/** Creates the admission state of a provider with these limits. */
export function createStreamAdmission(limits: StreamAdmissionLimits): StreamAdmission {
  /** Waiting streams, oldest first (a Map keeps insertion order). */
  const pending = new Map<PendingStream, true>();
  const pendingByPeer = createTally();
  const strangersPendingByHost = createTally();
  const servingByPeer = createTally();
  let serving = 0;
  let strangersServing = 0;

  const remove = (stream: PendingStream) => {
    if (!pending.delete(stream)) return;
    pendingByPeer.remove(stream.peerId);
    if (!stream.trusted) strangersPendingByHost.remove(stream.host);
  };
  const oldestStranger = () => {
    for (const stream of pending.keys()) if (!stream.trusted) return stream;
    return undefined;
  };

  return {
    admitPending(stream) {
      if (pendingByPeer.of(stream.peerId) >= limits.maxPendingStreamsPerPeer)
        throw busy(
          `at most ${limits.maxPendingStreamsPerPeer} streams of one peer may wait for their request here`,
          "too_many_streams",
        );
      if (!stream.trusted && strangersPendingByHost.of(stream.host) >= limits.maxPendingStreamsPerHost)
        throw busy(
          `at most ${limits.maxPendingStreamsPerHost} streams from one host may wait for their request here`,
        );
      if (pending.size >= limits.maxPendingStreams) {
        const victim = stream.trusted ? oldestStranger() : undefined;
        if (!victim)
          throw busy(`this provider has ${limits.maxPendingStreams} streams waiting for their request`);
        remove(victim);
        victim.evict(busy("pushed out by a peer this provider knows, while waiting for the request"));
      }
      pending.set(stream, true);
      pendingByPeer.add(stream.peerId);
      if (!stream.trusted) strangersPendingByHost.add(stream.host);
      return () => remove(stream);
    },
    admitServing({ peerId, trusted }) {
      if (servingByPeer.of(peerId) >= limits.maxStreamsPerPeer)
        throw busy(`at most ${limits.maxStreamsPerPeer} streams per peer`, "too_many_streams");
      if (serving >= limits.maxInboundStreams)
        throw busy(`this provider serves at most ${limits.maxInboundStreams} streams at once`);
      if (!trusted && strangersServing >= limits.maxStrangerStreams)
        throw busy(
          `this provider serves peers it does not know yet (no funded channel, no request served) on at most ${limits.maxStrangerStreams} streams at once`,
        );
      serving++;
      if (!trusted) strangersServing++;
      servingByPeer.add(peerId);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        serving--;
        if (!trusted) strangersServing--;
        servingByPeer.remove(peerId);
      };
    },
    counts: () => ({ pending: pending.size, serving, strangersServing }),
  };
}
