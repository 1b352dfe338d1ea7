/** One audit at a time (the auditor's engine is one sequence), with a bounded number waiting. */

/** A serial queue of audits. */
export type AuditQueue = {
  /** Runs `work` after everything queued before it. */
  enqueue<T>(work: () => Promise<T>): Promise<T>;
  /** Audits waiting or running. */
  waiting(): number;
  /** Whether another sample would exceed the queue's bound. */
  full(): boolean;
  /** Resolves once nothing is waiting or running. */
  idle(): Promise<void>;
};

/** Creates a queue that holds at most `maxQueue` audits. */
export function createAuditQueue(parameters: { maxQueue: number }): AuditQueue {
  let chain: Promise<unknown> = Promise.resolve();
  let waiting = 0;
  return {
    enqueue(work) {
      waiting++;
      const run = chain.then(work).finally(() => {
        waiting--;
      });
      chain = run.catch(() => undefined);
      return run;
    },
    waiting: () => waiting,
    full: () => waiting >= parameters.maxQueue,
    async idle() {
      while (waiting > 0) await chain;
    },
  };
}
