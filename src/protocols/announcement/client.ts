/** The asker's side of `/mycel/announcement/1.0.0`: a provider's latest announcement, unverified. */
import { announcementSchema } from "../../protocol/index.ts";
import { type FramedComponents, readReply, withFramedStream } from "../framed/index.ts";
import {
  type AnnouncementLimits,
  announcementProtocolId,
  announcementRunsOnLimitedConnection,
  defaultAnnouncementLimits,
} from "./constants.ts";

/** Parameters of {@link fetchAnnouncement}. */
export type FetchAnnouncementParameters = {
  peerId: string;
  signal?: AbortSignal;
  limits?: Partial<AnnouncementLimits>;
};

/**
 * Asks a peer for its latest announcement (dialling it if needed). The result is only well-formed: check it with
 * verifyAnnouncement against `peerId` (the stream's authenticated peer) before trusting any of it.
 */
export async function fetchAnnouncement(
  components: FramedComponents,
  parameters: FetchAnnouncementParameters,
): Promise<unknown> {
  const limits = { ...defaultAnnouncementLimits, ...parameters.limits };
  return withFramedStream(
    components,
    {
      peerId: parameters.peerId,
      protocol: announcementProtocolId,
      maxFrameBytes: limits.maxFrameBytes,
      runOnLimitedConnection: announcementRunsOnLimitedConnection,
      openTimeoutMs: limits.replyTimeoutMs,
      signal: parameters.signal,
    },
    (channel) =>
      readReply(channel, announcementSchema, {
        protocol: announcementProtocolId,
        timeoutMs: limits.replyTimeoutMs,
        signal: parameters.signal,
      }),
  );
}
