/** What the gateway did or learned, told to whoever listens (the explorer's live views). */
import type { Hex } from "viem";
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type { StoredAuditVerdict } from "../store/index.ts";

/** Something the gateway did or learned. */
export type GatewayActivity =
  | { type: "tokens"; provider: string; count: number }
  | { type: "completed"; requestId: Hex }
  | { type: "receipt"; requestId: Hex; segment: number }
  | { type: "audit"; requestId: Hex; segment: number; verdict: StoredAuditVerdict };

/** Listeners of the gateway's activity; one that throws is logged and the others still hear. */
export type ActivityFeed = {
  emit(activity: GatewayActivity): void;
  /** Returns the unsubscribe function. */
  subscribe(listener: (activity: GatewayActivity) => void): () => void;
  clear(): void;
};

/** Creates an activity feed. */
export function createActivityFeed(parameters: { logger: Logger }): ActivityFeed {
  const listeners = new Set<(activity: GatewayActivity) => void>();
  return {
    emit(activity) {
      for (const listener of listeners) {
        try {
          listener(activity);
        } catch (error) {
          parameters.logger.warn("activity listener failed", { error: describeError(error) });
        }
      }
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    clear: () => listeners.clear(),
  };
}
