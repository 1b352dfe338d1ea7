/**
 * A starting gateway's fastest way to its providers: it asks its first peers that serve `/mycel/announcements/1.0.0`
 * (its bootstrap peers, usually) for every announcement they hold, and checks each entry exactly as a gossiped
 * announcement (provider table's verifyAndAccept), after dropping, unchecked, those the chain does not stake under
 * that peer id. Its own verified announcements it serves to others the same way.
 */
import { describeError, MycelError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type { MycelNode } from "../p2p/index.ts";
import { announcementSnapshotProtocolId } from "../protocol/index.ts";
import { fetchAnnouncementSnapshot, serveAnnouncementSnapshot } from "../protocols/index.ts";
import type { ProviderRegistration, ProviderTable } from "./providerTable.ts";

/** Peers asked for a snapshot per gateway start at most (each at most once): the first to connect. */
export const maxSnapshotPeers = 8;

/** Codes of an entry that no honest server could hold (it verifies what it keeps): the server is logged. */
const forgedCodes = new Set(["malformed_announcement", "bad_signature", "bad_peer_binding", "peer_mismatch"]);

/** What the chain says of an address under a peer id: its registration when staked under exactly that peer id, else null. */
export type StakedLookup = (address: string, peerId: string) => Promise<ProviderRegistration | null>;

/** A promise settled from outside, once. */
export function settleable(): { promise: Promise<void>; settle: () => void } {
  let settle = () => {};
  const promise = new Promise<void>((resolve) => {
    settle = resolve;
  });
  return { promise, settle };
}

/** Parameters of {@link startSnapshots}. */
export type StartSnapshotsParameters = {
  node: Pick<MycelNode, "peerId" | "onPeerIdentified" | "openStream" | "handleProtocol" | "connectionKind">;
  table: ProviderTable;
  /** Absent for a gateway that reads no chain: every verified entry is kept, as gossip's are. */
  stakedAs: StakedLookup | undefined;
  signal: AbortSignal;
  logger: Logger;
};

/** What one snapshot gave. */
export type SnapshotOutcome = {
  accepted: number;
  known: number;
  unstaked: number;
  refused: number;
  forged: number;
  beyondCap: number;
};

/** Snapshots asked for and served by a gateway. */
export type Snapshots = {
  /** Resolves once the first snapshot has been taken in (or could not be had), or after `ms`, whichever comes first. */
  firstTakenWithin(ms: number): Promise<void>;
  stop(): void;
};

/** Serves the table's announcements as snapshots and asks the first peers that serve them for theirs. */
export function startSnapshots(parameters: StartSnapshotsParameters): Snapshots {
  const { node, table, logger, signal } = parameters;
  const asked = new Set<string>();
  const firstTaken = settleable();
  // One snapshot checked at a time: an entry a second snapshot repeats is then skipped as known, not checked twice.
  let intake = Promise.resolve();

  const takeIn = async (values: unknown[], beyondCap: number): Promise<SnapshotOutcome> => {
    const outcome: SnapshotOutcome = { accepted: 0, known: 0, unstaked: 0, refused: 0, forged: 0, beyondCap };
    for (const value of values) {
      if (signal.aborted) break;
      const claimed = value as { peer_id?: unknown; address?: unknown; issued_at?: unknown };
      if (typeof claimed.peer_id !== "string" || typeof claimed.address !== "string") {
        outcome.forged++;
        continue;
      }
      const known = table.get(claimed.peer_id);
      if (
        known &&
        known.announcement.expires_at > Date.now() &&
        known.announcement.issued_at >= Number(claimed.issued_at)
      ) {
        outcome.known++;
        continue;
      }
      // Unstaked entries cost no signature check: a peer cannot make us verify more than the chain stakes.
      const registration =
        parameters.stakedAs && (await parameters.stakedAs(claimed.address, claimed.peer_id));
      if (registration === null) {
        outcome.unstaked++;
        continue;
      }
      try {
        // The chain was read for it moments ago: routable now, with no registration read of its own.
        await table.verifyAndAccept(value, undefined, registration || undefined);
        outcome.accepted++;
      } catch (error) {
        if (error instanceof MycelError && forgedCodes.has(error.code)) outcome.forged++;
        else outcome.refused++;
      }
    }
    return outcome;
  };

  const ask = async (peerId: string) => {
    try {
      const askedAt = performance.now();
      const snapshot = await fetchAnnouncementSnapshot({ node, logger }, { peerId, signal });
      const received = performance.now();
      const taking = intake.then(() => takeIn(snapshot.announcements, snapshot.beyondCap));
      intake = taking.then(
        () => undefined,
        () => undefined,
      );
      const outcome = {
        ...(await taking),
        receivedInMs: Math.round(received - askedAt),
        takenInMs: Math.round(performance.now() - received),
      };
      const log = outcome.forged > 0 || outcome.beyondCap > 0 ? logger.warn : logger.info;
      log.call(
        logger,
        outcome.forged > 0 ? "announcement snapshot with forged entries" : "announcement snapshot",
        {
          peer: peerId,
          ...outcome,
        },
      );
    } catch (error) {
      if (!signal.aborted)
        logger.debug("announcement snapshot failed", { peer: peerId, error: describeError(error) });
    } finally {
      firstTaken.settle();
    }
  };

  const unsubscribe = node.onPeerIdentified((peer) => {
    if (signal.aborted || asked.size >= maxSnapshotPeers || asked.has(peer.peerId)) return;
    if (!peer.protocols.includes(announcementSnapshotProtocolId)) return;
    // Not through a relay: a snapshot (up to 4 MiB) would spend the relayed connection's data limit (a few KiB to
    // MiB) that the peer's inference streams need. A direct connection later (DCUtR) is identified again.
    if (node.connectionKind(peer.peerId) !== "direct") return;
    asked.add(peer.peerId);
    void ask(peer.peerId);
  });

  void serveAnnouncementSnapshot(
    { node, logger },
    {
      held: () =>
        table
          .all()
          .filter((provider) => !provider.untrusted)
          .map((provider) => provider.announcement),
    },
  ).catch((error) => logger.warn("cannot serve announcement snapshots", { error: describeError(error) }));

  return {
    firstTakenWithin: (ms) =>
      Promise.race([firstTaken.promise, new Promise<void>((resolve) => setTimeout(resolve, ms).unref())]),
    stop: unsubscribe,
  };
}
