/** The provider's side of `/mycel/announcement/1.0.0`: its latest signed announcement, written at once, nothing read. */
import { ServiceUnavailableError } from "../../errors/index.ts";
import type { Announcement } from "../../protocol/index.ts";
import { type FramedComponents, serveFramed } from "../framed/index.ts";
import {
  type AnnouncementLimits,
  announcementProtocolId,
  announcementRunsOnLimitedConnection,
  defaultAnnouncementLimits,
} from "./constants.ts";

/** Parameters of {@link serveAnnouncement}. */
export type ServeAnnouncementParameters = {
  /** The announcement last published (signed once per interval, never per request), or undefined before the first. */
  latest: () => Announcement | undefined;
  limits?: Partial<AnnouncementLimits>;
};

/** Hands the latest announcement to whoever asks: the same signed bytes gossip carries, so the asker checks them alike. */
export async function serveAnnouncement(
  components: FramedComponents,
  parameters: ServeAnnouncementParameters,
): Promise<void> {
  const limits = { ...defaultAnnouncementLimits, ...parameters.limits };
  await serveFramed(components, {
    protocol: announcementProtocolId,
    limits,
    runOnLimitedConnection: announcementRunsOnLimitedConnection,
    serve: async (channel) => {
      const latest = parameters.latest();
      if (latest === undefined || latest.expires_at <= Date.now())
        throw new ServiceUnavailableError("no announcement yet", { retryAfterSeconds: 1 });
      await channel.write(latest);
    },
  });
}
