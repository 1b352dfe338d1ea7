/** Name and limits of `/mycel/announcement/1.0.0`, on which a provider hands its latest signed announcement over. */
import { announcementProtocolId, announcementSnapshotProtocolId } from "../../protocol/index.ts";

export { announcementProtocolId, announcementSnapshotProtocolId };

/** Limits of the announcement protocol. */
export type AnnouncementLimits = {
  /** Largest frame, in bytes of JSON (an announcement holds at most 16 addresses and 32 models: ~25 KB). */
  maxFrameBytes: number;
  /** Announcement requests one connection may have open at once on a provider. */
  maxInboundStreams: number;
  /** Longest an asker waits to open the stream (dial included), and then for the announcement. */
  replyTimeoutMs: number;
};

/** Defaults of the announcement protocol. */
export const defaultAnnouncementLimits: AnnouncementLimits = {
  maxFrameBytes: 64 * 1024,
  maxInboundStreams: 2,
  replyTimeoutMs: 5_000,
};

/** Whether this protocol runs over relayed (limited) connections: yes, so a gateway reaches a provider at home through a relay and gets its announcement at once (one bounded frame) (docs/PROTOCOL.md, "Relays"). */
export const announcementRunsOnLimitedConnection = true;

/** Limits of `/mycel/announcements/1.0.0` (a snapshot of every current verified announcement a node holds). */
export type AnnouncementSnapshotLimits = {
  /** Announcements one snapshot carries at most: a server sends no more, an asker drops those beyond. */
  maxAnnouncements: number;
  /**
   * The snapshot's one frame, in bytes of JSON: a server stops adding announcements before it. 4 MiB holds 2,048 of
   * a typical size (~1.2 KB: one model, a few addresses) but only ~160 of the largest the schema allows (~25 KB).
   */
  maxFrameBytes: number;
  /** Snapshot requests one connection may have open at once on a server. */
  maxInboundStreams: number;
  /** A server answers one peer at most once per this long (the others get `service_unavailable`). */
  minIntervalPerPeerMs: number;
  /** Longest an asker waits to open the stream (dial included), and then for the snapshot. */
  replyTimeoutMs: number;
};

/** Defaults of the snapshot protocol. */
export const defaultAnnouncementSnapshotLimits: AnnouncementSnapshotLimits = {
  maxAnnouncements: 2_048,
  maxFrameBytes: 4 * 1024 * 1024,
  maxInboundStreams: 1,
  minIntervalPerPeerMs: 10_000,
  replyTimeoutMs: 5_000,
};
