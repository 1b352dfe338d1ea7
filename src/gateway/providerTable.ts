/** What a gateway knows of providers: verified announcements plus its own measurements of each. */

import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type { MycelNode } from "../p2p/index.ts";
import {
  type Announcement,
  announcementTopic,
  canonicalJson,
  verifyAnnouncement,
} from "../protocol/index.ts";

/** A repeat of a held announcement is not checked while the held one has more validity left than this. */
const repeatCheckedWithinMs = 10_000;

/** An announcement's content without its validity window and signature (what a provider's repeats share), as text. */
function contentOf(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { issued_at, expires_at, signature, address, ...content } = value as Record<string, unknown>;
  try {
    return canonicalJson({
      ...content,
      address: typeof address === "string" ? address.toLowerCase() : address,
    });
  } catch {
    return undefined;
  }
}

/**
 * Whether `value` says nothing the held announcement does not (a provider repeats its announcement every few seconds
 * with new times), while that one is still fresh: then it is not checked (one signature recovery saved per repeat;
 * `value` is not taken either, so a forged one changes nothing). A changed one (capacity, addresses) is checked at once.
 */
function repeatsHeld(held: Announcement | undefined, value: unknown, now: number): boolean {
  return (
    held !== undefined &&
    held.expires_at - now > repeatCheckedWithinMs &&
    contentOf(held) === contentOf(value)
  );
}

/** A provider's record in ProviderRegistry, as routing checks it. */
export type ProviderRegistration = {
  /** Registered with at least the minimum stake. */
  active: boolean;
  peerId: string;
  offers: readonly { modelHash: string; inputPricePerMillion: bigint; outputPricePerMillion: bigint }[];
};

/** A provider as the gateway sees it. */
export type KnownProvider = {
  announcement: Announcement;
  peerId: string;
  address: string;
  /** Smoothed time to first token, in ms (undefined until measured). */
  latencyMs: number | undefined;
  /** Smoothed output tokens per second while streaming (undefined until measured). */
  throughputTps: number | undefined;
  successes: number;
  failures: number;
  /** Requests this gateway has open on it now. */
  inFlight: number;
  /** Not routed to before this time (temporary ban after failures). */
  bannedUntil: number;
  /** Said it is full: not sent more before this time (not a failure, no ban). */
  busyUntil: number;
  /** Busy refusals since it last served a request: each rest is longer (a provider always "busy" is left alone). */
  busyStreak: number;
  /** Caught cheating (a forged or mismatched receipt): never routed to again. */
  untrusted: boolean;
  /** On-chain reputation in [0, 1] (EpochConsensus); undefined until validators have scored the provider. */
  reputation: number | undefined;
  /** Its on-chain registration as last read: undefined until read, null when it is not registered. */
  registration?: ProviderRegistration | null;
};

/** The table of providers a gateway routes among. */
export type ProviderTable = {
  all(): KnownProvider[];
  get(peerId: string): KnownProvider | undefined;
  /** Providers with an unexpired announcement that serve this model hash (0x bytes32). */
  serving(modelHash: string, now?: number): KnownProvider[];
  /**
   * Learns from a verified announcement (also used for providers found another way). `registration`, when the chain
   * was read for the provider moments ago, is its registration if it has none yet (no read of its own is then needed).
   */
  accept(announcement: Announcement, registration?: ProviderRegistration): KnownProvider;
  /**
   * Checks an announcement received from `from` (the authenticated peer that must be its author, on a stream;
   * undefined for one heard on gossip or relayed in a snapshot) exactly as gossiped ones are checked, and learns from
   * it (with `registration`, as accept does); rejects with ProtocolError when it fails a check.
   */
  verifyAndAccept(
    value: unknown,
    from: string | undefined,
    registration?: ProviderRegistration,
  ): Promise<KnownProvider>;
  /** Calls `listener` with each provider seen for the first time; returns the unsubscribe function. */
  onDiscovered(listener: (provider: KnownProvider) => void): () => void;
  stop(): void;
};

/** Subscribes to announcements and keeps the verified, unexpired ones. */
export function createProviderTable(parameters: {
  node: Pick<MycelNode, "subscribe" | "addPeerAddresses">;
  logger: Logger;
  /** Addresses caught cheating before (remembered across restarts): never trusted again. */
  untrustedAddresses?: ReadonlySet<string>;
}): ProviderTable {
  const { node, logger } = parameters;
  const untrustedAddresses = parameters.untrustedAddresses ?? new Set<string>();
  const providers = new Map<string, KnownProvider>();
  const discoveryListeners = new Set<(provider: KnownProvider) => void>();

  function accept(announcement: Announcement, registration?: ProviderRegistration): KnownProvider {
    const existing = providers.get(announcement.peer_id);
    if (existing) {
      // A registration read moments ago serves one not read yet, whatever the announcement's age.
      if (existing.registration === undefined && registration) existing.registration = registration;
      if (announcement.issued_at < existing.announcement.issued_at) return existing;
      const moved = announcement.multiaddrs.join(" ") !== existing.announcement.multiaddrs.join(" ");
      existing.announcement = announcement;
      if (moved) {
        // New addresses (a relay reservation made, an address confirmed): dial them, and a provider that could not
        // be reached at its old ones gets another chance at once.
        // Replaced, not merged: an old private address would otherwise be dialled first, in vain, until it times out.
        node
          .addPeerAddresses(announcement.peer_id, announcement.multiaddrs, { replace: true })
          .catch(() => undefined);
        existing.bannedUntil = 0;
        logger.debug("provider addresses changed", {
          peer: announcement.peer_id,
          multiaddrs: announcement.multiaddrs,
        });
      }
      return existing;
    }
    const entry: KnownProvider = {
      announcement,
      peerId: announcement.peer_id,
      address: announcement.address,
      latencyMs: undefined,
      throughputTps: undefined,
      successes: 0,
      failures: 0,
      inFlight: 0,
      bannedUntil: 0,
      busyUntil: 0,
      busyStreak: 0,
      untrusted: untrustedAddresses.has(announcement.address),
      reputation: undefined,
      ...(registration ? { registration } : {}),
    };
    providers.set(announcement.peer_id, entry);
    for (const listener of discoveryListeners) listener(entry);
    node.addPeerAddresses(announcement.peer_id, announcement.multiaddrs).catch(() => undefined);
    logger.info("provider discovered", {
      peer: announcement.peer_id,
      address: announcement.address,
      models: announcement.models.map((model) => model.name).join(","),
    });
    return entry;
  }

  const verifyAndAccept = async (
    value: unknown,
    from: string | undefined,
    registration?: ProviderRegistration,
  ) => accept(await verifyAnnouncement({ value, from }), registration);

  const unsubscribe = node.subscribe(announcementTopic, (message) => {
    let value: unknown;
    try {
      value = JSON.parse(new TextDecoder().decode(message.data));
    } catch {
      logger.debug("announcement is not JSON", { relayedBy: message.relayedBy });
      return;
    }
    const claimed = (value as { peer_id?: unknown } | null)?.peer_id;
    if (typeof claimed === "string" && repeatsHeld(providers.get(claimed)?.announcement, value, Date.now()))
      return;
    // Gossip names no author (unsigned by libp2p): the announcement's own signatures bind it to its peer id.
    verifyAndAccept(value, undefined).catch((error) =>
      logger.debug("announcement refused", { relayedBy: message.relayedBy, error: describeError(error) }),
    );
  });

  return {
    all: () => [...providers.values()],
    get: (peerId) => providers.get(peerId),
    serving(modelHash, now = Date.now()) {
      return [...providers.values()].filter(
        (entry) =>
          entry.announcement.expires_at > now &&
          entry.announcement.models.some((model) => model.hash === modelHash),
      );
    },
    accept,
    verifyAndAccept,
    onDiscovered(listener) {
      discoveryListeners.add(listener);
      return () => discoveryListeners.delete(listener);
    },
    stop: unsubscribe,
  };
}
