/**
 * `/mycel/announcement/1.0.0`: a provider hands its latest signed announcement to a peer that asks (a gateway that
 * just connected), so that it need not wait for the next one on gossip. One frame, nothing asked; the asker checks
 * it exactly as a gossiped one. `/mycel/announcements/1.0.0` (snapshot.ts): a node that keeps the announcements it
 * hears on gossip (keeper.ts; a gateway's provider table) hands all of them over in one frame, each still signed by its
 * provider, so a starting gateway lists providers without looking each up.
 *
 * @example
 * ```ts
 * await serveAnnouncement({ node }, { latest: () => announcer.latest() });
 * const announcement = await verifyAnnouncement({ value: await fetchAnnouncement({ node }, { peerId }), from: peerId });
 * ```
 */
export { type FetchAnnouncementParameters, fetchAnnouncement } from "./client.ts";
export {
  type AnnouncementLimits,
  type AnnouncementSnapshotLimits,
  announcementProtocolId,
  announcementSnapshotProtocolId,
  defaultAnnouncementLimits,
  defaultAnnouncementSnapshotLimits,
} from "./constants.ts";
export { type AnnouncementKeeper, type KeepAnnouncementsParameters, keepAnnouncements } from "./keeper.ts";
export { type ServeAnnouncementParameters, serveAnnouncement } from "./server.ts";
export {
  type FetchAnnouncementSnapshotParameters,
  fetchAnnouncementSnapshot,
  type ReceivedSnapshot,
  type ServeAnnouncementSnapshotParameters,
  serveAnnouncementSnapshot,
  snapshotOf,
} from "./snapshot.ts";
