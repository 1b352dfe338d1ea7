/**
 * On-chain registrations of every known provider (ProviderRegistry: active stake, peer id, offers), read in the
 * background: each provider once when it is first seen, then all of them periodically, so that routing checks stake
 * and prices without a chain read on the request path.
 */
import type { Hex } from "viem";
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type { KnownProvider, ProviderRegistration, ProviderTable } from "./providerTable.ts";

/** How often registrations are read again by default. */
export const defaultRegistrationRefreshMs = 10_000;
/** Registrations read at once during a refresh (one after another, 100 providers took 100 round trips). */
const refreshConcurrency = 16;

/** Where registrations come from: the chain, read by the composition root. */
export type RegistrationSource = {
  /** A provider's registration, or undefined when it is not registered. Rejects when the chain cannot be read. */
  read: (address: Hex) => Promise<ProviderRegistration | undefined>;
  refreshMs?: number;
};

/** A running registration watch. */
export type RegistrationWatch = {
  /** Reads every known provider's registration now (also done periodically). */
  refresh(): Promise<void>;
  /** Resolves once the providers seen so far have each been read once (or after `timeoutMs`); never rejects. */
  firstReads(timeoutMs: number): Promise<void>;
  stop(): void;
};

/** Starts reading registrations: new providers at once, all of them every `refreshMs`. */
export function watchRegistrations(parameters: {
  table: ProviderTable;
  source: RegistrationSource;
  logger: Logger;
}): RegistrationWatch {
  const { table, source, logger } = parameters;
  const firstReads = new Map<string, Promise<void>>();
  const read = async (entry: KnownProvider) => {
    try {
      const registration = (await source.read(entry.address as Hex)) ?? null;
      if (registration === null && entry.registration !== null)
        logger.info("provider not registered on chain", { peer: entry.peerId, address: entry.address });
      entry.registration = registration;
    } catch (error) {
      // The last registration read stays (an unread provider stays unroutable) until the chain answers again.
      logger.debug("registration not read", { provider: entry.address, error: describeError(error) });
    }
  };
  // First reads run `refreshConcurrency` at a time; one whose provider got its registration meanwhile (a gateway's
  // discovery lists every staked provider at start) is skipped, so a hundred providers heard at once cost no burst of
  // hundreds of chain reads.
  let firstReadsRunning = 0;
  const firstReadTurns: (() => void)[] = [];
  const turn = async () => {
    if (firstReadsRunning >= refreshConcurrency)
      await new Promise<void>((resolve) => firstReadTurns.push(resolve));
    firstReadsRunning++;
  };
  const endTurn = () => {
    firstReadsRunning--;
    firstReadTurns.shift()?.();
  };
  const readFirst = (entry: KnownProvider) => {
    if (entry.registration !== undefined || firstReads.has(entry.peerId)) return;
    const pending = (async () => {
      await turn();
      try {
        if (entry.registration === undefined) await read(entry);
      } finally {
        endTurn();
      }
    })().finally(() => firstReads.delete(entry.peerId));
    firstReads.set(entry.peerId, pending);
  };
  const unsubscribe = table.onDiscovered(readFirst);
  for (const entry of table.all()) readFirst(entry);
  let refreshing: Promise<void> | undefined;
  const refresh = () => {
    refreshing ??= (async () => {
      const entries = table.all();
      for (let start = 0; start < entries.length; start += refreshConcurrency)
        await Promise.all(entries.slice(start, start + refreshConcurrency).map(read));
    })().finally(() => {
      refreshing = undefined;
    });
    return refreshing;
  };
  const timer = setInterval(() => void refresh(), source.refreshMs ?? defaultRegistrationRefreshMs);
  timer.unref();
  return {
    refresh,
    async firstReads(timeoutMs) {
      if (firstReads.size === 0) return;
      let timeout: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...firstReads.values()]),
        new Promise((resolve) => {
          timeout = setTimeout(resolve, timeoutMs);
        }),
      ]);
      clearTimeout(timeout);
    },
    stop() {
      clearInterval(timer);
      unsubscribe();
    },
  };
}
