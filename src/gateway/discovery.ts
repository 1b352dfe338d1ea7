/**
 * How a gateway finds providers with no address given: the staked providers' peer ids from the chain, their current
 * addresses from the DHT (peer routing), models no known provider serves from the DHT's provider records, and each
 * provider's latest announcement asked for as soon as it is connected (`/mycel/announcement/1.0.0`), checked exactly
 * as gossiped ones are. Before all that, the first peers (the bootstrap peers) are asked for every announcement they
 * hold (`/mycel/announcements/1.0.0`, snapshots.ts): the DHT only looks up the staked providers no snapshot carried.
 * Gossip keeps the table fresh afterwards.
 */
import type { Hex } from "viem";
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type { MycelNode } from "../p2p/index.ts";
import { announcementProtocolId, modelHashToBytes32 } from "../protocol/index.ts";
import { fetchAnnouncement } from "../protocols/index.ts";
import type { ProviderRegistration, ProviderTable } from "./providerTable.ts";
import { type StakedLookup, settleable, startSnapshots } from "./snapshots.ts";

/** How often the staked providers are listed again by default. */
export const defaultStakedProvidersRefreshMs = 30_000;
/** Announcement requests (each may first look the peer up on the DHT and dial it) in flight at once. */
const lookupConcurrency = 32;
/** Peers waiting for a lookup at most: beyond it new ones are dropped until the queue drains (gossip still finds them). */
const maxQueuedLookups = 2_048;
/** How long a peer-routing lookup of one staked provider may take. */
const findPeerTimeoutMs = 5_000;
/** How long a search of the DHT's provider records for one model may take. */
const findModelProvidersTimeoutMs = 3_000;
/** Providers taken from one model search at most. */
const modelProvidersLimit = 20;
/** A staked provider whose lookup failed is looked up again after this long, doubled on each failure up to the sweep. */
const firstRetryAfterMs = 1_000;
/** Retries at {@link firstRetryAfterMs} before the delay starts doubling. */
const steadyRetries = 5;
/** The first listing's DHT lookups wait this long at most for the first announcement snapshot (which may make them moot). */
const snapshotGraceMs = 2_000;

/** A provider with stake now, as the chain lists it. */
export type StakedProviderRecord = {
  address: Hex;
  peerId: string;
  registration: ProviderRegistration;
};

/** Where staked providers come from: the chain, read by the composition root. */
export type StakedProviderSource = {
  /** Every provider with stake now. Rejects when the chain cannot be read. */
  list: () => Promise<StakedProviderRecord[]>;
  refreshMs?: number;
};

/** What discovery needs of the node. */
export type DiscoveryNode = Pick<
  MycelNode,
  | "peerId"
  | "findPeer"
  | "findModelProviders"
  | "addPeerAddresses"
  | "onPeerIdentified"
  | "isConnected"
  | "openStream"
  | "handleProtocol"
  | "connectionKind"
>;

/** A running discovery. */
export type Discovery = {
  /** Lists the staked providers now and looks up the ones not known yet (also done periodically). */
  sweep(): Promise<void>;
  /** Searches the DHT for providers of a model (64 hex digits) and learns their announcements; never rejects. */
  findModel(modelHashHex: string): Promise<void>;
  stop(): void;
};

/** Parameters of {@link startDiscovery}. */
export type StartDiscoveryParameters = {
  node: DiscoveryNode;
  table: ProviderTable;
  /** Staked providers from the chain: when given, each is looked up on the DHT and asked for its announcement. */
  staked?: StakedProviderSource;
  logger: Logger;
};

/** A snapshot entry's registration, from the chain's first listing (awaited) and the latest since. */
function stakedLookup(
  listed: Promise<void>,
  registrations: () => Map<string, ProviderRegistration>,
): StakedLookup {
  return async (address, peerId) => {
    await listed;
    const registration = registrations().get(address.toLowerCase());
    return registration?.active && registration.peerId === peerId ? registration : null;
  };
}

/** Lists the staked providers, logging how many and how long it took (the chain read a starting gateway waits on). */
async function listLogged(staked: StakedProviderSource, logger: Logger) {
  const started = performance.now();
  const records = await staked.list();
  logger.debug("staked providers listed", {
    count: records.length,
    ms: Math.round(performance.now() - started),
  });
  return records;
}

/** Providers learnt before a listing (from gossip) are routable at once too, without a registration read of their own. */
function fillRegistrations(table: ProviderTable, listed: Map<string, ProviderRegistration>) {
  for (const entry of table.all()) {
    const registration = listed.get(entry.address.toLowerCase());
    if (entry.registration === undefined && registration) entry.registration = registration;
  }
}

/** The listed registration of the address an (unchecked) announcement claims, if any. */
function listedRegistrationOf(value: unknown, listed: Map<string, ProviderRegistration>) {
  const claimed = (value as { address?: unknown } | null)?.address;
  return typeof claimed === "string" ? listed.get(claimed.toLowerCase()) : undefined;
}

/** Starts discovery: announcements asked on every connection, staked providers listed now and periodically. */
export function startDiscovery(parameters: StartDiscoveryParameters): Discovery {
  const { node, table, staked, logger } = parameters;
  const stopController = new AbortController();
  const queue: { peerId: string; find: boolean }[] = [];
  const queued = new Set<string>();
  /** Staked providers whose lookup failed: how many times in a row, and the retry waiting. */
  const failures = new Map<string, { count: number; retry: NodeJS.Timeout | undefined }>();
  let running = 0;
  /** The registrations the last sweep read, by address: a provider found through it is routable at once. */
  let sweptRegistrations = new Map<string, ProviderRegistration>();
  /** The peer ids the last sweep listed: only those are retried. */
  let stakedPeerIds = new Set<string>();
  const retryCeilingMs = staked?.refreshMs ?? defaultStakedProvidersRefreshMs;
  /** Settles once the chain was listed a first time (or could not be). */
  const firstListed = settleable();
  const snapshots = startSnapshots({
    node,
    table,
    logger,
    signal: stopController.signal,
    stakedAs: staked && stakedLookup(firstListed.promise, () => sweptRegistrations),
  });
  // The first listing's lookups wait for the first snapshot, briefly: most of them it makes moot.
  let snapshotGrace: Promise<void> | undefined = snapshots.firstTakenWithin(snapshotGraceMs);

  const isFresh = (peerId: string) => {
    const known = table.get(peerId);
    return known !== undefined && known.announcement.expires_at > Date.now();
  };

  /** Asks a peer for its announcement (looking it up on the DHT first when `find`) and learns from it. */
  const lookUp = async (peerId: string, find: boolean) => {
    const { signal } = stopController;
    // Learnt meanwhile (a snapshot, gossip): nothing to look up.
    if (find && isFresh(peerId)) return;
    if (find && !node.isConnected(peerId)) {
      const addresses = await node.findPeer(peerId, { timeoutMs: findPeerTimeoutMs, signal });
      if (addresses.length === 0) throw new Error("not found on the DHT");
    }
    const value = await fetchAnnouncement({ node, logger }, { peerId, signal });
    // The chain was read for it moments ago: routable now, with no registration read of its own.
    await table.verifyAndAccept(value, peerId, listedRegistrationOf(value, sweptRegistrations));
  };

  const drain = () => {
    while (running < lookupConcurrency && queue.length > 0 && !stopController.signal.aborted) {
      const next = queue.shift();
      if (!next) break;
      running++;
      lookUp(next.peerId, next.find)
        .then(() => failures.delete(next.peerId))
        .catch((error) => {
          if (stopController.signal.aborted) return;
          logger.debug("provider lookup failed", { peer: next.peerId, error: describeError(error) });
          if (next.find) retryLater(next.peerId);
        })
        .finally(() => {
          running--;
          queued.delete(next.peerId);
          drain();
        });
    }
  };

  /** A staked provider not found (the DHT still converging, the peer busy): asked again soon, then less often. */
  const retryLater = (peerId: string) => {
    const failure = failures.get(peerId) ?? { count: 0, retry: undefined };
    failure.count++;
    failures.set(peerId, failure);
    // Every second for the first few tries (a gateway just started: its DHT routing table is still filling), then
    // less and less often.
    const delayMs = Math.min(
      firstRetryAfterMs * 2 ** Math.max(0, failure.count - steadyRetries),
      retryCeilingMs,
    );
    clearTimeout(failure.retry);
    failure.retry = setTimeout(() => {
      failure.retry = undefined;
      if (stakedPeerIds.has(peerId) && !isFresh(peerId)) enqueue(peerId, true);
    }, delayMs);
    failure.retry.unref();
  };

  const enqueue = (peerId: string, find: boolean) => {
    if (peerId === node.peerId || queued.has(peerId) || stopController.signal.aborted) return;
    if (queued.size >= maxQueuedLookups) return;
    // A retry is already due: the sweep does not add another.
    if (find && failures.get(peerId)?.retry !== undefined) return;
    queued.add(peerId);
    queue.push({ peerId, find });
    drain();
  };

  // Every peer that connects and serves the announcement protocol is asked at once (gossip's next round may be seconds away).
  const unsubscribeIdentify = node.onPeerIdentified((peer) => {
    if (peer.protocols.includes(announcementProtocolId) && !isFresh(peer.peerId)) enqueue(peer.peerId, false);
  });

  const findModel = async (modelHashHex: string) => {
    try {
      const found = await node.findModelProviders(modelHashHex, {
        timeoutMs: findModelProvidersTimeoutMs,
        limit: modelProvidersLimit,
        signal: stopController.signal,
      });
      await Promise.allSettled(
        found
          .filter((provider) => !isFresh(provider.peerId))
          .map(async (provider) => {
            await node.addPeerAddresses(provider.peerId, provider.multiaddrs);
            await lookUp(provider.peerId, provider.multiaddrs.length === 0);
          }),
      );
      logger.debug("model providers searched on the DHT", { model: modelHashHex, found: found.length });
    } catch (error) {
      if (!stopController.signal.aborted)
        logger.debug("model provider search failed", { model: modelHashHex, error: describeError(error) });
    }
  };

  let sweeping: Promise<void> | undefined;
  const sweep = () => {
    if (!staked) return Promise.resolve();
    sweeping ??= (async () => {
      try {
        const records = await listLogged(staked, logger);
        stakedPeerIds = new Set(records.map((record) => record.peerId));
        sweptRegistrations = new Map(
          records.map((record) => [record.address.toLowerCase(), record.registration]),
        );
        firstListed.settle();
        fillRegistrations(table, sweptRegistrations);
        if (snapshotGrace) await snapshotGrace;
        snapshotGrace = undefined;
        for (const record of records) if (!isFresh(record.peerId)) enqueue(record.peerId, true);
        // Models staked providers offer that no known provider serves: their DHT records may name providers
        // that are not found by peer id (a moved provider, one staked under another id).
        const offered = new Set(
          records.flatMap((record) =>
            record.registration.offers.map((offer) => offer.modelHash.toLowerCase()),
          ),
        );
        for (const modelHash of offered)
          if (table.serving(modelHashToBytes32(modelHash)).length === 0) void findModel(modelHash);
      } catch (error) {
        if (!stopController.signal.aborted)
          logger.warn("cannot list the staked providers", { error: describeError(error) });
      } finally {
        firstListed.settle();
      }
    })().finally(() => {
      sweeping = undefined;
    });
    return sweeping;
  };
  void sweep();
  const timer = staked
    ? setInterval(() => void sweep(), staked.refreshMs ?? defaultStakedProvidersRefreshMs)
    : undefined;
  timer?.unref();

  return {
    sweep,
    findModel,
    stop() {
      clearInterval(timer);
      stopController.abort(new Error("the gateway is stopping"));
      unsubscribeIdentify();
      snapshots.stop();
      queue.length = 0;
      queued.clear();
      for (const failure of failures.values()) clearTimeout(failure.retry);
      failures.clear();
    },
  };
}
