/**
 * Keeps the verified announcements a node hears on the announcement topic (the latest per peer, unexpired), so that it
 * can serve them as a snapshot (`/mycel/announcements/1.0.0`): what providers and relays do, gateways keeping theirs
 * in their provider table.
 */
import { describeError } from "../../errors/index.ts";
import { type Logger, silentLogger } from "../../log/index.ts";
import type { MycelNode } from "../../p2p/index.ts";
import { type Announcement, announcementTopic, verifyAnnouncement } from "../../protocol/index.ts";
import { defaultAnnouncementSnapshotLimits } from "./constants.ts";

/** A held announcement with more validity left than this is not replaced (so not checked) by its peer's next one. */
const refreshWithinMs = 10_000;

/** Parameters of {@link keepAnnouncements}. */
export type KeepAnnouncementsParameters = {
  /** Peers whose announcement is held at most (default: a snapshot's cap); beyond it, new peers wait for expiries. */
  maxHeld?: number;
};

/** The announcements a node keeps. */
export type AnnouncementKeeper = {
  /** The latest verified, unexpired announcement of each peer heard. */
  held(): Announcement[];
  /** Leaves the topic (the node stops relaying announcements too). */
  stop(): void;
};

/**
 * Subscribes to the announcement topic (so the node relays announcements, as providers and relays do) and keeps each
 * peer's latest one that passes verifyAnnouncement, exactly as a gateway checks them.
 */
export function keepAnnouncements(
  components: { node: Pick<MycelNode, "subscribe">; logger?: Logger },
  parameters: KeepAnnouncementsParameters = {},
): AnnouncementKeeper {
  const logger = components.logger ?? silentLogger;
  const maxHeld = parameters.maxHeld ?? defaultAnnouncementSnapshotLimits.maxAnnouncements;
  const latest = new Map<string, Announcement>();
  const dropExpired = (now: number) => {
    for (const [peerId, announcement] of latest) if (announcement.expires_at <= now) latest.delete(peerId);
  };
  const keep = (announcement: Announcement) => {
    const known = latest.get(announcement.peer_id);
    if (known && known.issued_at > announcement.issued_at) return;
    if (!known && latest.size >= maxHeld) {
      dropExpired(Date.now());
      if (latest.size >= maxHeld) return;
    }
    latest.set(announcement.peer_id, announcement);
  };
  const unsubscribe = components.node.subscribe(announcementTopic, (message) => {
    let value: unknown;
    try {
      value = JSON.parse(new TextDecoder().decode(message.data));
    } catch {
      return;
    }
    // Half the signature checks: a peer's new announcement is checked only once the one held has less than
    // `refreshWithinMs` left (every other one, at one per 5 s and 20 s of validity); the one served stays fresh enough.
    // The peer id is the one the message claims: a forged message naming a peer whose announcement is held is
    // skipped unchecked, which keeps the held one (nothing a forger could want).
    const claimed = (value as { peer_id?: unknown } | null)?.peer_id;
    const known = typeof claimed === "string" ? latest.get(claimed) : undefined;
    if (known && known.expires_at - Date.now() > refreshWithinMs) return;
    verifyAnnouncement({ value, from: undefined })
      .then(keep)
      .catch((error) =>
        logger.debug("announcement refused", {
          relayedBy: message.relayedBy,
          error: describeError(error),
        }),
      );
  });
  return {
    held() {
      dropExpired(Date.now());
      return [...latest.values()];
    },
    stop: unsubscribe,
  };
}
