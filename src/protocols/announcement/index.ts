/**
 * `/mycel/announcement/1.0.0`: a provider hands its latest signed announcement to a peer that asks (a gateway that
 * just connected), so that it need not wait for the next one on gossip. One frame, nothing asked; the asker checks
 * it exactly as a gossiped one.
 *
 * @example
 * ```ts
 * await serveAnnouncement({ node }, { latest: () => announcer.latest() });
 * const announcement = await verifyAnnouncement({ value: await fetchAnnouncement({ node }, { peerId }), from: peerId });
 * ```
 */
export { type FetchAnnouncementParameters, fetchAnnouncement } from "./client.ts";
export { type AnnouncementLimits, announcementProtocolId, defaultAnnouncementLimits } from "./constants.ts";
export { type ServeAnnouncementParameters, serveAnnouncement } from "./server.ts";
