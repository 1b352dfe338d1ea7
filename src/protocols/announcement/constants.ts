/** Name and limits of `/mycel/announcement/1.0.0`, on which a provider hands its latest signed announcement over. */
import { announcementProtocolId } from "../../protocol/index.ts";

export { announcementProtocolId };

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
