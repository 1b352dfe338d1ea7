/**
 * Polyfills that libp2p 3 needs on Node 20: it calls `Promise.withResolvers` (added in Node 22).
 * Import this module before anything that loads libp2p.
 */

/** What `Promise.withResolvers` returns: a promise with its settle functions. */
type PromiseWithResolversShape<T> = {
  promise: Promise<T>;
  resolve: (value: T | PromiseLike<T>) => void;
  reject: (reason?: unknown) => void;
};

const promiseConstructor = Promise as PromiseConstructor & {
  withResolvers?: <T>() => PromiseWithResolversShape<T>;
};

if (typeof promiseConstructor.withResolvers !== "function") {
  Object.defineProperty(Promise, "withResolvers", {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function withResolvers<T>(): PromiseWithResolversShape<T> {
      let resolve!: (value: T | PromiseLike<T>) => void;
      let reject!: (reason?: unknown) => void;
      const promise = new Promise<T>((resolvePromise, rejectPromise) => {
        resolve = resolvePromise;
        reject = rejectPromise;
      });
      return { promise, resolve, reject };
    },
  });
}

/** True once `Promise.withResolvers` exists (always, after this module ran). */
export const promiseWithResolversAvailable = typeof promiseConstructor.withResolvers === "function";
