/** Starts a relay in this process: a libp2p node that relays for nodes that are not reachable, with no model and no chain. */
import type { Hex } from "viem";
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import { createMycelNode, libp2pKeyFromSecp256k1, type RelayServiceParameters } from "../p2p/index.ts";
import { keepAnnouncements, serveAnnouncementSnapshot } from "../protocols/index.ts";

/** Parameters of {@link startRelayNode}. */
export type StartRelayNodeParameters = {
  privateKey: Hex;
  logger: Logger;
  listen?: string[];
  /** Addresses to announce instead of the listen addresses (a public IP, a DNS name); they count as reachable. */
  announce?: string[];
  bootstrap?: string[];
  /** The relay's limits (it always relays: that is its job). */
  relay: Omit<RelayServiceParameters, "offer">;
  upnp?: boolean;
};

/** A relay running in this process. */
export type RelayNode = {
  peerId: string;
  multiaddrs: string[];
  close(): Promise<void>;
};

/** Starts a relay (a libp2p node with the circuit relay server, AutoNAT, the DHT and gossip) in this process. */
export async function startRelayNode(parameters: StartRelayNodeParameters): Promise<RelayNode> {
  const { logger } = parameters;
  const node = await createMycelNode({
    privateKey: libp2pKeyFromSecp256k1(parameters.privateKey),
    listen: parameters.listen,
    announce: parameters.announce,
    bootstrap: parameters.bootstrap,
    relay: { offer: "always", ...parameters.relay },
    upnp: parameters.upnp,
    logger: logger.child({ part: "p2p" }),
  });
  // In the announcement mesh: gossip never runs over relayed connections, so two nodes behind NATs (a home provider,
  // a home gateway) hear each other's announcements only through public nodes that forward them, such as this one.
  // It keeps the verified ones and hands them to a starting gateway that asks (`/mycel/announcements/1.0.0`).
  const keeper = keepAnnouncements({ node, logger });
  const leaveMesh = keeper.stop;
  await serveAnnouncementSnapshot({ node, logger }, { held: keeper.held }).catch((error) =>
    logger.warn("cannot serve announcement snapshots", { error: describeError(error) }),
  );
  logger.info("relaying", {
    addresses: node.multiaddrs(),
    maxReservations: parameters.relay.maxReservations,
    dataLimitBytes: parameters.relay.dataLimitBytes,
    durationLimitSeconds: parameters.relay.durationLimitSeconds,
  });
  return {
    peerId: node.peerId,
    multiaddrs: node.multiaddrs(),
    close: async () => {
      leaveMesh();
      await node.stop();
    },
  };
}
