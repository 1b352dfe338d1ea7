/**
 * Reachability: whether this node can be dialled from the internet (AutoNAT v2 confirms its public addresses),
 * relay slots for a node that cannot, a log line when a relayed connection is upgraded to a direct one, and the
 * rules a relay applies to strangers (who may reserve, how many circuits it carries).
 */

import { RELAY_V2_HOP_CODEC } from "@libp2p/circuit-relay-v2";
import type { Connection, Libp2pEvents, PeerId, TypedEventTarget } from "@libp2p/interface";
import { isPrivate } from "@libp2p/utils";
import { type Multiaddr, multiaddr } from "@multiformats/multiaddr";
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import {
  REACHABILITY_CHECK_INTERVAL_MS,
  REACHABILITY_DECISION_MS,
  RELAY_MAX_CIRCUITS,
  RELAY_MAX_CIRCUITS_PER_HOST,
  RELAY_MAX_RESERVATIONS_PER_HOST,
  RELAY_RESERVATIONS_WANTED,
} from "./constants.ts";

/** `public`: an address confirmed dialable from outside; `private`: none; `unknown`: AutoNAT has not decided yet. */
export type ReachabilityStatus = "public" | "private" | "unknown";

/** What a node knows of its reachability. */
export type Reachability = {
  status: ReachabilityStatus;
  /** Its confirmed public addresses (AutoNAT-verified, mapped by UPnP and verified, or announced by the operator). */
  addresses: string[];
};

/** How a node is connected to a peer now: directly, only through a relay, or not at all. */
export type ConnectionKind = "direct" | "relayed" | null;

/** The multiaddr component of a relayed address. */
const CIRCUIT_COMPONENT_NAME = "p2p-circuit";

/** Whether an address (or a connection's remote address) goes through a relay. */
export function isRelayedAddress(address: Multiaddr): boolean {
  return address.getComponents().some((component) => component.name === CIRCUIT_COMPONENT_NAME);
}

/**
 * Whether an address names a host that peers beyond its network cannot dial: a private (RFC 1918, CGNAT, link-local,
 * unique local) or loopback IP, or one of the ranges reserved for documentation. Not a multiaddr: false.
 */
export function isPrivateAddress(address: string | Multiaddr): boolean {
  try {
    return isPrivate(typeof address === "string" ? multiaddr(address) : address);
  } catch {
    return false;
  }
}

/** Parameters of {@link joinsFromBehindNat}. */
export type JoinsFromBehindNatParameters = {
  /** The node listens on nothing (reachable only through relays). */
  listenNone: boolean;
  /** Its listen multiaddrs. */
  listen: readonly string[];
  /** Addresses it announces by hand (a forwarded port). */
  announce: readonly string[];
  /** Its bootstrap peers' addresses. */
  bootstrap: readonly Multiaddr[];
  /** The machine's interface addresses (what a wildcard listen address binds). */
  interfaceAddresses: readonly string[];
};

/**
 * Whether a node is, by its own configuration, joining peers beyond its network from behind a NAT: it listens on
 * nothing, or only on private addresses (a wildcard counts as the machine's interface addresses), announces none by
 * hand, and has a bootstrap peer with a public address. Such a node stays a DHT client until AutoNAT finds it
 * reachable. A node on loopback or a LAN with private bootstrap peers (a devnet, a lab) is not behind a NAT here.
 */
export function joinsFromBehindNat(parameters: JoinsFromBehindNatParameters): boolean {
  if (parameters.listenNone) return true;
  if (parameters.announce.length > 0) return false;
  if (!parameters.bootstrap.some((address) => !isPrivateAddress(address))) return false;
  const hosts: string[] = [];
  for (const address of parameters.listen) {
    let host: string | undefined;
    try {
      host = multiaddr(address)
        .getComponents()
        .find((component) => component.name === "ip4" || component.name === "ip6")?.value;
    } catch {
      host = undefined;
    }
    if (host === undefined) return false;
    if (host === "0.0.0.0" || host === "::") hosts.push(...parameters.interfaceAddresses);
    else hosts.push(host);
  }
  return hosts.every((host) => isPrivateAddress(host.includes(":") ? `/ip6/${host}` : `/ip4/${host}`));
}

/** Whether a connection is relayed: its remote address goes through a relay, or libp2p set limits on it. */
export function isRelayedConnection(connection: Pick<Connection, "remoteAddr" | "limits">): boolean {
  return connection.limits !== undefined || isRelayedAddress(connection.remoteAddr);
}

/** The best current connection to a peer: `direct` if any is, `relayed` if only relayed ones are, null if none. */
export function connectionKindOf(
  connections: readonly Pick<Connection, "remoteAddr" | "limits">[],
): ConnectionKind {
  if (connections.length === 0) return null;
  return connections.some((connection) => !isRelayedConnection(connection)) ? "direct" : "relayed";
}

/** An address as libp2p's address manager describes it. */
type AddressWithMetadata = { multiaddr: Multiaddr; verified: boolean; type: string };

/** What the reachability service uses of libp2p's components (injected by libp2p). */
export type ReachabilityComponents = {
  addressManager: { getAddressesWithMetadata(): AddressWithMetadata[] };
  transportManager: { listen(addresses: Multiaddr[]): Promise<void> };
  connectionManager: { getConnections(peerId?: PeerId): Connection[] };
  events: TypedEventTarget<Libp2pEvents>;
};

/** Settings of {@link reachabilityService}. */
export type ReachabilityInit = {
  logger: Logger;
  /** Whether the node was asked to listen on any address: until its listeners are up, it does not judge. */
  listens: boolean;
  /** Relay slots to reserve once the node finds it is not reachable (default {@link RELAY_RESERVATIONS_WANTED}). */
  relayReservations?: number;
  /** How long listening on public addresses may wait for AutoNAT before the node calls itself private. */
  decisionMs?: number;
  checkIntervalMs?: number;
};

/** The reachability service of a node: read it, or wait for a change. */
export type ReachabilityService = {
  current(): Reachability;
  /** Calls `listener` on every change; returns the function that stops it. */
  onChange(listener: (reachability: Reachability) => void): () => void;
};

/** Whether a multiaddr is on this machine's loopback interface (`/ip4/127.x.x.x/...` or `/ip6/::1/...`). */
export function isLoopbackAddress(address: string | Multiaddr): boolean {
  return /^\/ip4\/127\.|^\/ip6\/::1\//.test(address.toString());
}

/** The status and confirmed public addresses that the address manager's view implies. */
export function judgeReachability(parameters: {
  addresses: readonly AddressWithMetadata[];
  /** Whether AutoNAT has had its time to confirm public addresses the node listens on. */
  decided: boolean;
}): Reachability {
  const direct = parameters.addresses.filter((address) => !isRelayedAddress(address.multiaddr));
  const confirmed = direct.filter(
    (address) => address.verified && (address.type === "announce" || !isPrivate(address.multiaddr)),
  );
  if (confirmed.length > 0)
    return {
      status: "public",
      addresses: [...new Set(confirmed.map((address) => address.multiaddr.toString()))],
    };
  const awaitingAutoNat = direct.some(
    (address) => address.type === "transport" && !address.verified && !isPrivate(address.multiaddr),
  );
  return { status: awaitingAutoNat && !parameters.decided ? "unknown" : "private", addresses: [] };
}

/**
 * A libp2p service that follows the node's reachability: logs each change (`reachability`, at info), reserves relay
 * slots once the node is found not reachable (listening on `/p2p-circuit`, which makes the circuit relay transport
 * reserve on relays among its peers and announce the relayed addresses), and logs `connection upgraded to direct`
 * when a direct connection opens to a peer it had only a relayed one with (DCUtR's hole punch, or a dial).
 *
 * A node that listens only on loopback reserves no slot: whoever can reach its relay on this machine can reach it.
 */
export function reachabilityService(init: ReachabilityInit) {
  return (components: ReachabilityComponents) => createReachability(components, init);
}

function createReachability(components: ReachabilityComponents, init: ReachabilityInit) {
  const logger = init.logger;
  const listeners = new Set<(reachability: Reachability) => void>();
  let current: Reachability = { status: "unknown", addresses: [] };
  let startedAt = Date.now();
  let reserving = false;
  let timer: NodeJS.Timeout | undefined;

  const transportAddresses = () =>
    components.addressManager
      .getAddressesWithMetadata()
      .filter((address) => address.type === "transport" && !isRelayedAddress(address.multiaddr));

  // Relays this node has identified (peers serving the hop protocol). A `/p2p-circuit` listener without a reservation
  // makes libp2p's relay transport walk the DHT for relays without pause; so no more slots are asked for than relays
  // are known (one at first, to find the first), and one more as each new relay shows up.
  const relaysKnown = new Set<string>();
  let slotsAsked = 0;
  const reserveRelaySlots = () => {
    if (!reserving) {
      const listening = transportAddresses();
      if (listening.length > 0 && listening.every((address) => isLoopbackAddress(address.multiaddr))) return;
      reserving = true;
    }
    const wanted = Math.min(
      init.relayReservations ?? RELAY_RESERVATIONS_WANTED,
      Math.max(1, relaysKnown.size),
    );
    const more = wanted - slotsAsked;
    if (more <= 0) return;
    slotsAsked = wanted;
    logger.info("not publicly reachable: reserving relay slots", {
      relays: wanted,
      relaysKnown: relaysKnown.size,
    });
    components.transportManager
      .listen(Array.from({ length: more }, () => multiaddr(`/${CIRCUIT_COMPONENT_NAME}`)))
      .catch((error) => logger.warn("could not reserve relay slots", { error: describeError(error) }));
  };
  const onPeerIdentify = (event: CustomEvent<{ peerId: PeerId; protocols: string[] }>) => {
    if (!event.detail.protocols.includes(RELAY_V2_HOP_CODEC)) return;
    const before = relaysKnown.size;
    relaysKnown.add(event.detail.peerId.toString());
    if (relaysKnown.size > before && reserving) reserveRelaySlots();
  };

  const check = () => {
    // Listeners start after the services do: no verdict (and no relay slot) before they are up. Addresses the
    // operator announces stand in for them (libp2p then lists those alone).
    const announced = components.addressManager
      .getAddressesWithMetadata()
      .some((address) => address.type === "announce");
    if (init.listens && !announced && transportAddresses().length === 0) return;
    const next = judgeReachability({
      addresses: components.addressManager.getAddressesWithMetadata(),
      decided: Date.now() - startedAt >= (init.decisionMs ?? REACHABILITY_DECISION_MS),
    });
    if (next.status === current.status && next.addresses.join(" ") === current.addresses.join(" ")) return;
    current = next;
    logger.info("reachability", { status: next.status, addresses: next.addresses });
    if (next.status === "private") reserveRelaySlots();
    for (const listener of [...listeners]) listener(next);
  };

  const onPeerUpdate = () => check();
  const onConnectionOpen = (event: CustomEvent<Connection>) => {
    const opened = event.detail;
    if (isRelayedConnection(opened)) return;
    const others = components.connectionManager
      .getConnections(opened.remotePeer)
      .filter((connection) => connection.id !== opened.id);
    if (others.length > 0 && others.every(isRelayedConnection))
      logger.info("connection upgraded to direct", {
        remotePeer: opened.remotePeer.toString(),
        address: opened.remoteAddr.toString(),
      });
  };

  return {
    [Symbol.toStringTag]: "@mycel/reachability",
    start() {
      startedAt = Date.now();
    },
    afterStart() {
      components.events.addEventListener("self:peer:update", onPeerUpdate);
      components.events.addEventListener("connection:open", onConnectionOpen);
      components.events.addEventListener("transport:listening", onPeerUpdate);
      components.events.addEventListener("peer:identify", onPeerIdentify);
      timer = setInterval(check, init.checkIntervalMs ?? REACHABILITY_CHECK_INTERVAL_MS);
      timer.unref();
      check();
    },
    stop() {
      clearInterval(timer);
      components.events.removeEventListener("self:peer:update", onPeerUpdate);
      components.events.removeEventListener("connection:open", onConnectionOpen);
      components.events.removeEventListener("transport:listening", onPeerUpdate);
      components.events.removeEventListener("peer:identify", onPeerIdentify);
      listeners.clear();
    },
    current: () => current,
    onChange(listener: (reachability: Reachability) => void) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
  } satisfies ReachabilityService & Record<string | symbol, unknown>;
}

/** What a relay's rules read of the node: its connections, its reservations and whether it offers relaying now. */
export type RelayPolicySource = {
  connections(peerId?: PeerId): Connection[];
  /** The relay's reservations (holder's address each); empty without a relay service. */
  reservations(): Iterable<{ peerId: string; addr: Multiaddr }>;
  /** Whether this node relays now: a relay always, a provider or validator once it is publicly reachable. */
  offersRelay(): boolean;
  hostOf(address: Multiaddr): string | undefined;
  /** The relay protocols: a circuit is an inbound hop stream from its source and an outbound stop stream to its target. */
  hopProtocol: string;
  stopProtocol: string;
  logger: Logger;
};

/**
 * The connection-gater hooks of a relay: no reservation while it does not offer relaying, at most
 * {@link RELAY_MAX_RESERVATIONS_PER_HOST} per host, and at most {@link RELAY_MAX_CIRCUITS} circuits at once
 * ({@link RELAY_MAX_CIRCUITS_PER_HOST} from one host). Total reservations and each circuit's data and time are
 * capped by the relay service itself.
 */
export function relayGater(source: RelayPolicySource) {
  return {
    denyInboundRelayReservation(peerId: PeerId): boolean {
      if (!source.offersRelay()) return true;
      const host = source
        .connections(peerId)
        .map((connection) => source.hostOf(connection.remoteAddr))
        .find((value) => value !== undefined);
      if (host === undefined) return false;
      let fromHost = 0;
      const asker = peerId.toString();
      // A peer refreshing its own reservation takes no new slot.
      for (const reservation of source.reservations())
        if (reservation.peerId === asker) return false;
        else if (source.hostOf(reservation.addr) === host) fromHost++;
      const deny = fromHost >= RELAY_MAX_RESERVATIONS_PER_HOST;
      if (deny) source.logger.debug("relay reservation refused: host holds its share", { host });
      return deny;
    },
    denyOutboundRelayedConnection(sourcePeer: PeerId): boolean {
      if (!source.offersRelay()) return true;
      const sourceHost = source
        .connections(sourcePeer)
        .map((connection) => source.hostOf(connection.remoteAddr))
        .find((value) => value !== undefined);
      let circuits = 0;
      let fromHost = 0;
      for (const connection of source.connections())
        for (const stream of connection.streams) {
          if (stream.protocol === source.stopProtocol && stream.direction === "outbound") circuits++;
          else if (
            stream.protocol === source.hopProtocol &&
            stream.direction === "inbound" &&
            sourceHost !== undefined &&
            source.hostOf(connection.remoteAddr) === sourceHost
          )
            fromHost++;
        }
      // The hop stream asking for this circuit is open already, and counted.
      const deny = circuits >= RELAY_MAX_CIRCUITS || fromHost > RELAY_MAX_CIRCUITS_PER_HOST;
      if (deny) source.logger.debug("relayed connection refused: relay at its circuit cap", { circuits });
      return deny;
    },
  };
}
