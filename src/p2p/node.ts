import "./polyfills.ts";
import { setMaxListeners } from "node:events";
import { networkInterfaces } from "node:os";
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { autoNATv2 } from "@libp2p/autonat-v2";
import {
  type CircuitRelayService,
  circuitRelayServer,
  circuitRelayTransport,
  RELAY_V2_HOP_CODEC,
  RELAY_V2_STOP_CODEC,
} from "@libp2p/circuit-relay-v2";
import { dcutr } from "@libp2p/dcutr";
import { type GossipSub, gossipsub, StrictNoSign } from "@libp2p/gossipsub";
import { type Identify, identify } from "@libp2p/identify";
import type {
  Connection,
  ConnectionGater,
  MultiaddrConnection,
  PeerId,
  PrivateKey,
  Stream,
} from "@libp2p/interface";
import { type KadDHT, kadDHT, passthroughMapper } from "@libp2p/kad-dht";
import { peerIdFromString } from "@libp2p/peer-id";
import { type Ping, ping } from "@libp2p/ping";
import { tcp } from "@libp2p/tcp";
import { uPnPNAT } from "@libp2p/upnp-nat";
import { type Multiaddr, multiaddr } from "@multiformats/multiaddr";
import { createLibp2p, type Libp2p } from "libp2p";
import { describeError, InvalidInputError } from "../errors/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import {
  BOOTSTRAP_DIAL_TIMEOUT_MS,
  BOOTSTRAP_REDIAL_INTERVAL_MS,
  DEFAULT_LISTEN_ADDRESSES,
  DEFAULT_MAX_INBOUND_STREAMS,
  DEFAULT_MAX_OUTBOUND_STREAMS,
  DHT_K_BUCKET_SIZE,
  FIND_PROVIDERS_DEFAULT_LIMIT,
  FIND_PROVIDERS_TIMEOUT_MS,
  GOSSIP_HEARTBEAT_INTERVAL_MS,
  GOSSIP_SAME_IP_ALLOWED,
  INBOUND_CONNECTIONS_PER_HOST_PER_SECOND,
  LISTEN_NONE,
  MAX_CONNECTIONS,
  MAX_INBOUND_CONNECTIONS_PER_HOST,
  MAX_INCOMING_PENDING_CONNECTIONS,
  MYCEL_DHT_PROTOCOL,
  PEER_DISCOVERY_MAX_GAP_MS,
  PEER_DISCOVERY_MIN_GAP_MS,
  PEER_DISCOVERY_WALK_TIMEOUT_MS,
  PROVIDE_TIMEOUT_MS,
  RELAY_FIRST_ADDRESS_WAIT_MS,
  RELAY_HOP_TIMEOUT_MS,
  RELAY_MAX_CIRCUITS_PER_HOST,
  RELAY_RESERVATION_TTL_MS,
  RELAYED_STREAM_MIN_BYTES_LEFT,
  RELAYED_STREAM_MIN_SECONDS_LEFT,
  STREAM_CLOSE_TIMEOUT_MS,
  TARGET_PEER_COUNT,
} from "./constants.ts";
import { ModelProvideError, PeerDialError } from "./errors.ts";
import { modelCidFromHash, normalizeModelHash } from "./modelCid.ts";
import {
  type ConnectionKind,
  connectionKindOf,
  isRelayedAddress,
  joinsFromBehindNat,
  type Reachability,
  type ReachabilityService,
  reachabilityService,
  relayGater,
} from "./reachability.ts";

/** The libp2p services every Mycel node runs. */
export type MycelServices = {
  identify: Identify;
  ping: Ping;
  dht: KadDHT;
  pubsub: GossipSub;
  /** AutoNAT v2: asks peers to dial this node's addresses back, and dials back for them. */
  autoNAT: unknown;
  /** DCUtR: upgrades relayed connections to direct ones by hole punching. */
  dcutr: unknown;
  reachability: ReachabilityService;
  /** The circuit relay v2 server, when this node may relay for others. */
  relay?: CircuitRelayService;
  /** UPnP port mapping on the router, when asked for. */
  upnp?: unknown;
};

/** When a node relays for others: always (the relay role), once it is publicly reachable, or never. */
export type RelayOffer = "always" | "when-reachable" | "never";

/** The circuit relay v2 service of a node and its limits (defaults: roleDefaults' relay settings). */
export type RelayServiceParameters = {
  offer: RelayOffer;
  /** Reservations held at once. */
  maxReservations: number;
  /** Bytes one relayed connection may carry, both directions together. */
  dataLimitBytes: number;
  /** Seconds one relayed connection may stay open. */
  durationLimitSeconds: number;
};

/** The underlying libp2p node of a {@link MycelNode}, for what the Mycel surface does not cover. */
export type MycelLibp2p = Libp2p<MycelServices>;

/** Parameters of {@link createMycelNode}. */
export type CreateMycelNodeParameters = {
  /** The node's identity; build it from the wallet key with `libp2pKeyFromSecp256k1`. */
  privateKey: PrivateKey;
  /**
   * Multiaddrs to listen on; default `/ip4/127.0.0.1/tcp/0`. `["none"]` listens on nothing: the node dials out and
   * is reachable only through relays (it reserves slots on relays among its peers).
   */
  listen?: string[];
  /** Addresses to announce instead of the ones it listens on (a port forward, a DNS name); they count as reachable. */
  announce?: string[];
  /** Whether and how this node relays for others (default: never). */
  relay?: RelayServiceParameters;
  /** Map the listening port on the router with UPnP (default off). */
  upnp?: boolean;
  /** Multiaddrs (each ending in `/p2p/<peer id>`) dialled at start and re-dialled whenever disconnected. */
  bootstrap?: string[];
  /** How often disconnected bootstrap peers are re-dialled (and more peers sought if few), in ms; default 5 s. */
  bootstrapRedialIntervalMs?: number;
  /**
   * Inbound connections one host may hold; default {@link MAX_INBOUND_CONNECTIONS_PER_HOST}. Only a simulation of many
   * hosts on one machine (the discovery bench's seeds) needs more.
   */
  maxInboundConnectionsPerHost?: number;
  /**
   * Run the DHT as a client only: the node queries it and writes provider records, but answers no query and enters no
   * routing table. Default false (a server unless reachable only through relays). Only a simulation of many hosts on
   * one machine (the discovery bench's light nodes) needs it, to keep their DHT traffic off the machine's CPU.
   */
  dhtClientOnly?: boolean;
  logger?: Logger;
};

/** A gossip message as delivered to a subscriber. */
export type GossipMessage = {
  /** The topic it was published on. */
  topic: string;
  /**
   * The peer that handed this node the message (gossipsub's propagation source), as a string: not necessarily its
   * author. Gossip is not signed by libp2p (StrictNoSign): Mycel's payloads carry their author's own signature.
   */
  relayedBy: string;
  data: Uint8Array;
};

/** A peer that announced a model on the DHT. */
export type ModelProvider = {
  peerId: string;
  /** Its known addresses, each ending in `/p2p/<peer id>` (may be empty). */
  multiaddrs: string[];
};

/** Parameters of {@link MycelNode.provideModel}. */
export type ProvideModelParameters = {
  signal?: AbortSignal;
};

/** Parameters of {@link MycelNode.findModelProviders}. */
export type FindModelProvidersParameters = {
  /** Aborts the search with an error. */
  signal?: AbortSignal;
  /** Stop after this many providers; default 20. */
  limit?: number;
  /** Stop searching after this many ms and return what was found; default 10 s. */
  timeoutMs?: number;
};

/** Limits of a protocol registered with {@link MycelNode.handleProtocol}. */
export type HandleProtocolParameters = {
  /** Serve it over relayed (limited) connections too (docs/PROTOCOL.md says which protocols may); default false. */
  runOnLimitedConnection?: boolean;
  /** Concurrent inbound streams per connection; default 32. */
  maxInboundStreams?: number;
  /** Concurrent outbound streams per connection; default 64. */
  maxOutboundStreams?: number;
};

/** Where an inbound stream comes from: the address of its connection's remote end. */
export type InboundStreamSource = {
  /** The connection's remote multiaddr, e.g. `/ip4/203.0.113.7/tcp/4001`. */
  remoteAddress: string;
  /** Its IP address (or DNS name), undefined for an address without one: what per-host limits count by. */
  remoteHost: string | undefined;
};

/**
 * Serves one inbound stream of a protocol; the stream is closed (or reset, if this throws) when it settles. The
 * third argument says where the stream comes from (a handler may ignore it; test networks may leave it out).
 */
export type ProtocolHandler = (stream: Stream, peerId: string, source?: InboundStreamSource) => Promise<void>;

/** Parameters of {@link MycelNode.findPeer}. */
export type FindPeerParameters = {
  /** Aborts the search with an error. */
  signal?: AbortSignal;
  /** Give up after this many ms and return no address; default 10 s. */
  timeoutMs?: number;
};

/** A peer whose connection finished identify: who it is and which protocols it serves. */
export type IdentifiedPeer = { peerId: string; protocols: string[] };

/** Parameters of {@link MycelNode.openStream}. */
export type OpenStreamParameters = {
  signal?: AbortSignal;
  /** Open it over a relayed (limited) connection too, when that is the only one; default false. */
  runOnLimitedConnection?: boolean;
};

/** A running Mycel P2P node: gossip, model discovery over the DHT, and request streams. */
export type MycelNode = {
  /** This node's peer id. */
  peerId: string;
  /** The underlying libp2p node, for advanced use. */
  libp2p: MycelLibp2p;
  /** The addresses this node can be dialled at, each ending in `/p2p/<peer id>`. */
  multiaddrs(): string[];
  /**
   * Publishes data on a gossip topic (delivered to subscribers on other nodes, not this one); unsigned by libp2p, so
   * the payload must carry its own signature. Publishing the same bytes again while gossip remembers them is a no-op.
   */
  publish(topic: string, data: Uint8Array): Promise<void>;
  /** Calls `onMessage` for each message on `topic` from other nodes; returns the unsubscribe function. */
  subscribe(topic: string, onMessage: (message: GossipMessage) => void): () => void;
  /** Announces on the DHT that this node serves the model with this GGUF sha256 (64 hex digits). */
  provideModel(modelHashHex: string, parameters?: ProvideModelParameters): Promise<void>;
  /** Finds other nodes that announced the model with this GGUF sha256. */
  findModelProviders(
    modelHashHex: string,
    parameters?: FindModelProvidersParameters,
  ): Promise<ModelProvider[]>;
  /**
   * A peer's current addresses (each ending in `/p2p/<peer id>`): from this node's peer store when known, else
   * looked up on the DHT (peer routing). They are remembered for dialling. Empty when not found in time.
   */
  findPeer(peerId: string, parameters?: FindPeerParameters): Promise<string[]>;
  /** Whether this node holds an open connection to the peer now. */
  isConnected(peerId: string): boolean;
  /**
   * Calls `listener` whenever a connected peer has been identified (once per connection), and soon for each peer already
   * connected and identified when it is added; returns the unsubscribe function.
   */
  onPeerIdentified(listener: (peer: IdentifiedPeer) => void): () => void;
  /** Serves a stream protocol: `handler` runs once per inbound stream. */
  handleProtocol(
    protocol: string,
    handler: ProtocolHandler,
    parameters?: HandleProtocolParameters,
  ): Promise<void>;
  /**
   * Remembers addresses of a peer (e.g. from a signed announcement) so {@link MycelNode.openStream} can dial it;
   * with `replace`, they replace the addresses known so far (the peer moved, e.g. behind a relay).
   */
  addPeerAddresses(peerId: string, multiaddrs: string[], options?: { replace?: boolean }): Promise<void>;
  /** Opens a stream of `protocol` to a peer, dialling it at its known addresses if not connected. */
  openStream(peerId: string, protocol: string, parameters?: OpenStreamParameters): Promise<Stream>;
  /** Whether this node is publicly reachable (AutoNAT v2), and its confirmed public addresses. */
  reachability(): Reachability;
  /** How this node is connected to a peer now: `direct`, `relayed` (only through a relay), or null. */
  connectionKind(peerId: string): ConnectionKind;
  /** Connects to a peer at its known addresses; resolves at once when connected (throws PeerDialError). */
  connect(peerId: string, parameters?: OpenStreamParameters): Promise<void>;
  /** Stops the node: closes every connection and stream; safe to call twice. */
  stop(): Promise<void>;
};

/** Aborts when any of `signals` aborts; libp2p adds many listeners to it, so Node's leak warning is turned off. */
function anySignal(signals: AbortSignal[]): AbortSignal {
  const combined = AbortSignal.any(signals);
  setMaxListeners(Number.POSITIVE_INFINITY, combined);
  return combined;
}

/** The multiaddr component name of `/p2p/<peer id>`. */
const P2P_COMPONENT_NAME = "p2p";

function lastPeerIdOf(address: Multiaddr): string | undefined {
  return address.getComponents().findLast((component) => component.name === P2P_COMPONENT_NAME)?.value;
}

/** Multiaddr components that name a host. */
const HOST_COMPONENT_NAMES = new Set(["ip4", "ip6", "dns", "dns4", "dns6"]);

/** The IP address (or DNS name) of a multiaddr, if it names one. */
function hostOf(address: Multiaddr): string | undefined {
  return address.getComponents().find((component) => HOST_COMPONENT_NAMES.has(component.name))?.value;
}

/**
 * Refuses an inbound connection from a host that already holds `maxPerHost` (by default
 * {@link MAX_INBOUND_CONNECTIONS_PER_HOST}): one machine
 * cannot take every connection slot with throwaway identities. Loopback is not exempt (its cap is far above what a
 * local devnet needs).
 */
function perHostConnectionGater(connections: () => Connection[], maxPerHost: number): ConnectionGater {
  return {
    denyInboundConnection(connection: MultiaddrConnection) {
      const host = hostOf(connection.remoteAddr);
      if (host === undefined) return false;
      let fromHost = 0;
      for (const open of connections())
        if (open.direction === "inbound" && hostOf(open.remoteAddr) === host) fromHost++;
      return fromHost >= maxPerHost;
    },
  };
}

/**
 * Refuses to dial a peer through a relay unless this node's own protocols are reaching it ({@link withRelayedDialWanted}).
 * The DHT, gossip and AutoNAT never run over a relayed (limited) connection, and libp2p never reuses one for a dial,
 * so without this rule every DHT query naming a peer reachable only through a relay would open another relayed
 * connection that its protocol cannot use: a dial storm that fills the relay's and the peer's connection slots.
 */
function relayedDialGater(wanted: ReadonlyMap<string, number>): ConnectionGater {
  return {
    denyDialMultiaddr(address: Multiaddr) {
      if (!isRelayedAddress(address)) return false;
      const target = lastPeerIdOf(address);
      return target === undefined || !wanted.has(target);
    },
  };
}

/**
 * Whether a relayed connection has enough of its relay's data and time limits left for another stream: one with less
 * would likely be cut mid-answer (a resume), where a new relayed connection costs one round trip through the relay.
 */
function hasRoomForAStream(connection: Connection): boolean {
  const limits = connection.limits;
  if (limits === undefined) return true;
  if (limits.bytes !== undefined && limits.bytes < RELAYED_STREAM_MIN_BYTES_LEFT) return false;
  return limits.seconds === undefined || limits.seconds >= RELAYED_STREAM_MIN_SECONDS_LEFT;
}

/** Runs `dial` with dials of `peerId` through a relay allowed (see {@link relayedDialGater}). */
async function withRelayedDialWanted<T>(
  wanted: Map<string, number>,
  peerId: string,
  dial: () => Promise<T>,
): Promise<T> {
  wanted.set(peerId, (wanted.get(peerId) ?? 0) + 1);
  try {
    return await dial();
  } finally {
    const left = (wanted.get(peerId) ?? 1) - 1;
    if (left > 0) wanted.set(peerId, left);
    else wanted.delete(peerId);
  }
}

function withPeerId(address: Multiaddr, peerId: string): string {
  return lastPeerIdOf(address) === undefined
    ? address.encapsulate(`/p2p/${peerId}`).toString()
    : address.toString();
}

function parsePeerId(peerId: string): PeerId {
  try {
    return peerIdFromString(peerId);
  } catch (error) {
    throw new InvalidInputError(`"${peerId}" is not a peer id`, {
      hint: "pass a libp2p peer id such as 16Uiu2HAm…, as printed in a node's multiaddrs",
      param: "peerId",
      cause: error,
    });
  }
}

type BootstrapPeer = { address: Multiaddr; peerId: PeerId; failing: boolean; dialing: boolean };

function parseBootstrapAddress(address: string): BootstrapPeer {
  let parsed: Multiaddr;
  try {
    parsed = multiaddr(address);
  } catch (error) {
    throw new InvalidInputError(`bootstrap address "${address}" is not a multiaddr`, {
      hint: "write it like /ip4/203.0.113.7/tcp/4001/p2p/16Uiu2HAm…",
      param: "bootstrap",
      cause: error,
    });
  }
  const peerId = lastPeerIdOf(parsed);
  if (peerId === undefined) {
    throw new InvalidInputError(`bootstrap address "${address}" has no /p2p/<peer id>`, {
      hint: "append the bootstrap node's peer id, e.g. /ip4/203.0.113.7/tcp/4001/p2p/16Uiu2HAm…",
      param: "bootstrap",
    });
  }
  return { address: parsed, peerId: parsePeerId(peerId), failing: false, dialing: false };
}

function validateListenAddress(address: string): string {
  if (address === LISTEN_NONE)
    throw new InvalidInputError(`listen address "${LISTEN_NONE}" cannot be given with other addresses`, {
      hint: `give --listen ${LISTEN_NONE} alone (reachable only through relays), or only multiaddrs`,
      param: "listen",
    });
  try {
    return multiaddr(address).toString();
  } catch (error) {
    throw new InvalidInputError(`listen address "${address}" is not a multiaddr`, {
      hint: "write it like /ip4/0.0.0.0/tcp/4001",
      param: "listen",
      cause: error,
    });
  }
}

/** Creates and starts a Mycel P2P node (TCP, Noise, Yamux, Kademlia DHT, Gossipsub) and dials its bootstrap peers. */
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: the node is one closure over its libp2p instance; each method (publish, subscribe, provide, open streams) is a short function over it, not a role
export async function createMycelNode(parameters: CreateMycelNodeParameters): Promise<MycelNode> {
  const listenNone = parameters.listen?.length === 1 && parameters.listen[0] === LISTEN_NONE;
  const listen = listenNone
    ? []
    : (parameters.listen ?? [...DEFAULT_LISTEN_ADDRESSES]).map(validateListenAddress);
  const announce = (parameters.announce ?? []).map(validateListenAddress);
  const relay = parameters.relay ?? { offer: "never" };
  const bootstrapPeers = (parameters.bootstrap ?? []).map(parseBootstrapAddress);
  // Behind a NAT, the DHT runs as a client until AutoNAT finds the node reachable: as a server for even a moment it
  // would enter its peers' routing tables, and their queries would dial it in vain (its LAN address) or through a
  // relay, whose connections the DHT cannot use.
  const behindNat = joinsFromBehindNat({
    listenNone,
    listen,
    announce,
    bootstrap: bootstrapPeers.map((peer) => peer.address),
    interfaceAddresses: Object.values(networkInterfaces()).flatMap((entries) =>
      (entries ?? []).map((entry) => entry.address),
    ),
  });

  // The gater counts this node's connections, known once libp2p exists (no connection arrives before).
  let openConnections: (peerId?: PeerId) => Connection[] = () => [];
  // The relay's rules read the node's reachability and reservations, known once libp2p exists.
  let offersRelay = () => relay.offer === "always";
  let relayReservations: () => Iterable<{ peerId: string; addr: Multiaddr }> = () => [];
  const nodeLogger = parameters.logger ?? silentLogger;
  // Peers this node's own protocols are reaching right now: only they may be dialled through a relay.
  const relayedDialsWanted = new Map<string, number>();
  const libp2p = (await createLibp2p({
    privateKey: parameters.privateKey,
    connectionGater: {
      ...perHostConnectionGater(
        () => openConnections(),
        parameters.maxInboundConnectionsPerHost ?? MAX_INBOUND_CONNECTIONS_PER_HOST,
      ),
      ...relayedDialGater(relayedDialsWanted),
      ...relayGater({
        connections: (peerId) => openConnections(peerId),
        reservations: () => relayReservations(),
        offersRelay: () => offersRelay(),
        hostOf,
        hopProtocol: RELAY_V2_HOP_CODEC,
        stopProtocol: RELAY_V2_STOP_CODEC,
        logger: nodeLogger,
      }),
    },
    addresses: { listen, announce },
    transports: [tcp(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: {
      maxConnections: MAX_CONNECTIONS,
      inboundConnectionThreshold: INBOUND_CONNECTIONS_PER_HOST_PER_SECOND,
      maxIncomingPendingConnections: MAX_INCOMING_PENDING_CONNECTIONS,
    },
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({
        protocol: MYCEL_DHT_PROTOCOL,
        // A node behind a NAT answers no DHT query (see followDhtMode below).
        clientMode: behindNat || parameters.dhtClientOnly === true,
        peerInfoMapper: passthroughMapper,
        kBucketSize: DHT_K_BUCKET_SIZE,
      }),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        // Unsigned gossip: every Mycel payload on gossip is signed by its author (an announcement by the provider's key,
        // bound to its peer id), so a libp2p signature would cost every node on the topic a second check of each
        // message (docs/PROTOCOL.md "Announcements"). Message ids are then the payload's SHA-256.
        globalSignaturePolicy: StrictNoSign,
        heartbeatInterval: GOSSIP_HEARTBEAT_INTERVAL_MS,
        floodPublish: true,
        scoreParams: { IPColocationFactorWhitelist: new Set(GOSSIP_SAME_IP_ALLOWED) },
      }),
      autoNAT: autoNATv2(),
      dcutr: dcutr(),
      reachability: reachabilityService({
        logger: nodeLogger.child({ part: "reachability" }),
        listens: listen.length > 0,
      }),
      ...(relay.offer === "never"
        ? {}
        : {
            relay: circuitRelayServer({
              hopTimeout: RELAY_HOP_TIMEOUT_MS,
              maxInboundHopStreams: RELAY_MAX_CIRCUITS_PER_HOST,
              reservations: {
                maxReservations: relay.maxReservations,
                reservationTtl: RELAY_RESERVATION_TTL_MS,
                applyDefaultLimit: true,
                defaultDataLimit: BigInt(relay.dataLimitBytes),
                // libp2p's relay server counts this in ms.
                defaultDurationLimit: relay.durationLimitSeconds * 1000,
              },
            }),
          }),
      ...(parameters.upnp ? { upnp: uPnPNAT({ portMappingDescription: "mycel" }) } : {}),
    },
  })) as MycelLibp2p;

  openConnections = (peerId) => libp2p.getConnections(peerId);
  const relayService = libp2p.services.relay;
  if (relayService)
    relayReservations = () =>
      [...relayService.reservations.entries()].map(([peerId, reservation]) => ({
        peerId: peerId.toString(),
        addr: reservation.addr,
      }));
  if (relay.offer === "when-reachable")
    offersRelay = () => libp2p.services.reachability.current().status === "public";
  const selfPeerId = libp2p.peerId.toString();
  const logger = nodeLogger.child({ self: selfPeerId.slice(-8) });
  const stopController = new AbortController();
  // Every pending dial, query and read listens on this signal.
  setMaxListeners(Number.POSITIVE_INFINITY, stopController.signal);
  let stopping: Promise<void> | undefined;

  // Gossip: one libp2p listener fans messages out to this node's subscribers, by topic.
  const subscribers = new Map<string, Set<(message: GossipMessage) => void>>();
  libp2p.services.pubsub.addEventListener("gossipsub:message", (event) => {
    const { msg: message, propagationSource } = event.detail;
    const handlers = subscribers.get(message.topic);
    if (!handlers) return;
    const delivered: GossipMessage = {
      topic: message.topic,
      relayedBy: propagationSource.toString(),
      data: message.data,
    };
    for (const handler of [...handlers]) {
      const reportFailure = (error: unknown) =>
        logger.warn("gossip subscriber threw", { topic: message.topic, error: describeError(error) });
      try {
        // A subscriber may be async despite its type; keep its rejection from going unhandled.
        const result: unknown = handler(delivered);
        if (result instanceof Promise) result.catch(reportFailure);
      } catch (error) {
        reportFailure(error);
      }
    }
  });

  // Bootstrap: dial each peer now, then re-dial any that is disconnected every few seconds.
  const dialBootstrapPeers = async () => {
    await Promise.all(
      bootstrapPeers.map(async (peer) => {
        if (peer.dialing || stopController.signal.aborted) return;
        if (peer.peerId.equals(libp2p.peerId) || libp2p.getConnections(peer.peerId).length > 0) return;
        peer.dialing = true;
        try {
          await libp2p.dial(peer.address, {
            signal: anySignal([stopController.signal, AbortSignal.timeout(BOOTSTRAP_DIAL_TIMEOUT_MS)]),
          });
          logger.info("connected to bootstrap peer", { address: peer.address.toString() });
          peer.failing = false;
        } catch (error) {
          if (stopController.signal.aborted) return;
          const fields = { address: peer.address.toString(), error: describeError(error) };
          if (peer.failing) logger.debug("bootstrap peer still unreachable", fields);
          else logger.warn("could not reach bootstrap peer; retrying in the background", fields);
          peer.failing = true;
        } finally {
          peer.dialing = false;
        }
      }),
    );
  };
  // Discovery: while this node has few peers, walk the DHT towards a random key and dial the peers it meets. A walk
  // that finds nobody new doubles the wait before the next (up to PEER_DISCOVERY_MAX_GAP_MS), so that a small network
  // where every node knows every other does not walk every few seconds forever; losing a peer ends the wait.
  let walking = false;
  let walkGapMs = 0;
  let nextWalkAt = 0;
  let peersAfterLastWalk = 0;
  // Counted from connections: libp2p.getPeers() re-parses every peer id, which costs an EC point decompression each.
  const connectedPeerCount = () =>
    new Set(libp2p.getConnections().map((connection) => connection.remotePeer.toString())).size;
  const discoverPeers = async () => {
    const connected = connectedPeerCount();
    if (walking || stopController.signal.aborted || connected === 0 || connected >= TARGET_PEER_COUNT) return;
    if (Date.now() < nextWalkAt && connected >= peersAfterLastWalk) return;
    walking = true;
    let dialled = 0;
    try {
      const signal = anySignal([stopController.signal, AbortSignal.timeout(PEER_DISCOVERY_WALK_TIMEOUT_MS)]);
      const candidates: PeerId[] = [];
      const randomKey = crypto.getRandomValues(new Uint8Array(32));
      try {
        // The DHT's own query events name the peers met along the way (peerRouting only yields at the end),
        // so a walk cut short by its timeout still dials what it found.
        const consider = (peerId: PeerId) => {
          if (
            !peerId.equals(libp2p.peerId) &&
            libp2p.getConnections(peerId).length === 0 &&
            !candidates.some((known) => known.equals(peerId))
          )
            candidates.push(peerId);
        };
        for await (const event of libp2p.services.dht.getClosestPeers(randomKey, { signal })) {
          if (event.name === "PEER_RESPONSE") for (const peer of event.closer) consider(peer.id);
          else if (event.name === "FINAL_PEER") consider(event.peer.id);
        }
      } catch (error) {
        // A walk cut short still yields the peers met so far.
        if (stopController.signal.aborted) return;
        logger.debug("peer discovery walk ended early", {
          found: candidates.length,
          error: describeError(error),
        });
      }
      const dialSignal = anySignal([stopController.signal, AbortSignal.timeout(BOOTSTRAP_DIAL_TIMEOUT_MS)]);
      const dials = candidates
        .slice(0, Math.max(0, TARGET_PEER_COUNT - connectedPeerCount()))
        .map((peerId) => libp2p.dial(peerId, { signal: dialSignal }));
      const results = await Promise.allSettled(dials);
      dialled = results.filter((result) => result.status === "fulfilled").length;
      logger.debug("peer discovery walk done", { dialled, peers: connectedPeerCount() });
    } catch (error) {
      if (!stopController.signal.aborted)
        logger.debug("peer discovery walk failed", { error: describeError(error) });
    } finally {
      walking = false;
      walkGapMs =
        dialled > 0
          ? 0
          : Math.min(PEER_DISCOVERY_MAX_GAP_MS, Math.max(2 * walkGapMs, PEER_DISCOVERY_MIN_GAP_MS));
      nextWalkAt = Date.now() + walkGapMs;
      peersAfterLastWalk = connectedPeerCount();
    }
  };

  const maintainConnections = async () => {
    await dialBootstrapPeers();
    await discoverPeers();
  };
  await dialBootstrapPeers();
  void discoverPeers();
  // A node that listens on nothing has no address until a relay gives it one: wait a little for the first.
  if (listenNone && bootstrapPeers.length > 0) await firstRelayedAddress(libp2p, RELAY_FIRST_ADDRESS_WAIT_MS);
  const maintenanceTimer = setInterval(() => {
    void maintainConnections();
  }, parameters.bootstrapRedialIntervalMs ?? BOOTSTRAP_REDIAL_INTERVAL_MS);
  maintenanceTimer.unref();

  logger.debug("p2p node started", { addresses: libp2p.getMultiaddrs().map(String) });

  const multiaddrs = () => libp2p.getMultiaddrs().map((address) => withPeerId(address, selfPeerId));

  const publish = async (topic: string, data: Uint8Array) => {
    try {
      await libp2p.services.pubsub.publish(topic, data);
    } catch (error) {
      // Message ids are the payload's hash: the same bytes again are already on the topic, which is what was asked.
      if (error instanceof Error && error.message === "PublishError.Duplicate") return;
      throw error;
    }
  };

  const subscribe = (topic: string, onMessage: (message: GossipMessage) => void) => {
    let handlers = subscribers.get(topic);
    if (!handlers) {
      handlers = new Set();
      subscribers.set(topic, handlers);
      libp2p.services.pubsub.subscribe(topic);
    }
    // Wrap so the same function can subscribe twice and unsubscribe each time separately.
    const handler = (message: GossipMessage) => onMessage(message);
    handlers.add(handler);
    return () => {
      const current = subscribers.get(topic);
      if (!current?.delete(handler) || current.size > 0) return;
      subscribers.delete(topic);
      if (!stopController.signal.aborted) libp2p.services.pubsub.unsubscribe(topic);
    };
  };

  const provideModel = async (modelHashHex: string, provideParameters: ProvideModelParameters = {}) => {
    const modelHash = normalizeModelHash(modelHashHex);
    const { signal } = provideParameters;
    const signals = [stopController.signal, AbortSignal.timeout(PROVIDE_TIMEOUT_MS)];
    if (signal) signals.push(signal);
    let storedOnPeers = 0;
    try {
      for await (const event of libp2p.services.dht.provide(modelCidFromHash(modelHash), {
        signal: anySignal(signals),
      })) {
        if (event.name === "PEER_RESPONSE" && event.messageName === "ADD_PROVIDER") storedOnPeers++;
      }
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (storedOnPeers === 0) throw new ModelProvideError({ modelHash, cause: error });
      logger.debug("model announce ended early", { model: modelHash, error: describeError(error) });
    }
    if (storedOnPeers === 0) throw new ModelProvideError({ modelHash });
    logger.info("announced model on the DHT", { model: modelHash, peers: storedOnPeers });
  };

  const findModelProviders = async (
    modelHashHex: string,
    findParameters: FindModelProvidersParameters = {},
  ) => {
    const modelHash = normalizeModelHash(modelHashHex);
    const { signal } = findParameters;
    const limit = findParameters.limit ?? FIND_PROVIDERS_DEFAULT_LIMIT;
    const timeoutSignal = AbortSignal.timeout(findParameters.timeoutMs ?? FIND_PROVIDERS_TIMEOUT_MS);
    const signals = [stopController.signal, timeoutSignal];
    if (signal) signals.push(signal);
    const found = new Map<string, ModelProvider>();
    if (limit <= 0) return [];
    try {
      for await (const provider of libp2p.contentRouting.findProviders(modelCidFromHash(modelHash), {
        signal: anySignal(signals),
      })) {
        const providerId = provider.id.toString();
        if (providerId === selfPeerId) continue;
        found.set(providerId, {
          peerId: providerId,
          multiaddrs: provider.multiaddrs.map((address) => withPeerId(address, providerId)),
        });
        if (found.size >= limit) break;
      }
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (!timeoutSignal.aborted && !stopController.signal.aborted && found.size === 0) throw error;
      logger.debug("provider search ended", {
        model: modelHash,
        found: found.size,
        error: describeError(error),
      });
    }
    return [...found.values()];
  };

  const findPeer = async (peerId: string, findParameters: FindPeerParameters = {}) => {
    const target = parsePeerId(peerId);
    if (target.equals(libp2p.peerId)) return multiaddrs();
    const signals = [
      stopController.signal,
      AbortSignal.timeout(findParameters.timeoutMs ?? FIND_PROVIDERS_TIMEOUT_MS),
    ];
    if (findParameters.signal) signals.push(findParameters.signal);
    try {
      const found = await libp2p.peerRouting.findPeer(target, { signal: anySignal(signals) });
      return found.multiaddrs.map((address) => withPeerId(address, peerId));
    } catch (error) {
      if (findParameters.signal?.aborted) throw findParameters.signal.reason;
      logger.debug("peer not found", { remotePeer: peerId, error: describeError(error) });
      return [];
    }
  };

  const isConnected = (peerId: string) => {
    try {
      return libp2p.getConnections(peerIdFromString(peerId)).length > 0;
    } catch {
      return false;
    }
  };

  const onPeerIdentified = (listener: (peer: IdentifiedPeer) => void) => {
    const onIdentify = (event: CustomEvent<{ peerId: PeerId; protocols: string[] }>) => {
      try {
        listener({ peerId: event.detail.peerId.toString(), protocols: event.detail.protocols });
      } catch (error) {
        logger.warn("peer:identify listener threw", { error: describeError(error) });
      }
    };
    libp2p.addEventListener("peer:identify", onIdentify);
    let unsubscribed = false;
    // The peers identified before the listener came (the bootstrap peers, dialled as the node started) count too.
    // The connections' own peer ids: parsing them again from text would decompress each key once more.
    const connected = new Map(
      libp2p.getConnections().map((connection) => [connection.remotePeer.toString(), connection.remotePeer]),
    );
    for (const [peerIdText, peerId] of connected)
      libp2p.peerStore
        .get(peerId)
        .then((peer) => {
          if (unsubscribed || peer.protocols.length === 0) return;
          listener({ peerId: peerIdText, protocols: peer.protocols });
        })
        .catch(() => undefined);
    return () => {
      unsubscribed = true;
      libp2p.removeEventListener("peer:identify", onIdentify);
    };
  };

  const handleProtocol = async (
    protocol: string,
    handler: ProtocolHandler,
    handleParameters: HandleProtocolParameters = {},
  ) => {
    await libp2p.handle(
      protocol,
      async (stream, connection) => {
        const remotePeerId = connection.remotePeer.toString();
        const source: InboundStreamSource = {
          remoteAddress: connection.remoteAddr.toString(),
          remoteHost: hostOf(connection.remoteAddr),
        };
        try {
          await handler(stream, remotePeerId, source);
        } catch (error) {
          logger.warn("protocol handler failed", {
            protocol,
            remotePeer: remotePeerId,
            error: describeError(error),
          });
          stream.abort(error instanceof Error ? error : new Error(describeError(error)));
          return;
        }
        if (stream.writeStatus !== "writable") return;
        try {
          await stream.close({ signal: AbortSignal.timeout(STREAM_CLOSE_TIMEOUT_MS) });
        } catch (error) {
          logger.debug("could not close a served stream; resetting it", {
            protocol,
            error: describeError(error),
          });
          stream.abort(error instanceof Error ? error : new Error(describeError(error)));
        }
      },
      {
        maxInboundStreams: handleParameters.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS,
        maxOutboundStreams: handleParameters.maxOutboundStreams ?? DEFAULT_MAX_OUTBOUND_STREAMS,
        runOnLimitedConnection: handleParameters.runOnLimitedConnection === true,
      },
    );
  };

  const addPeerAddresses = async (
    peerId: string,
    addresses: string[],
    options: { replace?: boolean } = {},
  ) => {
    const target = parsePeerId(peerId);
    if (target.equals(libp2p.peerId)) return;
    const usable: Multiaddr[] = [];
    for (const address of addresses) {
      let parsed: Multiaddr;
      try {
        parsed = multiaddr(address);
      } catch {
        logger.debug("ignoring a peer address that is not a multiaddr", { remotePeer: peerId, address });
        continue;
      }
      const addressPeerId = lastPeerIdOf(parsed);
      if (addressPeerId !== undefined && addressPeerId !== peerId) {
        logger.debug("ignoring a peer address that names another peer", { remotePeer: peerId, address });
        continue;
      }
      usable.push(addressPeerId === undefined ? parsed : parsed.decapsulate(`/p2p/${addressPeerId}`));
    }
    if (usable.length === 0) return;
    if (options.replace) await libp2p.peerStore.patch(target, { multiaddrs: usable });
    else await libp2p.peerStore.merge(target, { multiaddrs: usable });
  };

  const openStream = async (peerId: string, protocol: string, openParameters: OpenStreamParameters = {}) => {
    const target = parsePeerId(peerId);
    const { signal } = openParameters;
    const limitedAllowed = openParameters.runOnLimitedConnection === true;
    try {
      if (!limitedAllowed) return await libp2p.dialProtocol(target, protocol, { signal });
      // libp2p never reuses a limited (relayed) connection for a dial, so every stream would cost a new relayed
      // connection: open it on the newest relayed one with room left when no direct connection exists, and dial
      // afresh otherwise or when that fails (a new relayed connection gets a fresh limit).
      const open = libp2p.getConnections(target).filter((connection) => connection.status === "open");
      const relayed = open.filter((connection) => connection.limits != null);
      const newest =
        relayed.length > 0 && relayed.length === open.length
          ? relayed.filter(hasRoomForAStream).at(-1)
          : undefined;
      if (newest !== undefined) {
        try {
          return await newest.newStream(protocol, { signal, runOnLimitedConnection: true });
        } catch (error) {
          if (signal?.aborted) throw error;
          logger.debug("stream on a relayed connection failed: dialling a new one", {
            remotePeer: peerId,
            protocol,
            error: describeError(error),
          });
        }
      }
      return await withRelayedDialWanted(relayedDialsWanted, peerId, () =>
        libp2p.dialProtocol(target, protocol, { signal, runOnLimitedConnection: true }),
      );
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw new PeerDialError({ peerId, protocol, cause: error });
    }
  };

  // A node that can be reached only through relays is a DHT client: were it a server, the DHT servers it connects to
  // would hand its relayed addresses out and every peer's queries would dial it through a relay, over connections the
  // DHT may not use, so each query would open another relayed connection (a dial storm that also starves inference).
  const followDhtMode = () => {
    if (stopController.signal.aborted) return;
    const reachable = libp2p.services.reachability.current().status === "public";
    const reachableOnlyThroughRelays =
      !reachable && (behindNat || libp2p.getMultiaddrs().some(isRelayedAddress));
    const wanted = parameters.dhtClientOnly || reachableOnlyThroughRelays ? "client" : "server";
    if (libp2p.services.dht.getMode() === wanted) return;
    libp2p.services.dht
      .setMode(wanted)
      .then(() => logger.info("DHT mode", { mode: wanted, reachable, reachableOnlyThroughRelays }))
      .catch((error) =>
        logger.warn("could not change the DHT mode", { mode: wanted, error: describeError(error) }),
      );
  };
  libp2p.addEventListener("self:peer:update", followDhtMode);
  const stopFollowingReachability = libp2p.services.reachability.onChange(followDhtMode);
  followDhtMode();
  const connect = async (peerId: string, connectParameters: OpenStreamParameters = {}) => {
    const target = parsePeerId(peerId);
    if (target.equals(libp2p.peerId) || libp2p.getConnections(target).length > 0) return;
    const { signal } = connectParameters;
    try {
      await withRelayedDialWanted(relayedDialsWanted, peerId, () => libp2p.dial(target, { signal }));
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw new PeerDialError({ peerId, cause: error });
    }
  };

  const stop = () => {
    stopping ??= (async () => {
      libp2p.removeEventListener("self:peer:update", followDhtMode);
      stopFollowingReachability();
      clearInterval(maintenanceTimer);
      stopController.abort(new Error("the p2p node is stopping"));
      subscribers.clear();
      await libp2p.stop();
      logger.debug("p2p node stopped");
    })();
    return stopping;
  };

  return {
    peerId: selfPeerId,
    libp2p,
    multiaddrs,
    publish,
    subscribe,
    provideModel,
    findModelProviders,
    findPeer,
    isConnected,
    onPeerIdentified,
    handleProtocol,
    addPeerAddresses,
    openStream,
    reachability: () => libp2p.services.reachability.current(),
    connectionKind: (peerId: string) => connectionKindOf(libp2p.getConnections(parsePeerId(peerId))),
    connect,
    stop,
  };
}

/** Resolves once the node has a relayed address, or after `waitMs` (it keeps trying in the background). */
async function firstRelayedAddress(libp2p: MycelLibp2p, waitMs: number): Promise<void> {
  const hasOne = () => libp2p.getMultiaddrs().some(isRelayedAddress);
  if (hasOne()) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      libp2p.removeEventListener("self:peer:update", onUpdate);
      resolve();
    };
    const onUpdate = () => {
      if (hasOne()) done();
    };
    const timer = setTimeout(done, waitMs);
    libp2p.addEventListener("self:peer:update", onUpdate);
  });
}
