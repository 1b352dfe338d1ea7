/** A fair (FIFO) pool of inference slots with a bounded wait queue. */
import { QueueFullError } from "../errors/index.ts";

/** A held slot; call `release` exactly once. */
export type SlotLease<T> = { slot: T; release: () => void };

/** Parameters of {@link createSlotPool}. */
export type CreateSlotPoolParameters<T> = {
  slots: readonly T[];
  /** How many requests may wait for a slot; one more is refused with {@link QueueFullError}. */
  maxWaiting: number;
  /** Retry-After hint given when the queue is full. */
  retryAfterSeconds?: number;
};

/** A pool of slots handed out in arrival order. */
export type SlotPool<T> = {
  acquire(options?: { signal?: AbortSignal }): Promise<SlotLease<T>>;
  stats(): { total: number; busy: number; waiting: number; maxWaiting: number };
};

/** Creates a {@link SlotPool}. */
export function createSlotPool<T>(parameters: CreateSlotPoolParameters<T>): SlotPool<T> {
  const free = [...parameters.slots];
  const waiters: Array<{
    resolve: (lease: SlotLease<T>) => void;
    reject: (error: unknown) => void;
    signal?: AbortSignal;
    onAbort?: () => void;
  }> = [];

  const lease = (slot: T): SlotLease<T> => {
    let released = false;
    return {
      slot,
      release: () => {
        if (released) return;
        released = true;
        const next = waiters.shift();
        if (next) {
          if (next.onAbort) next.signal?.removeEventListener("abort", next.onAbort);
          next.resolve(lease(slot));
        } else free.push(slot);
      },
    };
  };

  return {
    acquire(options = {}) {
      if (options.signal?.aborted) return Promise.reject(options.signal.reason);
      const slot = free.shift();
      if (slot !== undefined) return Promise.resolve(lease(slot));
      if (waiters.length >= parameters.maxWaiting) {
        return Promise.reject(
          new QueueFullError({
            queueLimit: parameters.maxWaiting,
            retryAfterSeconds: parameters.retryAfterSeconds ?? 1,
          }),
        );
      }
      return new Promise((resolve, reject) => {
        const waiter: (typeof waiters)[number] = { resolve, reject, signal: options.signal };
        if (options.signal) {
          waiter.onAbort = () => {
            const index = waiters.indexOf(waiter);
            if (index !== -1) waiters.splice(index, 1);
            reject(options.signal?.reason);
          };
          options.signal.addEventListener("abort", waiter.onAbort, { once: true });
        }
        waiters.push(waiter);
      });
    },
    stats: () => ({
      total: parameters.slots.length,
      busy: parameters.slots.length - free.length,
      waiting: waiters.length,
      maxWaiting: parameters.maxWaiting,
    }),
  };
}
