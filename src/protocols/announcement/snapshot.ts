/**
 * `/mycel/announcements/1.0.0`: a node that follows the announcement topic hands a peer that asks (a gateway that
 * just started) every current verified announcement it holds, in one frame, so that the asker lists providers
 * without a DHT lookup or a connection to each. Each announcement is the signed object exactly as gossiped: the asker
 * checks every one itself and trusts the server for nothing.
 */
import { z } from "zod";
import { MycelError } from "../../errors/index.ts";
import { type Announcement, announcementSnapshotProtocolId, wireVersion } from "../../protocol/index.ts";
import { type FramedComponents, readReply, serveFramed, withFramedStream } from "../framed/index.ts";
import {
  type AnnouncementSnapshotLimits,
  announcementRunsOnLimitedConnection,
  defaultAnnouncementSnapshotLimits,
} from "./constants.ts";

/** The snapshot frame as it travels; its announcements are checked one by one by the asker. */
const snapshotFrameSchema = z
  .object({
    v: z.literal(wireVersion),
    type: z.literal("announcements"),
    announcements: z.array(z.unknown()),
  })
  .strict();

/** Bytes of JSON an announcement takes in a frame, computed once per announcement object. */
const jsonBytes = new WeakMap<Announcement, number>();
const encoder = new TextEncoder();
function jsonBytesOf(announcement: Announcement): number {
  let bytes = jsonBytes.get(announcement);
  if (bytes === undefined) {
    bytes = encoder.encode(JSON.stringify(announcement)).byteLength;
    jsonBytes.set(announcement, bytes);
  }
  return bytes;
}

/** The announcements a snapshot carries: unexpired ones, newest first, until the count or the frame is full. */
export function snapshotOf(
  held: Iterable<Announcement>,
  parameters: { limits: AnnouncementSnapshotLimits; now?: number },
): Announcement[] {
  const now = parameters.now ?? Date.now();
  const current = [...held].filter((announcement) => announcement.expires_at > now);
  current.sort((left, right) => right.issued_at - left.issued_at);
  // The frame's own fields and the array's brackets, with room to spare.
  let bytes = 256;
  const chosen: Announcement[] = [];
  for (const announcement of current) {
    if (chosen.length >= parameters.limits.maxAnnouncements) break;
    const size = jsonBytesOf(announcement) + 1;
    if (bytes + size > parameters.limits.maxFrameBytes) continue;
    bytes += size;
    chosen.push(announcement);
  }
  return chosen;
}

/** Parameters of {@link serveAnnouncementSnapshot}. */
export type ServeAnnouncementSnapshotParameters = {
  /** The verified announcements the node holds now (expired ones are left out when serving). */
  held: () => Iterable<Announcement>;
  limits?: Partial<AnnouncementSnapshotLimits>;
};

/** Peers remembered for the per-peer interval at most: beyond it, the oldest are forgotten first. */
const maxRememberedAskers = 4_096;

/** Serves snapshots: what the node already holds, serialized, at most once per peer per interval. */
export async function serveAnnouncementSnapshot(
  components: FramedComponents,
  parameters: ServeAnnouncementSnapshotParameters,
): Promise<void> {
  const limits = { ...defaultAnnouncementSnapshotLimits, ...parameters.limits };
  const lastServed = new Map<string, number>();
  await serveFramed(components, {
    protocol: announcementSnapshotProtocolId,
    limits,
    runOnLimitedConnection: announcementRunsOnLimitedConnection,
    serve: async (channel, peerId) => {
      const now = Date.now();
      const last = lastServed.get(peerId);
      if (last !== undefined && now - last < limits.minIntervalPerPeerMs)
        throw Object.assign(
          new MycelError("a snapshot was served to this peer moments ago", {
            code: "busy",
            hint: "ask again later, or ask another peer",
          }),
          { retryAfterMs: limits.minIntervalPerPeerMs - (now - last) },
        );
      lastServed.delete(peerId);
      lastServed.set(peerId, now);
      // Insertion order is age order: drop the oldest first.
      for (const [peer] of lastServed) {
        if (lastServed.size <= maxRememberedAskers) break;
        lastServed.delete(peer);
      }
      const announcements = snapshotOf(parameters.held(), { limits, now });
      await channel.write({ v: wireVersion, type: "announcements", announcements });
    },
  });
}

/** Parameters of {@link fetchAnnouncementSnapshot}. */
export type FetchAnnouncementSnapshotParameters = {
  peerId: string;
  signal?: AbortSignal;
  limits?: Partial<AnnouncementSnapshotLimits>;
};

/** A snapshot as received: its announcements unverified, those beyond the cap already dropped. */
export type ReceivedSnapshot = {
  /** At most `maxAnnouncements` values, each to be checked with verifyAnnouncement before it is trusted. */
  announcements: unknown[];
  /** How many the server sent beyond the cap (dropped unread). */
  beyondCap: number;
};

/** Asks a peer for its snapshot (dialling it if needed). Its entries are unverified: check each one. */
export async function fetchAnnouncementSnapshot(
  components: FramedComponents,
  parameters: FetchAnnouncementSnapshotParameters,
): Promise<ReceivedSnapshot> {
  const limits = { ...defaultAnnouncementSnapshotLimits, ...parameters.limits };
  const frame = await withFramedStream(
    components,
    {
      peerId: parameters.peerId,
      protocol: announcementSnapshotProtocolId,
      maxFrameBytes: limits.maxFrameBytes,
      runOnLimitedConnection: announcementRunsOnLimitedConnection,
      openTimeoutMs: limits.replyTimeoutMs,
      signal: parameters.signal,
    },
    (channel) =>
      readReply(channel, snapshotFrameSchema, {
        protocol: announcementSnapshotProtocolId,
        timeoutMs: limits.replyTimeoutMs,
        signal: parameters.signal,
      }),
  );
  return {
    announcements: frame.announcements.slice(0, limits.maxAnnouncements),
    beyondCap: Math.max(0, frame.announcements.length - limits.maxAnnouncements),
  };
}
