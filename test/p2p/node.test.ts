import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { InvalidInputError } from "../../src/errors/index.ts";
import {
  createFrameChannel,
  createMycelNode,
  FrameStreamClosedError,
  FrameTimeoutError,
  FrameTooLargeError,
  type GossipMessage,
  libp2pKeyFromSecp256k1,
  type MycelNode,
} from "../../src/p2p/index.ts";
import { waitFor, withDeadline } from "../helpers.ts";

const testProtocol = "/mycel/test-frames/1.0.0";

/**
 * Publishes with `publish` now and every `everyMs` until `arrived` resolves, and resolves with its value; fails
 * naming `what` after `timeoutMs`, or with publish's error. Gossip meshes form in the background and nothing says
 * when: a message published before reaches nobody, so it is sent again until it arrives.
 */
async function publishUntil<T>(
  what: string,
  publish: () => Promise<unknown>,
  arrived: Promise<T>,
  options: { everyMs: number; timeoutMs: number },
): Promise<T> {
  let failed!: (error: unknown) => void;
  const publishFailed = new Promise<never>((_, reject) => {
    failed = reject;
  });
  const publishOnce = () => {
    publish().catch(failed);
  };
  publishOnce();
  const timer = setInterval(publishOnce, options.everyMs);
  try {
    return await withDeadline(what, Promise.race([arrived, publishFailed]), options.timeoutMs);
  } finally {
    clearInterval(timer);
  }
}

function randomEthereumKey(): `0x${string}` {
  return `0x${randomBytes(32).toString("hex")}`;
}

describe("libp2pKeyFromSecp256k1", () => {
  it("gives the same secp256k1 peer id for the same key, and another for another key", () => {
    const hex = randomEthereumKey();
    const first = peerIdFromPrivateKey(libp2pKeyFromSecp256k1(hex));
    const second = peerIdFromPrivateKey(libp2pKeyFromSecp256k1(hex));
    const other = peerIdFromPrivateKey(libp2pKeyFromSecp256k1(randomEthereumKey()));
    assert.equal(first.type, "secp256k1");
    assert.equal(first.toString(), second.toString());
    assert.notEqual(first.toString(), other.toString());
    assert.equal(
      peerIdFromPrivateKey(libp2pKeyFromSecp256k1(`0x${"11".repeat(32)}`)).toString(),
      "16Uiu2HAmHzBkRq62mG95vsjKMuYQBezZCtjPXYWUoyVxMxi71aB3",
      "stable across versions",
    );
  });

  it("refuses keys that are not 32 bytes or not on the curve", () => {
    assert.throws(() => libp2pKeyFromSecp256k1("0x1234"), InvalidInputError);
    assert.throws(() => libp2pKeyFromSecp256k1(`0x${"00".repeat(32)}`), InvalidInputError);
    assert.throws(() => libp2pKeyFromSecp256k1(`0x${"ff".repeat(32)}`), InvalidInputError);
  });
});

describe("p2p nodes (real libp2p on 127.0.0.1)", () => {
  const nodes: MycelNode[] = [];
  let nodeA: MycelNode;
  let nodeB: MycelNode;
  let nodeC: MycelNode;

  before(async () => {
    nodeA = await createMycelNode({ privateKey: libp2pKeyFromSecp256k1(randomEthereumKey()) });
    nodes.push(nodeA);
    const bootstrap = nodeA.multiaddrs();
    nodeB = await createMycelNode({ privateKey: libp2pKeyFromSecp256k1(randomEthereumKey()), bootstrap });
    nodes.push(nodeB);
    nodeC = await createMycelNode({ privateKey: await generateKeyPair("secp256k1"), bootstrap });
    nodes.push(nodeC);
  });
  after(async () => {
    await Promise.all(nodes.map((node) => node.stop()));
  });

  it("lists full multiaddrs and connects to the bootstrap peer at start", () => {
    assert.ok(nodeA.multiaddrs().length > 0);
    for (const address of nodeA.multiaddrs()) {
      assert.match(address, /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//);
      assert.ok(address.endsWith(`/p2p/${nodeA.peerId}`));
    }
    assert.ok(
      nodeB.libp2p.getConnections().some((connection) => connection.remotePeer.toString() === nodeA.peerId),
    );
    assert.ok(
      nodeC.libp2p.getConnections().some((connection) => connection.remotePeer.toString() === nodeA.peerId),
    );
  });

  it("connects to a peer at its known addresses once, and fails for a peer it cannot reach", async () => {
    const nodeD = await createMycelNode({ privateKey: libp2pKeyFromSecp256k1(randomEthereumKey()) });
    nodes.push(nodeD);
    const connectionsToA = () =>
      nodeD.libp2p.getConnections().filter((connection) => connection.remotePeer.toString() === nodeA.peerId);
    assert.equal(connectionsToA().length, 0);
    await nodeD.addPeerAddresses(nodeA.peerId, nodeA.multiaddrs());
    await nodeD.connect(nodeA.peerId);
    assert.equal(connectionsToA().length, 1, "connected");
    await nodeD.connect(nodeA.peerId);
    assert.equal(connectionsToA().length, 1, "connected already: no second connection");
    const stranger = await createMycelNode({ privateKey: libp2pKeyFromSecp256k1(randomEthereumKey()) });
    const strangerPeerId = stranger.peerId;
    const strangerAddresses = stranger.multiaddrs();
    await stranger.stop();
    await nodeD.addPeerAddresses(strangerPeerId, strangerAddresses);
    await assert.rejects(nodeD.connect(strangerPeerId, { signal: AbortSignal.timeout(5_000) }));
  });

  it("tells a listener added late about the peers already connected and identified", async () => {
    // B bootstrapped through A when it started, long before this listener.
    for (let tries = 0; !nodeB.isConnected(nodeA.peerId) && tries < 100; tries++)
      await new Promise((resolve) => setTimeout(resolve, 50));
    const seen = new Map<string, string[]>();
    let unsubscribe = () => {};
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no replay of A within 5 s")), 5_000);
      unsubscribe = nodeB.onPeerIdentified((peer) => {
        seen.set(peer.peerId, peer.protocols);
        if (peer.peerId === nodeA.peerId) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    unsubscribe();
    assert.ok(
      seen.get(nodeA.peerId)?.some((protocol) => protocol.startsWith("/ipfs/id/")),
      "A's protocols, as identify learnt them",
    );
  });

  it("delivers a gossip message published by C to B (unsigned by libp2p, relayed by a peer of B)", async () => {
    const topic = "mycel/test/gossip";
    const received: GossipMessage[] = [];
    let firstReceived!: (message: GossipMessage) => void;
    const arrived = new Promise<GossipMessage>((resolve) => {
      firstReceived = resolve;
    });
    const unsubscribeA = nodeA.subscribe(topic, () => {});
    const unsubscribeB = nodeB.subscribe(topic, (message) => {
      received.push(message);
      firstReceived(received[0] as GossipMessage);
    });
    // Each try publishes other bytes: gossip's message ids are the payload's hash, and the same bytes again are a no-op.
    const published: string[] = [];
    try {
      const message = await publishUntil(
        "B to receive C's gossip",
        () => {
          published.push(`hello ${Date.now()} #${published.length}`);
          return nodeC.publish(topic, new TextEncoder().encode(published.at(-1)));
        },
        arrived,
        {
          everyMs: 250,
          timeoutMs: 10_000,
        },
      );
      assert.ok(
        [nodeA.peerId, nodeC.peerId].includes(message.relayedBy),
        `relayed by C or A, not ${message.relayedBy}`,
      );
      assert.equal(message.topic, topic);
      assert.ok(published.includes(new TextDecoder().decode(message.data)), "the bytes C published");
      // The same bytes again: already on the topic, so publishing them resolves and sends nothing.
      await nodeC.publish(topic, new TextEncoder().encode(published.at(-1)));
    } finally {
      unsubscribeB();
      unsubscribeA();
    }
    assert.ok(!nodeB.libp2p.services.pubsub.getTopics().includes(topic), "unsubscribed from the topic");
  });

  it("finds the provider of a model on the DHT", async () => {
    const modelHash = randomBytes(32).toString("hex");
    await nodeB.provideModel(modelHash);
    const providers = await waitFor(
      "C to find B as a provider",
      async () => {
        const found = await nodeC.findModelProviders(modelHash, { timeoutMs: 3_000 });
        return found.some((provider) => provider.peerId === nodeB.peerId) ? found : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    const provider = providers.find((entry) => entry.peerId === nodeB.peerId);
    assert.ok(provider && provider.multiaddrs.length > 0, "the provider comes with addresses");
    for (const address of provider.multiaddrs) assert.ok(address.endsWith(`/p2p/${nodeB.peerId}`));
    const none = await nodeC.findModelProviders(randomBytes(32).toString("hex"), { timeoutMs: 1_500 });
    assert.deepEqual(none, [], "nobody provides an unknown model");
    await assert.rejects(nodeC.findModelProviders("not-a-hash"), InvalidInputError);
  });

  describe("frame streams", () => {
    const served: string[] = [];

    before(async () => {
      // Echoes {type:"echo"}, answers {type:"big"} with an oversize frame, ignores {type:"silence"}.
      await nodeB.handleProtocol(testProtocol, async (stream, peerId) => {
        served.push(peerId);
        const channel = createFrameChannel(stream, { maxFrameBytes: 2048 });
        while (true) {
          const value = (await channel.read({ timeoutMs: 5_000 })) as {
            type: string;
            [key: string]: unknown;
          };
          if (value === undefined) return;
          if (value.type === "echo") await channel.write({ type: "echo", value: value.value });
          if (value.type === "big") await channel.write({ type: "big", filler: "x".repeat(1500) });
        }
      });
    });

    it("round-trips several JSON frames both ways, then ends cleanly", async () => {
      const stream = await nodeC.openStream(nodeB.peerId, testProtocol);
      const channel = createFrameChannel(stream, { maxFrameBytes: 1024 });
      const values = [1, "two", { three: [3, null, true] }, "ünïcödé ✓", [], 6.5];
      for (const value of values) await channel.write({ type: "echo", value });
      for (const value of values)
        assert.deepEqual(await channel.read({ timeoutMs: 5_000 }), { type: "echo", value });
      await channel.close();
      assert.equal(await channel.read({ timeoutMs: 5_000 }), undefined, "clean end of stream");
      assert.equal(served.at(-1), nodeC.peerId, "the handler sees the remote peer id");
    });

    it("throws FrameTooLargeError for oversize frames, both ways", async () => {
      const stream = await nodeC.openStream(nodeB.peerId, testProtocol);
      const channel = createFrameChannel(stream, { maxFrameBytes: 1024 });
      await assert.rejects(channel.write({ type: "echo", value: "y".repeat(2000) }), (error: unknown) => {
        assert.ok(error instanceof FrameTooLargeError);
        assert.equal(error.maxFrameBytes, 1024);
        return true;
      });
      await channel.write({ type: "big" });
      await assert.rejects(channel.read({ timeoutMs: 5_000 }), (error: unknown) => {
        assert.ok(error instanceof FrameTooLargeError);
        assert.ok(error.frameBytes > 1024);
        assert.match(error.message, /Hint: /);
        return true;
      });
      assert.equal(stream.status, "aborted", "an oversize frame resets the stream");

      // A frame over the handler's limit makes its read throw, so the handler resets the stream.
      const tooBigForServer = createFrameChannel(await nodeC.openStream(nodeB.peerId, testProtocol), {
        maxFrameBytes: 10_000,
      });
      await tooBigForServer.write({ type: "echo", value: "z".repeat(4000) });
      await assert.rejects(tooBigForServer.read({ timeoutMs: 5_000 }), FrameStreamClosedError);
    });

    it("throws FrameTimeoutError when the peer is silent, and the channel stays usable", async () => {
      const channel = createFrameChannel(await nodeC.openStream(nodeB.peerId, testProtocol), {
        maxFrameBytes: 1024,
      });
      await channel.write({ type: "silence" });
      const started = Date.now();
      await assert.rejects(channel.read({ timeoutMs: 300 }), FrameTimeoutError);
      assert.ok(Date.now() - started >= 290, "waited for the timeout");
      await channel.write({ type: "echo", value: "still here" });
      assert.deepEqual(await channel.read({ timeoutMs: 5_000 }), { type: "echo", value: "still here" });
      await channel.close();
      assert.equal(await channel.read({ timeoutMs: 5_000 }), undefined);
    });

    it("still serves new streams after those failures", async () => {
      const channel = createFrameChannel(await nodeA.openStream(nodeB.peerId, testProtocol), {
        maxFrameBytes: 1024,
      });
      await channel.write({ type: "echo", value: "again" });
      assert.deepEqual(await channel.read({ timeoutMs: 5_000 }), { type: "echo", value: "again" });
      await channel.close();
      assert.equal(await channel.read({ timeoutMs: 5_000 }), undefined);
      assert.equal(served.at(-1), nodeA.peerId);
    });
  });
});

describe("bootstrap redial", () => {
  const nodes: MycelNode[] = [];
  after(async () => {
    await Promise.all(nodes.map((node) => node.stop()));
  });

  it("logs an unreachable bootstrap peer instead of throwing, and refuses addresses without /p2p/", async () => {
    const unreachableKey = libp2pKeyFromSecp256k1(randomEthereumKey());
    const unreachableId = peerIdFromPrivateKey(unreachableKey).toString();
    const warnings: string[] = [];
    const logger = {
      debug: () => {},
      info: () => {},
      warn: (message: string) => warnings.push(message),
      error: () => {},
      child: () => logger,
    };
    const node = await createMycelNode({
      privateKey: libp2pKeyFromSecp256k1(randomEthereumKey()),
      bootstrap: [`/ip4/127.0.0.1/tcp/9/p2p/${unreachableId}`],
      logger,
    });
    nodes.push(node);
    assert.equal(warnings.length, 1);
    await assert.rejects(
      createMycelNode({ privateKey: unreachableKey, bootstrap: ["/ip4/127.0.0.1/tcp/9"] }),
      InvalidInputError,
    );
  });

  it("re-dials a bootstrap peer after the connection drops", async () => {
    const bootstrapNode = await createMycelNode({ privateKey: libp2pKeyFromSecp256k1(randomEthereumKey()) });
    nodes.push(bootstrapNode);
    const node = await createMycelNode({
      privateKey: libp2pKeyFromSecp256k1(randomEthereumKey()),
      bootstrap: bootstrapNode.multiaddrs(),
      bootstrapRedialIntervalMs: 300,
    });
    nodes.push(node);
    const connected = () => node.libp2p.getConnections(bootstrapNode.libp2p.peerId).length > 0 || undefined;
    assert.ok(connected());
    await node.libp2p.hangUp(bootstrapNode.libp2p.peerId);
    assert.ok(!connected(), "disconnected");
    const redialed = new Promise<void>((resolve) => {
      const onConnect = (event: CustomEvent) => {
        if (!bootstrapNode.libp2p.peerId.equals(event.detail)) return;
        node.libp2p.removeEventListener("peer:connect", onConnect);
        resolve();
      };
      node.libp2p.addEventListener("peer:connect", onConnect);
    });
    await withDeadline("the redial of the bootstrap peer", redialed, 5_000);
    assert.ok(connected(), "connected again");
  });

  it("walks the DHT for more peers, then waits longer while walks find nobody new", async () => {
    const bootstrapNode = await createMycelNode({ privateKey: libp2pKeyFromSecp256k1(randomEthereumKey()) });
    nodes.push(bootstrapNode);
    const node = await createMycelNode({
      privateKey: libp2pKeyFromSecp256k1(randomEthereumKey()),
      bootstrap: bootstrapNode.multiaddrs(),
      bootstrapRedialIntervalMs: 100,
    });
    nodes.push(node);
    const dht = node.libp2p.services.dht;
    const walk = dht.getClosestPeers.bind(dht);
    let walks = 0;
    dht.getClosestPeers = ((...args: Parameters<typeof walk>) => {
      walks++;
      return walk(...args);
    }) as typeof dht.getClosestPeers;
    // With one peer (fewer than it wants) a node used to walk at every maintenance tick, here every 100 ms. Its
    // walk at start met nobody new, so the next waits 5 s: a window of 1.5 s holds no walk (one if the first ran late).
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    assert.ok(walks <= 1, `${walks} DHT walks in 1.5 s`);
  });
});

describe("a network of 16 nodes on one host", () => {
  const nodes: MycelNode[] = [];
  after(async () => {
    await Promise.all(nodes.map((node) => node.stop()));
  });

  // Gossipsub's same-IP penalty graylists every peer once more than ~13 share an IP; 16 nodes would all go deaf.
  it("delivers gossip to every node (peers sharing 127.0.0.1 are not penalised)", async () => {
    const seed = await createMycelNode({ privateKey: libp2pKeyFromSecp256k1(randomEthereumKey()) });
    nodes.push(seed);
    for (let index = 1; index < 16; index++) {
      nodes.push(
        await createMycelNode({
          privateKey: libp2pKeyFromSecp256k1(randomEthereumKey()),
          bootstrap: seed.multiaddrs(),
        }),
      );
    }
    const topic = "mycel/test/network";
    const receivedBy = new Set<string>();
    let allReceived!: () => void;
    const arrived = new Promise<void>((resolve) => {
      allReceived = resolve;
    });
    for (const node of nodes)
      node.subscribe(topic, () => {
        receivedBy.add(node.peerId);
        if (receivedBy.size === nodes.length - 1) allReceived();
      });
    const publisher = nodes.at(-1) as MycelNode;
    let publishes = 0;
    await publishUntil(
      "every node to receive the gossip",
      () => publisher.publish(topic, new TextEncoder().encode(`round ${++publishes}`)),
      arrived,
      { everyMs: 500, timeoutMs: 20_000 },
    );
    assert.ok(!receivedBy.has(publisher.peerId), "no echo to the publisher");
  });
});
