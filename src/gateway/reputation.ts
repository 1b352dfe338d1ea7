/** On-chain reputation of every known provider, read in the background so that routing can leave cheaters out. */
import type { Hex } from "viem";
import { roleDefaults } from "../config/index.ts";
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type { ProviderTable } from "./providerTable.ts";

/** The on-chain reputation below which a gateway stops routing to a provider, by default. */
export const defaultMinimumReputation: number = roleDefaults.minimumReputation;
/** How often reputations are read by default. */
export const defaultReputationRefreshMs = 30_000;

/** Where reputation comes from, and the least a provider needs to be routed to. */
export type ReputationSource = {
  /** A provider's reputation in [0, 1], or undefined when validators have not scored it yet. */
  read: (address: Hex) => Promise<number | undefined>;
  minimum: number;
  refreshMs?: number;
};

/** A running reputation refresh. */
export type ReputationWatch = {
  /** Reads every known provider's reputation now. */
  refresh(): Promise<void>;
  stop(): void;
};

/** Starts reading reputations every `refreshMs`. */
export function watchReputation(parameters: {
  table: ProviderTable;
  source: ReputationSource;
  logger: Logger;
}): ReputationWatch {
  const { table, source, logger } = parameters;
  const refresh = async () => {
    for (const entry of table.all()) {
      try {
        const value = await source.read(entry.address as Hex);
        if (value !== undefined) entry.reputation = value;
      } catch (error) {
        logger.debug("reputation not read", { provider: entry.address, error: describeError(error) });
      }
    }
  };
  const timer = setInterval(() => void refresh(), source.refreshMs ?? defaultReputationRefreshMs);
  timer.unref();
  return { refresh, stop: () => clearInterval(timer) };
}
