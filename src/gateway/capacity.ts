/**
 * The gateway's waiting line: when every provider of a model is at capacity (as many requests of this gateway as
 * it announced it takes, or resting after a `busy` refusal), a request waits here in arrival order, bounded in
 * length and time, and goes as soon as a provider has room. Only a full line or a passed deadline is refused (503
 * with Retry-After), like `mycel serve`'s queue.
 */
import { roleDefaults } from "../config/index.ts";
import { ServiceUnavailableError } from "../errors/index.ts";
import { streamLimits } from "../protocol/index.ts";
import type { KnownProvider } from "./providerTable.ts";

/** How often waiting requests look again for room that no release announced (a rest ending, a new provider). */
const recheckMs = 100;
/** The shortest and longest rest after a `busy` refusal, whatever the provider asked. */
export const busyRestMs = { min: 250, max: 30_000 } as const;

/** How many requests of this gateway a provider takes at once: its announced slots and queue, within its stream limit. */
export function capacityOf(provider: KnownProvider): number {
  const { parallelism, max_queue } = provider.announcement.capacity;
  return Math.max(1, Math.min(parallelism + max_queue, streamLimits.maxStreamsPerPeer));
}

/** Whether a provider can take one more request of this gateway now. */
export function hasRoom(provider: KnownProvider, now = Date.now()): boolean {
  return provider.inFlight < capacityOf(provider) && provider.busyUntil <= now;
}

/**
 * A provider refused for being full: it rests for what it asked, at least a rest that doubles with each refusal
 * in a row (so one that is always "busy" costs a request little), within {@link busyRestMs}. Not a failure: no
 * ban, no count against it.
 */
export function restBusyProvider(provider: KnownProvider, retryAfterMs: number | undefined): void {
  const floor = busyRestMs.min * 2 ** Math.min(provider.busyStreak, 16);
  const rest = Math.min(Math.max(retryAfterMs ?? 0, floor), busyRestMs.max);
  provider.busyStreak++;
  provider.busyUntil = Date.now() + rest;
}

/**
 * What a request's pick found: a provider with room, "full" (usable providers exist but none has room now: worth
 * waiting), or undefined (none is left: waiting would not help).
 */
export type CapacityPick = KnownProvider | "full" | undefined;

/** Parameters of {@link createCapacityQueue}. */
export type CreateCapacityQueueParameters = {
  /** How many requests may wait; one more is refused at once (default roleDefaults.gatewayQueueLength). */
  maxWaiting?: number;
  /** The longest a request may wait from its arrival (default roleDefaults.gatewayQueueTimeoutMs). */
  timeoutMs?: number;
};

/** The waiting line (see {@link createCapacityQueue}). */
export type CapacityQueue = {
  /**
   * A provider for the request, its `inFlight` already counted: at once when one has room and nobody waits ahead,
   * else in arrival order once one has room. Undefined when none is left or the request was cancelled. Rejects with
   * a 503 ServiceUnavailableError (Retry-After) when the line is full or the request's deadline passes.
   */
  take(parameters: {
    pick: () => CapacityPick;
    /** When the request arrived (ms since the epoch): its deadline runs from there. */
    arrivedAt: number;
    signal: AbortSignal;
    /** Names the model in the refusal. */
    model: string;
  }): Promise<KnownProvider | undefined>;
  /** Room may have freed (a request ended): the waiting requests look again, oldest first. */
  release(): void;
  stats(): { waiting: number; maxWaiting: number; timeoutMs: number };
};

type Waiter = {
  pick: () => CapacityPick;
  resolve: (provider: KnownProvider | undefined) => void;
  reject: (error: unknown) => void;
  timer: NodeJS.Timeout;
  signal: AbortSignal;
  onAbort: () => void;
};

/** Creates the gateway's bounded FIFO of requests waiting for a provider with room. */
export function createCapacityQueue(parameters: CreateCapacityQueueParameters = {}): CapacityQueue {
  const maxWaiting = parameters.maxWaiting ?? roleDefaults.gatewayQueueLength;
  const timeoutMs = parameters.timeoutMs ?? roleDefaults.gatewayQueueTimeoutMs;
  const waiters: Waiter[] = [];
  let ticker: NodeJS.Timeout | undefined;

  function leave(waiter: Waiter) {
    const index = waiters.indexOf(waiter);
    if (index !== -1) waiters.splice(index, 1);
    clearTimeout(waiter.timer);
    waiter.signal.removeEventListener("abort", waiter.onAbort);
    if (waiters.length === 0 && ticker) {
      clearInterval(ticker);
      ticker = undefined;
    }
  }

  /** Hands room to the waiting requests in arrival order (each pick counts its provider at once). */
  function dispatch() {
    for (const waiter of [...waiters]) {
      let picked: CapacityPick;
      try {
        picked = waiter.pick();
      } catch (error) {
        // The request cannot be answered at all (a payment it cannot make): it is told at once.
        leave(waiter);
        waiter.reject(error);
        continue;
      }
      if (picked === "full") continue;
      leave(waiter);
      if (picked) picked.inFlight++;
      waiter.resolve(picked);
    }
  }

  const refusal = (message: string, code: string) =>
    new ServiceUnavailableError(message, {
      code,
      hint: "retry after the time in Retry-After, or start more providers of the model (or raise the gateway's --queue-length / --queue-timeout)",
      retryAfterSeconds: 1,
    });

  return {
    take(input) {
      if (input.signal.aborted) return Promise.resolve(undefined);
      if (waiters.length === 0) {
        const picked = input.pick();
        if (picked !== "full") {
          if (picked) picked.inFlight++;
          return Promise.resolve(picked);
        }
      }
      if (waiters.length >= maxWaiting)
        return Promise.reject(
          refusal(
            `every provider of model "${input.model}" is at capacity and ${maxWaiting} requests already wait`,
            "queue_full",
          ),
        );
      const remainingMs = input.arrivedAt + timeoutMs - Date.now();
      return new Promise((resolve, reject) => {
        const waiter: Waiter = {
          pick: input.pick,
          resolve,
          reject,
          signal: input.signal,
          timer: setTimeout(
            () => {
              leave(waiter);
              reject(
                refusal(
                  `every provider of model "${input.model}" stayed at capacity for ${timeoutMs} ms`,
                  "queue_timeout",
                ),
              );
            },
            Math.max(0, remainingMs),
          ),
          onAbort: () => {
            leave(waiter);
            resolve(undefined);
          },
        };
        input.signal.addEventListener("abort", waiter.onAbort, { once: true });
        waiters.push(waiter);
        ticker ??= setInterval(dispatch, recheckMs);
        ticker.unref();
        // Those ahead go first: a newcomer takes room only that they cannot use.
        dispatch();
      });
    },
    release: dispatch,
    stats: () => ({ waiting: waiters.length, maxWaiting, timeoutMs }),
  };
}
