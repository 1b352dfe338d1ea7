import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { peerIdFromPrivateKey, peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import { roleDefaults } from "../../src/config/index.ts";
import { InvalidInputError } from "../../src/errors/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import {
  createFrameChannel,
  createMycelNode,
  joinsFromBehindNat,
  judgeReachability,
  libp2pKeyFromSecp256k1,
  type MycelNode,
  RELAY_MAX_RESERVATIONS_PER_HOST,
  type ReachabilityComponents,
  reachabilityService,
} from "../../src/p2p/index.ts";
import { waitFor, withDeadline } from "../helpers.ts";

const echoProtocol = "/mycel/test-relay-echo/1.0.0";

function randomKey() {
  return libp2pKeyFromSecp256k1(`0x${randomBytes(32).toString("hex")}`);
}

const relayLimits = {
  maxReservations: roleDefaults.relayMaxReservations,
  durationLimitSeconds: roleDefaults.relayDurationLimitSeconds,
};

describe("reachability, relays and hole punching (in process, loopback)", () => {
  const nodes: MycelNode[] = [];
  let relay: MycelNode;
  let hidden: MycelNode;
  let dialer: MycelNode;
  const dataLimitBytes = 64 * 1024;

  before(async () => {
    relay = await createMycelNode({
      privateKey: randomKey(),
      relay: { offer: "always", ...relayLimits, dataLimitBytes },
    });
    nodes.push(relay);
    // Listens on nothing: reachable only through the relay it bootstraps from.
    hidden = await createMycelNode({
      privateKey: randomKey(),
      listen: ["none"],
      bootstrap: relay.multiaddrs(),
    });
    nodes.push(hidden);
    // Listens on nothing either (a gateway at home): the hidden node cannot dial it directly, so they meet through
    // the relay (its own reservations aside).
    dialer = await createMycelNode({
      privateKey: randomKey(),
      listen: ["none"],
      bootstrap: relay.multiaddrs(),
    });
    nodes.push(dialer);
    await hidden.handleProtocol(
      echoProtocol,
      async (stream) => {
        const channel = createFrameChannel(stream);
        for (;;) {
          const frame = await channel.read({ timeoutMs: 10_000 });
          if (frame === undefined) return;
          await channel.write(frame);
        }
      },
      { runOnLimitedConnection: true },
    );
  });

  after(async () => {
    await Promise.all(nodes.map((node) => node.stop()));
  });

  it("refuses a listen address of none beside others", async () => {
    await assert.rejects(
      createMycelNode({ privateKey: randomKey(), listen: ["none", "/ip4/127.0.0.1/tcp/0"] }),
      InvalidInputError,
    );
  });

  it("a node joining public peers from private addresses is behind a NAT (a DHT client until found reachable)", () => {
    const publicPeer = [multiaddr("/ip4/81.2.69.142/tcp/4001/p2p/16Uiu2HAmRelay")];
    const localPeer = [multiaddr("/ip4/127.0.0.1/tcp/4001/p2p/16Uiu2HAmRelay")];
    const base = { listenNone: false, announce: [], interfaceAddresses: ["127.0.0.1", "192.168.1.2"] };
    const behind = (listen: string[], bootstrap = publicPeer, more = {}) =>
      joinsFromBehindNat({ ...base, listen, bootstrap, ...more });
    assert.equal(behind(["/ip4/192.168.1.2/tcp/4001"]), true);
    assert.equal(behind(["/ip4/0.0.0.0/tcp/4001"]), true, "a wildcard binds only private interfaces");
    assert.equal(behind([], publicPeer, { listenNone: true }), true);
    // A devnet or a LAN: its bootstrap peers are private too.
    assert.equal(behind(["/ip4/127.0.0.1/tcp/0"], localPeer), false);
    assert.equal(behind(["/ip4/192.168.1.2/tcp/4001"], []), false);
    // A public address to listen on, on an interface, or announced by hand.
    assert.equal(behind(["/ip4/81.2.69.143/tcp/4001"]), false);
    assert.equal(
      behind(["/ip4/0.0.0.0/tcp/4001"], publicPeer, { interfaceAddresses: ["10.0.0.2", "81.2.69.143"] }),
      false,
    );
    assert.equal(
      behind(["/ip4/192.168.1.2/tcp/4001"], publicPeer, { announce: ["/ip4/81.2.69.143/tcp/4001"] }),
      false,
    );
  });

  it("behind a NAT, asks for no more relay slots than relays it knows: one at first, one more with a second relay", () => {
    // A `/p2p-circuit` listener without a reservation makes libp2p's relay transport walk the DHT without pause.
    const listened: string[][] = [];
    const events = new EventTarget();
    const components = {
      addressManager: {
        getAddressesWithMetadata: () => [
          { multiaddr: multiaddr("/ip4/192.168.1.2/tcp/4001"), verified: false, type: "transport" },
        ],
      },
      transportManager: {
        listen: async (addresses: { toString(): string }[]) => {
          listened.push(addresses.map(String));
        },
      },
      connectionManager: { getConnections: () => [] },
      events,
    } as unknown as ReachabilityComponents;
    const service = reachabilityService({ logger: silentLogger, listens: true, checkIntervalMs: 60_000 })(
      components,
    );
    service.start();
    service.afterStart();
    try {
      assert.equal(service.current().status, "private");
      assert.deepEqual(listened, [["/p2p-circuit"]], "one slot while no relay is known");
      const identify = (peerId: string, protocols: string[]) =>
        events.dispatchEvent(
          new CustomEvent("peer:identify", { detail: { peerId: peerIdFromString(peerId), protocols } }),
        );
      const [relayA, relayB, relayC, plain] = Array.from({ length: 4 }, () =>
        peerIdFromPrivateKey(randomKey()).toString(),
      ) as [string, string, string, string];
      identify(relayA, ["/libp2p/circuit/relay/0.2.0/hop"]);
      identify(plain, ["/ipfs/id/1.0.0"]);
      identify(relayA, ["/libp2p/circuit/relay/0.2.0/hop"]);
      assert.equal(
        listened.length,
        1,
        "the first relay fills the first slot; a plain peer counts for nothing",
      );
      identify(relayB, ["/libp2p/circuit/relay/0.2.0/hop"]);
      assert.deepEqual(listened, [["/p2p-circuit"], ["/p2p-circuit"]], "a second relay: a second slot");
      identify(relayC, ["/libp2p/circuit/relay/0.2.0/hop"]);
      assert.equal(listened.length, 2, `never more than ${2} slots`);
    } finally {
      service.stop();
    }
  });

  it("judges reachability from the address manager's view", () => {
    const address = (text: string, verified: boolean, type = "transport") => ({
      multiaddr: multiaddr(text),
      verified,
      type,
    });
    assert.deepEqual(judgeReachability({ addresses: [], decided: false }), {
      status: "private",
      addresses: [],
    });
    assert.equal(
      judgeReachability({ addresses: [address("/ip4/127.0.0.1/tcp/1", true)], decided: false }).status,
      "private",
    );
    assert.equal(
      judgeReachability({ addresses: [address("/ip4/8.8.8.8/tcp/1", false)], decided: false }).status,
      "unknown",
    );
    assert.equal(
      judgeReachability({ addresses: [address("/ip4/8.8.8.8/tcp/1", false)], decided: true }).status,
      "private",
    );
    assert.deepEqual(
      judgeReachability({ addresses: [address("/ip4/8.8.8.8/tcp/1", true, "observed")], decided: false }),
      { status: "public", addresses: ["/ip4/8.8.8.8/tcp/1"] },
    );
    // What the operator announces counts, even a private address (a relay inside a lab network).
    assert.equal(
      judgeReachability({ addresses: [address("/ip4/10.0.0.1/tcp/1", true, "announce")], decided: false })
        .status,
      "public",
    );
    // A relayed address is never a public one.
    assert.equal(
      judgeReachability({
        addresses: [address("/ip4/8.8.8.8/tcp/1/p2p-circuit", true)],
        decided: true,
      }).status,
      "private",
    );
  });

  it("a node that listens on nothing is private and gets a relayed address from its bootstrap relay", async () => {
    assert.equal(hidden.reachability().status, "private");
    const relayed = hidden.multiaddrs().filter((address) => address.includes("/p2p-circuit"));
    assert.ok(relayed.length > 0, `relayed addresses: ${hidden.multiaddrs().join(", ")}`);
    assert.ok(relayed[0]?.includes(`/p2p/${relay.peerId}/p2p-circuit/p2p/${hidden.peerId}`));
    assert.ok(!hidden.multiaddrs().some((address) => !address.includes("/p2p-circuit")));
  });

  it("serves a protocol that may run limited over the relay; the connection is relayed (no hole punch on loopback)", async () => {
    await dialer.addPeerAddresses(hidden.peerId, hidden.multiaddrs());
    const stream = await dialer.openStream(hidden.peerId, echoProtocol, { runOnLimitedConnection: true });
    const channel = createFrameChannel(stream);
    await channel.write({ hello: "through the relay" });
    assert.deepEqual(await channel.read({ timeoutMs: 10_000 }), { hello: "through the relay" });
    await channel.close();
    // DCUtR dials only public addresses: on loopback the connection stays relayed.
    assert.equal(dialer.connectionKind(hidden.peerId), "relayed");
    assert.equal(dialer.connectionKind(relay.peerId), "direct");
    assert.equal(dialer.connectionKind(peerIdFromPrivateKey(randomKey()).toString()), null);
  });

  it("refuses a protocol that may not run limited over a relayed connection", async () => {
    await hidden.handleProtocol("/mycel/test-direct-only/1.0.0", async () => undefined);
    await assert.rejects(dialer.openStream(hidden.peerId, "/mycel/test-direct-only/1.0.0"));
  });

  it("streams share one relayed connection, and nothing but the node's own protocols dials through a relay", async () => {
    const hiddenId = peerIdFromString(hidden.peerId);
    const before = dialer.libp2p.getConnections(hiddenId).map((connection) => connection.id);
    assert.equal(before.length, 1, "one relayed connection after the first stream");
    for (let round = 0; round < 4; round++) {
      const channel = createFrameChannel(
        await dialer.openStream(hidden.peerId, echoProtocol, { runOnLimitedConnection: true }),
      );
      await channel.write({ round });
      assert.deepEqual(await channel.read({ timeoutMs: 10_000 }), { round });
      await channel.close();
    }
    assert.deepEqual(
      dialer.libp2p.getConnections(hiddenId).map((connection) => connection.id),
      before,
      "every stream ran on the same relayed connection",
    );
    // A dial that is not one of the node's protocols (the DHT's, gossip's) may not open a relayed connection: those
    // protocols cannot run on it, so each such dial would only cost the relay and the peer a connection.
    await dialer.libp2p.hangUp(hiddenId);
    await assert.rejects(dialer.libp2p.dial(hiddenId), /denied|no valid addresses/i);
    assert.equal(dialer.libp2p.getConnections(hiddenId).length, 0);
    const channel = createFrameChannel(
      await dialer.openStream(hidden.peerId, echoProtocol, { runOnLimitedConnection: true }),
    );
    await channel.write({ again: true });
    assert.deepEqual(await channel.read({ timeoutMs: 10_000 }), { again: true });
    await channel.close();
    assert.equal(dialer.connectionKind(hidden.peerId), "relayed");
  });

  it("the relay resets a relayed connection past its data limit", async () => {
    const stream = await dialer.openStream(hidden.peerId, echoProtocol, { runOnLimitedConnection: true });
    const channel = createFrameChannel(stream);
    const chunk = "x".repeat(8 * 1024);
    let echoed = 0;
    const failure = await withDeadline(
      "the relay's reset",
      (async () => {
        try {
          for (let index = 0; index < 64; index++) {
            await channel.write({ chunk });
            if ((await channel.read({ timeoutMs: 10_000 })) === undefined) return "closed";
            echoed += chunk.length * 2;
          }
          return "never reset";
        } catch (error) {
          return (error as Error).message;
        }
      })(),
      30_000,
    );
    assert.notEqual(failure, "never reset");
    assert.ok(echoed < dataLimitBytes, `echoed ${echoed} bytes past a ${dataLimitBytes}-byte limit`);
    assert.ok(echoed >= dataLimitBytes / 4, `reset after only ${echoed} bytes`);
  });

  it("a relay refuses reservations from one host past its share", async () => {
    // The hidden node and the dialer hold reservations from 127.0.0.1 already; strangers on that host get the rest.
    const held = relay.libp2p.services.relay?.reservations.size ?? 0;
    assert.equal(held, 2);
    const strangers: MycelNode[] = [];
    try {
      for (let index = 0; index < RELAY_MAX_RESERVATIONS_PER_HOST + 1; index++) {
        const stranger = await createMycelNode({ privateKey: randomKey(), listen: ["none"] });
        strangers.push(stranger);
        nodes.push(stranger);
      }
      await Promise.all(
        strangers.map((stranger) => stranger.libp2p.dial(multiaddr(relay.multiaddrs()[0] ?? ""))),
      );
      const relayed = await waitFor(
        "strangers' reservations to settle",
        () => {
          const count = strangers.filter((stranger) =>
            stranger.multiaddrs().some((address) => address.includes("/p2p-circuit")),
          ).length;
          const reservations = relay.libp2p.services.relay?.reservations.size ?? 0;
          return reservations >= RELAY_MAX_RESERVATIONS_PER_HOST ? { count, reservations } : undefined;
        },
        { timeoutMs: 20_000 },
      );
      // The relay may say yes before the stranger has its address: wait for the ones that got in to know it.
      relayed.count = await waitFor(
        "the admitted strangers' relayed addresses",
        () => {
          const count = strangers.filter((stranger) =>
            stranger.multiaddrs().some((address) => address.includes("/p2p-circuit")),
          ).length;
          return count >= RELAY_MAX_RESERVATIONS_PER_HOST - held ? count : undefined;
        },
        { timeoutMs: 10_000 },
      );
      assert.equal(relayed.reservations, RELAY_MAX_RESERVATIONS_PER_HOST);
      assert.equal(relayed.count, RELAY_MAX_RESERVATIONS_PER_HOST - held);
      // Still so a moment later: the refused ones did not get in by retrying.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      assert.equal(relay.libp2p.services.relay?.reservations.size, RELAY_MAX_RESERVATIONS_PER_HOST);
    } finally {
      await Promise.all(strangers.map((stranger) => stranger.stop()));
    }
  });

  it("a provider-like node does not relay while it is not publicly reachable", async () => {
    const privateRelay = await createMycelNode({
      privateKey: randomKey(),
      relay: { offer: "when-reachable", ...relayLimits, dataLimitBytes },
    });
    nodes.push(privateRelay);
    const asker = await createMycelNode({ privateKey: randomKey(), listen: ["none"] });
    nodes.push(asker);
    await asker.libp2p.dial(multiaddr(privateRelay.multiaddrs()[0] ?? ""));
    // The asker tries the relay once identify says it speaks the hop protocol: wait until it has, and failed.
    await waitFor("identify to run", async () =>
      (await asker.libp2p.peerStore.get(privateRelay.libp2p.peerId)).protocols.length > 0 ? true : undefined,
    );
    assert.equal(privateRelay.reachability().status, "private");
    assert.equal(privateRelay.libp2p.services.relay?.reservations.size, 0);
    assert.ok(!asker.multiaddrs().some((address) => address.includes("/p2p-circuit")));
  });
});
