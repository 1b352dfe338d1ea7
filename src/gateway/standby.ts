/**
 * The standby: while a segment streams, the provider the request would fail over to is made ready, so that a failover
 * waits for nothing that could be done beforehand: a connection (dial, encryption handshake, muxer: seconds on a
 * busy machine) and, for a paid provider, a funded payment channel (opened on chain the first time). Nothing is sent
 * to the standby and nothing is paid: a channel holds a deposit within the gateway's budget, returned when it closes.
 */
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type { KnownProvider } from "./providerTable.ts";

/** How long a provider that could not be made ready is not tried again (a failover still asks it). */
export const standbyRetryMs = 10_000;

/** Parameters of {@link createStandby}. */
export type CreateStandbyParameters = {
  /** Connects to a peer at its known addresses; resolves at once when connected. */
  connect: (peerId: string) => Promise<void>;
  logger: Logger;
};

/** Makes providers ready to take over a request (see {@link createStandby}). */
export type Standby = {
  /**
   * Connects to `provider` and runs `fund` (its payment channel, for a paid provider), both in the background.
   * Resolves when both settled; never rejects. A provider being made ready, or that failed in the last
   * {@link standbyRetryMs}, is left alone.
   */
  prepare(provider: KnownProvider, fund?: () => Promise<unknown>): Promise<void>;
};

/** Creates the gateway's standby preparation. */
export function createStandby(parameters: CreateStandbyParameters): Standby {
  const { logger } = parameters;
  const preparing = new Set<string>();
  const failedAt = new Map<string, number>();
  return {
    async prepare(provider, fund) {
      const key = provider.peerId;
      if (preparing.has(key) || Date.now() - (failedAt.get(key) ?? 0) < standbyRetryMs) return;
      preparing.add(key);
      try {
        const steps = await Promise.allSettled([parameters.connect(key), ...(fund ? [fund()] : [])]);
        const failure = steps.find((step) => step.status === "rejected");
        if (failure) {
          // Bounded: entries past their wait are dropped before one more is kept.
          for (const [peer, at] of failedAt) if (Date.now() - at >= standbyRetryMs) failedAt.delete(peer);
          failedAt.set(key, Date.now());
          logger.debug("could not make the next provider ready (a failover to it will try again)", {
            peer: key,
            error: describeError(failure.reason).split("\n")[0],
          });
        } else failedAt.delete(key);
      } finally {
        preparing.delete(key);
      }
    },
  };
}
