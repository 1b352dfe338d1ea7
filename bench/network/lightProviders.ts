/**
 * A swarm of lightweight providers in one process, for bench/network/discovery.ts: each is a real Mycel libp2p node
 * (TCP, Noise, Yamux, the Kademlia DHT, gossipsub) with its own secp256k1 key, running the real announcer: signed
 * announcements on gossip, served on `/mycel/announcement/1.0.0`, and the model provided on the DHT. They load no
 * model and serve no inference. Only the first 3 (the others' seeds, and the deployments' bootstrap peers) subscribe to
 * the announcement topic and keep the verified announcements they hear, as real providers and relays do, so that they
 * serve snapshots (`/mycel/announcements/1.0.0`) to a starting gateway; the others publish only: 100 nodes in one
 * process each checking every other's signed gossip need more CPU than a small machine has (N² signatures per
 * interval). A gateway still gets each one's own announcements, on gossip and on request. Run by the bench as a child
 * process:
 *
 *     node --import tsx bench/network/lightProviders.ts '{"count":100,"keyPrefix":"x","modelHash":"…","price":"…"}'
 *
 * It prints `MYCEL_READY {"multiaddrs":[…],"peerIds":[…]}` once every node announced, and exits when its stdin
 * closes (the bench ended, whichever way) or on SIGTERM.
 */
import type { Engine, LoadedModelInfo } from "../../src/engine/index.ts";
import { devPrivateKey } from "../../src/identity/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import { createMycelNode, libp2pKeyFromSecp256k1, type MycelNode } from "../../src/p2p/index.ts";
import { announcementTopic } from "../../src/protocol/index.ts";
import { fetchAnnouncementSnapshot } from "../../src/protocols/index.ts";
import { type Announcer, startAnnouncer } from "../../src/provider/index.ts";

/** What the bench asks for. */
export type LightSwarmRequest = {
  /** Nodes this process starts: indices `first` to `first + count - 1`. */
  count: number;
  /** Index of this process's first node (1-based; default 1). Node 1 to 3 are the seeds. */
  first?: number;
  /** The seeds' multiaddrs, when another process runs them (this process's nodes bootstrap through them). */
  seeds?: string[];
  /** Wait until every seed holds this many announcements (the whole swarm's) before saying ready. */
  awaitSeedsHold?: number;
  /** Node i's key is devPrivateKey(`${keyPrefix}-${i}`), so the bench can stake it on chain beforehand. */
  keyPrefix: string;
  modelHash: string;
  modelName: string;
  /** Price per 1M tokens, input and output. */
  price: string;
};

/** The key of light provider `index` (1-based) of a swarm (bench/network/discovery.ts stakes the same keys). */
function lightProviderKey(keyPrefix: string, index: number) {
  return devPrivateKey(`${keyPrefix}-${index}`);
}

/** Nodes started at once while the swarm starts (each start costs key and handshake work). */
const startBatch = 10;
/** How often a light node re-dials its seeds and, with few peers, walks the DHT for more (a real node: 5 s). */
const maintenanceIntervalMs = 60_000;
/** Nodes every later node bootstraps through. */
const seedCount = 3;

async function main() {
  const request = JSON.parse(process.argv[2] ?? "{}") as LightSwarmRequest;
  // The engine parts the announcer reads: capacity figures of an idle provider of one sequence.
  const engine = {
    stats: () => ({ total: 1, busy: 0, waiting: 0, maxWaiting: 8 }),
    options: { parallelism: 1, maxQueue: 8 },
  } as unknown as Pick<Engine, "stats" | "options">;
  const model = {
    hash: request.modelHash,
    name: request.modelName,
    contextSize: 2048,
  } as LoadedModelInfo;
  const nodes: MycelNode[] = [];
  const announcers: Announcer[] = [];
  const stopAll = async () => {
    for (const announcer of announcers) announcer.stop();
    await Promise.allSettled(nodes.map((node) => node.stop()));
    process.exit(0);
  };
  process.stdin.on("close", () => void stopAll());
  process.stdin.resume();
  process.once("SIGTERM", () => void stopAll());
  const startOne = async (index: number) => {
    const privateKey = lightProviderKey(request.keyPrefix, index);
    const isSeed = index <= seedCount;
    const seeds = request.seeds ?? nodes.slice(0, seedCount).flatMap((node) => node.multiaddrs().slice(0, 1));
    // Few maintenance rounds: the swarm is all on this machine and stays put (each round may walk the DHT).
    const node = await createMycelNode({
      privateKey: libp2pKeyFromSecp256k1(privateKey),
      bootstrap: seeds,
      bootstrapRedialIntervalMs: maintenanceIntervalMs,
      // The whole swarm and the gateway share one host here, where a real network's 100 providers sit on 100 hosts:
      // the seeds take that many connections from 127.0.0.1 (the default per-host cap, 64, refused the last ones).
      ...(isSeed ? { maxInboundConnectionsPerHost: 1024 } : {}),
      // Only the seeds serve the DHT: N servers on one machine keep each other's routing tables busy (every query,
      // provide and refresh parses peer records, each decompressing a secp256k1 key), which 100 hosts would spread
      // over 100 CPUs. The others still provide the model on it, through the seeds.
      dhtClientOnly: !isSeed,
    });
    nodes.push(node);
    announcers.push(
      await startAnnouncer({
        node,
        engine,
        models: [model],
        privateKey,
        price: { input: BigInt(request.price), output: BigInt(request.price) },
        payments: undefined,
        version: "bench-light",
        keepOthers: isSeed,
        logger: silentLogger,
      }),
    );
    // Publish only: relaying the others' announcements is what does not fit in one process (see above).
    if (!isSeed) node.libp2p.services.pubsub.unsubscribe(announcementTopic);
  };
  const first = request.first ?? 1;
  const last = first + request.count - 1;
  // The seeds first, one by one, so that the rest have somewhere to bootstrap.
  let next = first;
  for (; next <= Math.min(seedCount, last); next++) await startOne(next);
  for (; next <= last; next += startBatch) {
    const batch: Promise<void>[] = [];
    for (let index = next; index < next + startBatch && index <= last; index++) batch.push(startOne(index));
    await Promise.all(batch);
  }
  const seeds = request.seeds ?? nodes.slice(0, seedCount).flatMap((node) => node.multiaddrs().slice(0, 1));
  const seedIds = seeds.map((address) => address.split("/p2p/")[1] as string);
  // Every node connected to every seed (some dials made while dozens of nodes start at once are dropped, and a light
  // node re-dials its seeds only once a minute): its announcements reach the seeds on gossip from the start.
  await Promise.all(
    nodes.flatMap((node) =>
      seedIds
        .filter((seedId) => seedId !== node.peerId && !node.isConnected(seedId))
        .map((seedId) =>
          node.connect(seedId, { signal: AbortSignal.timeout(10_000) }).catch(() => undefined),
        ),
    ),
  );
  const held = request.awaitSeedsHold
    ? await seedsHolding(nodes, seedIds, request.awaitSeedsHold)
    : undefined;
  console.log(
    `MYCEL_READY ${JSON.stringify({
      multiaddrs: seeds,
      peerIds: nodes.map((node) => node.peerId),
      seedsHold: held,
    })}`,
  );
}

/** Longest wait for the seeds to hold the whole swarm's announcements. */
const seedsHoldTimeoutMs = 60_000;

/**
 * Asks each seed for its snapshot (each time from another node of this process: a seed answers one peer once per
 * 10 s) until every seed holds `total` announcements, as bootstrap nodes that have followed the topic for a while do.
 */
async function seedsHolding(nodes: MycelNode[], seedIds: string[], total: number): Promise<number[]> {
  const deadline = Date.now() + seedsHoldTimeoutMs;
  const held = seedIds.map(() => 0);
  let asker = 0;
  while (Date.now() < deadline) {
    await Promise.all(
      seedIds.map(async (seedId, index) => {
        if ((held[index] ?? 0) >= total) return;
        const node = nodes[asker++ % nodes.length] as MycelNode;
        if (node.peerId === seedId) return;
        const snapshot = await fetchAnnouncementSnapshot({ node }, { peerId: seedId }).catch(() => undefined);
        held[index] = snapshot?.announcements.length ?? 0;
      }),
    );
    if (held.every((count) => count >= total)) break;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
  return held;
}

await main();
