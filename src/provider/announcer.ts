/**
 * A provider's announcements: signed (models, prices, capacity, addresses, payment terms) and published on gossipsub
 * every few seconds, at once when a new peer joins the topic, handed to any peer that asks on
 * `/mycel/announcement/1.0.0` (a gateway that just connected), and each model provided on the DHT.
 */
import type { Hex } from "viem";
import { type Engine, type LoadedModelInfo, toolCallFormatOf } from "../engine/index.ts";
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import { isLoopbackAddress, isPrivateAddress, type MycelNode } from "../p2p/index.ts";
import type { ProviderPayments } from "../payments/index.ts";
import {
  type Announcement,
  announcementTiming,
  announcementTopic,
  modelHashToBytes32,
  signAnnouncement,
} from "../protocol/index.ts";
import { keepAnnouncements, serveAnnouncement, serveAnnouncementSnapshot } from "../protocols/index.ts";

/** Parameters of {@link startAnnouncer}. */
export type StartAnnouncerParameters = {
  node: MycelNode;
  engine: Pick<Engine, "stats" | "options">;
  models: readonly LoadedModelInfo[];
  privateKey: Hex;
  price: { input: bigint; output: bigint };
  payments: ProviderPayments | undefined;
  version: string;
  intervalMs?: number;
  /**
   * Keep the other providers' verified announcements heard on gossip and serve them as snapshots
   * (`/mycel/announcements/1.0.0`, for gateways that start with this node as a bootstrap peer); default true. False:
   * the node still relays them, unchecked (gossipsub checks their senders' signatures either way).
   */
  keepOthers?: boolean;
  logger: Logger;
};

/** A running announcer. */
export type Announcer = {
  /** Publishes an announcement now. */
  announce(): Promise<void>;
  /** The announcement last signed (what `/mycel/announcement/1.0.0` hands out), undefined before the first. */
  latest(): Announcement | undefined;
  stop(): void;
};

/** DHT records expire far more slowly than announcements: they are refreshed every this many announcements. */
const announcementsPerDhtRefresh = 12;
/** At most one extra announcement per this many ms however many peers join the topic. */
const joinAnnouncementSpacingMs = 1_000;

/**
 * Addresses worth announcing: loopback ones only when there is nothing else (a devnet on one machine); and once the
 * node has relayed addresses (it is behind a NAT), not its private ones, which peers beyond its LAN would dial in
 * vain (a dropped connection attempt costs them the dial timeout before they try the relay).
 */
export function reachableAddresses(addresses: string[]): string[] {
  const others = addresses.filter((address) => !isLoopbackAddress(address));
  const candidates = others.length > 0 ? others : addresses;
  if (!candidates.some((address) => address.includes("/p2p-circuit"))) return candidates;
  return candidates.filter((address) => address.includes("/p2p-circuit") || !isPrivateAddress(address));
}

/** Keeps the verified announcements heard on gossip and serves them as snapshots; returns the unsubscribe function. */
function keepAndServeAnnouncements(
  components: { node: MycelNode; logger: Logger },
  own: () => Announcement | undefined,
): () => void {
  const keeper = keepAnnouncements(components);
  const held = () => {
    const latest = own();
    return latest ? [latest, ...keeper.held()] : keeper.held();
  };
  void serveAnnouncementSnapshot(components, { held }).catch((error) =>
    components.logger.warn("cannot serve announcement snapshots", { error: describeError(error) }),
  );
  return keeper.stop;
}

/** Provides the models on the DHT, publishes the first announcement, and keeps announcing; resolves once the first is out. */
export async function startAnnouncer(parameters: StartAnnouncerParameters): Promise<Announcer> {
  const { node, engine, models, logger } = parameters;
  let announcedAddresses = "";
  let latest: Announcement | undefined;
  async function announce() {
    const now = Date.now();
    const multiaddrs = reachableAddresses(node.multiaddrs()).slice(0, 16);
    announcedAddresses = multiaddrs.join(" ");
    const stats = models.map((model) => engine.stats(model.hash));
    const announcement = await signAnnouncement({
      privateKey: parameters.privateKey,
      announcement: {
        peer_id: node.peerId,
        multiaddrs,
        models: models.map((model) => ({
          hash: modelHashToBytes32(model.hash),
          name: model.name,
          context_size: model.contextSize,
          capabilities: model.capabilities,
          ...(toolCallFormatOf(model.chatTemplate)
            ? { tool_call_format: toolCallFormatOf(model.chatTemplate) }
            : {}),
        })),
        price: { input: parameters.price.input.toString(), output: parameters.price.output.toString() },
        capacity: {
          parallelism: engine.options.parallelism,
          max_queue: engine.options.maxQueue,
          busy: stats.reduce((sum, stat) => sum + stat.busy, 0),
          waiting: stats.reduce((sum, stat) => sum + stat.waiting, 0),
        },
        ...(parameters.payments ? { payment: parameters.payments.announcement } : {}),
        version: parameters.version,
        issued_at: now,
        expires_at: now + announcementTiming.ttlMs,
      },
    });
    latest = announcement;
    await node.publish(announcementTopic, new TextEncoder().encode(JSON.stringify(announcement)));
  }
  const provideModels = () => {
    for (const model of models)
      node
        .provideModel(model.hash)
        .catch((error) =>
          logger.debug("DHT provide failed (retried later)", { error: describeError(error) }),
        );
  };
  provideModels();
  await announce().catch((error) => logger.warn("announcement failed", { error: describeError(error) }));
  // A peer that connects asks for the latest announcement at once instead of waiting for the next one on gossip.
  await serveAnnouncement({ node, logger }, { latest: () => latest });
  // Providers subscribe to the topic too, so that gossipsub relays announcements through them: a gateway hears
  // providers it is not connected to. What they receive they verify and keep, for the gateways that ask for all of it.
  const unsubscribe =
    parameters.keepOthers === false
      ? node.subscribe(announcementTopic, () => undefined)
      : keepAndServeAnnouncements({ node, logger }, () => latest);
  // A peer that just joined the topic (a new gateway) hears from us soon, not at the next interval; so does everyone
  // when this node's addresses change (a relay reservation made or lost, an address AutoNAT confirmed).
  let announceSoon: NodeJS.Timeout | undefined;
  const scheduleAnnouncement = () => {
    if (announceSoon) return;
    announceSoon = setTimeout(() => {
      announce()
        .catch((error) => logger.debug("announcement failed", { error: describeError(error) }))
        .finally(() => {
          setTimeout(() => {
            announceSoon = undefined;
          }, joinAnnouncementSpacingMs).unref();
        });
    }, 300);
  };
  const onSubscriptionChange = (event: Event) => {
    const detail = (event as CustomEvent<{ subscriptions: { topic: string; subscribe: boolean }[] }>).detail;
    if (detail.subscriptions.some((entry) => entry.topic === announcementTopic && entry.subscribe))
      scheduleAnnouncement();
  };
  const onAddressesChange = () => {
    if (reachableAddresses(node.multiaddrs()).slice(0, 16).join(" ") === announcedAddresses) return;
    logger.debug("addresses changed: announcing them", { addresses: node.multiaddrs() });
    scheduleAnnouncement();
  };
  node.libp2p.services.pubsub.addEventListener("subscription-change", onSubscriptionChange);
  node.libp2p.addEventListener("self:peer:update", onAddressesChange);
  let announcements = 0;
  const timer = setInterval(() => {
    announcements++;
    announce().catch((error) => logger.warn("announcement failed", { error: describeError(error) }));
    if (announcements % announcementsPerDhtRefresh === 0) provideModels();
  }, parameters.intervalMs ?? announcementTiming.intervalMs);
  timer.unref();
  return {
    announce,
    latest: () => latest,
    stop() {
      clearInterval(timer);
      clearTimeout(announceSoon);
      node.libp2p.services.pubsub.removeEventListener("subscription-change", onSubscriptionChange);
      node.libp2p.removeEventListener("self:peer:update", onAddressesChange);
      unsubscribe();
    },
  };
}
