/**
 * `/mycel/announcements/1.0.0` over the memory network: the server's caps (count, bytes, one snapshot per peer per
 * interval), the keeper that holds what a provider or relay serves, and a gateway taking a hostile snapshot in: it
 * keeps the valid, staked entries and drops forged, expired and unstaked ones, and one bad snapshot does not spoil
 * another peer's good one.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createProviderTable, type ProviderRegistration, startSnapshots } from "../../src/gateway/index.ts";
import { devPrivateKey } from "../../src/identity/index.ts";
import { createLogger, silentLogger } from "../../src/log/index.ts";
import type { GossipMessage, IdentifiedPeer } from "../../src/p2p/index.ts";
import { peerIdOfSecp256k1Key } from "../../src/p2p/index.ts";
import {
  type Announcement,
  announcementSnapshotProtocolId,
  signAnnouncement,
  wireVersion,
} from "../../src/protocol/index.ts";
import {
  fetchAnnouncementSnapshot,
  keepAnnouncements,
  serveAnnouncementSnapshot,
  serveFramed,
  snapshotOf,
  WireError,
} from "../../src/protocols/index.ts";
import { createMemoryNetwork } from "../fixtures/memoryNetwork.ts";

const modelHash = `0x${"ab".repeat(32)}`;

/** A provider's announcement signed with its key; `issuedAgoMs` and `ttlMs` shape its validity window. */
async function announcementOf(
  label: string,
  parameters: { issuedAgoMs?: number; ttlMs?: number; now?: number } = {},
) {
  const issuedAt = (parameters.now ?? Date.now()) - (parameters.issuedAgoMs ?? 0);
  const privateKey = devPrivateKey(`snapshot-test:${label}`);
  return signAnnouncement({
    privateKey,
    announcement: {
      peer_id: peerIdOfSecp256k1Key(privateKey),
      multiaddrs: [`/ip4/127.0.0.1/tcp/4001/p2p/${peerIdOfSecp256k1Key(privateKey)}`],
      models: [{ hash: modelHash, name: "tiny", context_size: 2048 }],
      price: { input: "1", output: "1" },
      capacity: { parallelism: 1, max_queue: 8, busy: 0, waiting: 0 },
      version: "test",
      issued_at: issuedAt,
      expires_at: issuedAt + (parameters.ttlMs ?? 20_000),
    },
  });
}

function registrationOf(announcement: Announcement): ProviderRegistration {
  return {
    active: true,
    peerId: announcement.peer_id,
    offers: [{ modelHash, inputPricePerMillion: 1n, outputPricePerMillion: 1n }],
  };
}

/** A memory node that can also tell listeners a peer was identified (what discovery waits for). */
function gatewayNode(network: ReturnType<typeof createMemoryNetwork>, peerId: string) {
  const node = network.node(peerId);
  const listeners = new Set<(peer: IdentifiedPeer) => void>();
  return {
    ...node,
    connectionKind: () => "direct" as const,
    onPeerIdentified(listener: (peer: IdentifiedPeer) => void) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    identified(peer: string) {
      for (const listener of listeners)
        listener({ peerId: peer, protocols: [announcementSnapshotProtocolId] });
    },
  };
}

describe("announcement snapshots", () => {
  it("serves at most the cap, newest first, within the byte cap, without expired entries", async () => {
    const now = Date.now();
    const fresh = await Promise.all(
      [0, 1, 2, 3, 4].map((index) => announcementOf(`cap-${index}`, { issuedAgoMs: index * 100, now })),
    );
    const expired = await announcementOf("cap-expired", { issuedAgoMs: 30_000 });
    const chosen = snapshotOf([expired, ...fresh].reverse(), {
      limits: {
        maxAnnouncements: 3,
        maxFrameBytes: 1 << 20,
        maxInboundStreams: 1,
        minIntervalPerPeerMs: 0,
        replyTimeoutMs: 1_000,
      },
    });
    assert.deepEqual(
      chosen.map((entry) => entry.peer_id),
      fresh.slice(0, 3).map((entry) => entry.peer_id),
    );
    const oneSize = JSON.stringify(fresh[0]).length;
    const byBytes = snapshotOf(fresh, {
      limits: {
        maxAnnouncements: 100,
        maxFrameBytes: 256 + 2 * (oneSize + 1) + 10,
        maxInboundStreams: 1,
        minIntervalPerPeerMs: 0,
        replyTimeoutMs: 1_000,
      },
    });
    assert.equal(byBytes.length, 2, "only two fit in the frame");

    const network = createMemoryNetwork();
    const server = network.node("server");
    await serveAnnouncementSnapshot({ node: server }, { held: () => fresh, limits: { maxAnnouncements: 4 } });
    const asker = network.node("asker");
    const received = await fetchAnnouncementSnapshot({ node: asker }, { peerId: "server" });
    assert.equal(received.announcements.length, 4);
    assert.equal(received.beyondCap, 0);
    // The same peer again within the interval: refused, with when to come back; another peer is served.
    await assert.rejects(
      fetchAnnouncementSnapshot({ node: asker }, { peerId: "server" }),
      (error: unknown) => {
        assert.ok(error instanceof WireError);
        assert.equal(error.code, "busy");
        assert.ok((error.retryAfterMs ?? 0) > 0);
        return true;
      },
    );
    const other = await fetchAnnouncementSnapshot({ node: network.node("other") }, { peerId: "server" });
    assert.equal(other.announcements.length, 4);
  });

  it("an asker drops what a server sends beyond the cap", async () => {
    const network = createMemoryNetwork();
    const server = network.node("greedy");
    await serveFramed(
      { node: server },
      {
        protocol: announcementSnapshotProtocolId,
        limits: { maxFrameBytes: 1 << 20, maxInboundStreams: 1 },
        serve: async (channel) => {
          await channel.write({ v: wireVersion, type: "announcements", announcements: [1, 2, 3, 4, 5] });
        },
      },
    );
    const received = await fetchAnnouncementSnapshot(
      { node: network.node("asker") },
      { peerId: "greedy", limits: { maxAnnouncements: 3 } },
    );
    assert.deepEqual(received.announcements, [1, 2, 3]);
    assert.equal(received.beyondCap, 2);
  });

  it("a keeper holds each peer's latest verified announcement, up to its cap", async () => {
    let deliver: ((message: GossipMessage) => void) | undefined;
    const refused: string[] = [];
    const logger = createLogger({ level: "debug", format: "json", write: (line) => refused.push(line) });
    const keeper = keepAnnouncements(
      {
        node: {
          subscribe: (_topic, onMessage) => {
            deliver = onMessage;
            return () => undefined;
          },
        },
        logger,
      },
      { maxHeld: 2 },
    );
    const send = (value: unknown, relayedBy: string) =>
      deliver?.({ relayedBy, data: new TextEncoder().encode(JSON.stringify(value)) } as GossipMessage);
    const [first, second, third] = (await Promise.all(
      ["k1", "k2", "k3"].map((label) => announcementOf(label)),
    )) as [Announcement, Announcement, Announcement];
    const tampered = (announcement: Announcement) => ({
      ...announcement,
      price: { input: "0", output: "0" },
    });
    /** Resolves once `count` announcements were refused (each check is asynchronous); 10 s at most. */
    const refusals = async (count: number) => {
      for (let tries = 0; refused.length < count && tries < 1_000; tries++)
        await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(refused.length, count, refused.join("\n"));
    };
    send(tampered(first), first.peer_id);
    // Gossip is unsigned by libp2p: an announcement relayed by another peer is its author's all the same.
    send(first, "someone-else");
    send(second, second.peer_id);
    await refusals(1);
    for (let tries = 0; keeper.held().length < 2 && tries < 1_000; tries++)
      await new Promise((resolve) => setTimeout(resolve, 10));
    // Full: the third peer's valid announcement is not held; the tampered one sent after it marks when it was checked.
    send(third, third.peer_id);
    send(tampered(third), "someone-else");
    await refusals(2);
    // A forgery naming a peer whose fresh announcement is held is skipped unchecked: the held one stays.
    send(tampered(first), "someone-else");
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(refused.length, 2, "a forgery naming a held peer costs no check");
    const held = keeper.held();
    assert.deepEqual(
      held.map((entry) => entry.peer_id).sort(),
      [first.peer_id, second.peer_id].sort(),
      "the forged ones and the one beyond the cap are not held; the one relayed by another peer is",
    );
    assert.equal(held.find((entry) => entry.peer_id === first.peer_id)?.price.input, "1");
  });

  it("a gateway keeps valid staked entries and drops forged, expired and unstaked ones", async () => {
    const network = createMemoryNetwork();
    const [valid, alsoValid, unstaked, fromHonest] = await Promise.all(
      ["valid", "also-valid", "unstaked", "from-honest"].map((label) => announcementOf(label)),
    );
    const expired = await announcementOf("expired", { issuedAgoMs: 30_000 });
    const forgedBase = await announcementOf("forged");
    const forged = { ...forgedBase, price: { input: "0", output: "0" } };
    const staked = [valid, alsoValid, expired, forgedBase, fromHonest] as Announcement[];
    const hostile = network.node("hostile");
    await serveFramed(
      { node: hostile },
      {
        protocol: announcementSnapshotProtocolId,
        limits: { maxFrameBytes: 1 << 20, maxInboundStreams: 1 },
        serve: async (channel) => {
          await channel.write({
            v: wireVersion,
            type: "announcements",
            announcements: [forged, valid, expired, unstaked, { peer_id: 7 }, alsoValid],
          });
        },
      },
    );
    await serveAnnouncementSnapshot(
      { node: network.node("honest") },
      { held: () => [fromHonest as Announcement, valid as Announcement] },
    );

    const lines: string[] = [];
    const logger = createLogger({ level: "info", format: "json", write: (line) => lines.push(line) });
    const node = gatewayNode(network, "gateway");
    const table = createProviderTable({ node, logger: silentLogger });
    let listed = false;
    const stopController = new AbortController();
    const snapshots = startSnapshots({
      node,
      table,
      logger,
      signal: stopController.signal,
      stakedAs: async (address, peerId) => {
        listed = true;
        const announcement = staked.find((entry) => entry.address.toLowerCase() === address.toLowerCase());
        return announcement && announcement.peer_id === peerId ? registrationOf(announcement) : null;
      },
    });
    try {
      node.identified("hostile");
      await snapshots.firstTakenWithin(5_000);
      node.identified("honest");
      node.identified("hostile");
      for (let tries = 0; !table.get(fromHonest?.peer_id as string) && tries < 1_000; tries++)
        await new Promise((resolve) => setTimeout(resolve, 10));
      assert.ok(listed);
      const kept = table
        .all()
        .map((entry) => entry.peerId)
        .sort();
      assert.deepEqual(kept, [valid, alsoValid, fromHonest].map((entry) => entry?.peer_id).sort());
      // Routable at once: the chain's registration came with the entry.
      assert.equal(table.get(valid?.peer_id as string)?.registration?.peerId, valid?.peer_id);
      // The hostile peer was asked once and logged for its forged entries.
      assert.equal(node.opened.filter((entry) => entry.peerId === "hostile").length, 1);
      const warned = lines.map((line) => JSON.parse(line)).find((line) => line.peer === "hostile");
      assert.equal(warned?.level, "warn");
      assert.equal(warned?.forged, 2, "the tampered one and the malformed one");
      assert.equal(warned?.unstaked, 1);
      assert.equal(warned?.refused, 1, "the expired one");
      assert.equal(warned?.accepted, 2);
      const honest = lines.map((line) => JSON.parse(line)).find((line) => line.peer === "honest");
      assert.deepEqual([honest?.accepted, honest?.known], [1, 1]);
    } finally {
      stopController.abort();
      snapshots.stop();
      table.stop();
    }
  });
});
