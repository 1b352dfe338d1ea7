/** Protocol names, timings and limits of Mycel's P2P layer. */

/** The Kademlia DHT protocol of the Mycel network (kept apart from the public IPFS DHT). */
export const MYCEL_DHT_PROTOCOL = "/mycel/kad/1.0.0";

/** Where a node listens when the caller names no address: loopback, a free port. */
export const DEFAULT_LISTEN_ADDRESSES: readonly string[] = ["/ip4/127.0.0.1/tcp/0"];

/** Gossipsub heartbeat in ms: fast, so that small networks form their mesh within a second or two. */
export const GOSSIP_HEARTBEAT_INTERVAL_MS = 700;

/** How often a node re-dials disconnected bootstrap peers (and, with few peers, looks for more), in ms. */
export const BOOTSTRAP_REDIAL_INTERVAL_MS = 5_000;

/** How long one dial of a bootstrap peer may take, in ms. */
export const BOOTSTRAP_DIAL_TIMEOUT_MS = 5_000;

/** How long a DHT provide may take before it gives up, in ms (the record stays stored locally). */
export const PROVIDE_TIMEOUT_MS = 30_000;

/** How long a provider search runs by default before it returns what it found, in ms. */
export const FIND_PROVIDERS_TIMEOUT_MS = 10_000;

/** How many providers a search returns at most by default. */
export const FIND_PROVIDERS_DEFAULT_LIMIT = 20;

/** Peers per Kademlia bucket (20 is the Kademlia default; a Mycel network starts small). */
export const DHT_K_BUCKET_SIZE = 20;

/** Connections above which libp2p starts pruning the least useful ones. */
export const MAX_CONNECTIONS = 200;

/** Inbound connections one host may open per second (libp2p's default of 5 is too low for many nodes on one host). */
export const INBOUND_CONNECTIONS_PER_HOST_PER_SECOND = 100;

/**
 * Inbound connections one host (IP address) may hold open at once: beyond it, new ones are refused before their
 * handshake. A devnet of 20 providers, gateways and validators on 127.0.0.1 needs about 30.
 */
export const MAX_INBOUND_CONNECTIONS_PER_HOST = 64;

/** Inbound connections that may be mid-handshake at once. */
export const MAX_INCOMING_PENDING_CONNECTIONS = 32;

/** Default cap on one frame's JSON payload, in bytes. */
export const DEFAULT_MAX_FRAME_BYTES = 1_048_576;

/** Default inbound streams per connection for a Mycel protocol handler. */
export const DEFAULT_MAX_INBOUND_STREAMS = 32;

/** Default outbound streams per connection for a Mycel protocol. */
export const DEFAULT_MAX_OUTBOUND_STREAMS = 64;

/** How long closing a served stream may wait for queued data to leave, in ms, before the stream is reset. */
export const STREAM_CLOSE_TIMEOUT_MS = 5_000;

/**
 * IPs exempt from gossipsub's same-IP penalty (a Sybil defence: past 10 peers on one IP, each further peer drives
 * every peer's score from that IP below the graylist). Many nodes on one machine are normal in tests and demos.
 */
export const GOSSIP_SAME_IP_ALLOWED: readonly string[] = ["127.0.0.1", "::1"];

/** Below this many connected peers a node looks for more with a DHT walk, so the gossip mesh does not hang on its bootstrap peers alone. */
export const TARGET_PEER_COUNT = 8;

/** How long one DHT walk for more peers may take, in ms. */
export const PEER_DISCOVERY_WALK_TIMEOUT_MS = 10_000;

/**
 * The wait after a DHT walk that found no new peer, in ms: doubled after each such walk from the first, up to the
 * second (a walk that dials someone, or a lost peer, starts again from none). Walking every 5 s forever cost an idle
 * node of a small network about 1% of a core (bench/idle).
 */
export const PEER_DISCOVERY_MIN_GAP_MS = 5_000;
export const PEER_DISCOVERY_MAX_GAP_MS = 5 * 60_000;

/** How many relays a node that is not publicly reachable reserves a slot on (each gives it one `/p2p-circuit` address). */
export const RELAY_RESERVATIONS_WANTED = 2;

/** The `--listen` value of a node that listens on nothing: it is reachable only through relays (and dials out). */
export const LISTEN_NONE = "none";

/**
 * Relayed connections a relay carries at once, from all peers, and from one host (IP address): each carries up to
 * its data limit within its duration limit, so these bound what strangers can make a relay carry.
 */
export const RELAY_MAX_CIRCUITS = 256;
export const RELAY_MAX_CIRCUITS_PER_HOST = 32;

/** Relay reservations one host (IP address) may hold at once: many identities on one machine take no more slots. */
export const RELAY_MAX_RESERVATIONS_PER_HOST = 4;

/** How long a relay reservation lasts before the reserving node must refresh it, in ms (libp2p's default: 2 h). */
export const RELAY_RESERVATION_TTL_MS = 2 * 60 * 60 * 1000;

/** How long a relay's hop handshake (reserve or connect) may take, in ms. */
export const RELAY_HOP_TIMEOUT_MS = 10_000;

/**
 * How long a node whose only public candidates are addresses it listens on waits for AutoNAT to confirm one before
 * it calls itself not reachable (and reserves relay slots), in ms.
 */
export const REACHABILITY_DECISION_MS = 60_000;

/** How often a node re-reads its addresses for reachability (AutoNAT confirmations also trigger it at once), in ms. */
export const REACHABILITY_CHECK_INTERVAL_MS = 5_000;

/** How long a node that listens on nothing waits at start for its first relayed address, in ms. */
export const RELAY_FIRST_ADDRESS_WAIT_MS = 10_000;

/** A relayed connection with less of its relay's data limit left than this gets no new stream (a new one is dialled). */
export const RELAYED_STREAM_MIN_BYTES_LEFT = 32n * 1024n;

/** A relayed connection with less of its relay's time limit left than this gets no new stream (a new one is dialled). */
export const RELAYED_STREAM_MIN_SECONDS_LEFT = 30;
