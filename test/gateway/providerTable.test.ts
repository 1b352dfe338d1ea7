/**
 * A gateway's provider table on gossip: a provider's repeat of its held announcement (new times, same content) is not
 * checked while the held one is fresh, and is not taken either (a forged repeat changes nothing); a changed one is
 * checked and taken at once; near the held one's expiry a repeat is checked, and a forged one refused.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createProviderTable } from "../../src/gateway/index.ts";
import { devPrivateKey } from "../../src/identity/index.ts";
import { createLogger } from "../../src/log/index.ts";
import { type GossipMessage, peerIdOfSecp256k1Key } from "../../src/p2p/index.ts";
import { type Announcement, signAnnouncement } from "../../src/protocol/index.ts";

const privateKey = devPrivateKey("provider-table-test");
const peerId = peerIdOfSecp256k1Key(privateKey);

/** The provider's announcement issued at `issuedAt`, `busy` requests running. */
function announcementOf(issuedAt: number, busy = 0) {
  return signAnnouncement({
    privateKey,
    announcement: {
      peer_id: peerId,
      multiaddrs: [`/ip4/127.0.0.1/tcp/4001/p2p/${peerId}`],
      models: [{ hash: `0x${"ab".repeat(32)}`, name: "tiny", context_size: 2048 }],
      price: { input: "1", output: "1" },
      capacity: { parallelism: 1, max_queue: 8, busy, waiting: 0 },
      version: "test",
      issued_at: issuedAt,
      expires_at: issuedAt + 20_000,
    },
  });
}

/** The same content with new times, "signed" with the held one's signature: what a forger replays. */
function forgedRepeat(held: Announcement, issuedAt: number): Announcement {
  return { ...held, issued_at: issuedAt, expires_at: issuedAt + 20_000 };
}

/** A provider table fed by hand (what gossip delivers), and the refusals it logs. */
function tableOnGossip() {
  let deliver: ((message: GossipMessage) => void) | undefined;
  const refused: string[] = [];
  const logger = createLogger({
    level: "debug",
    format: "json",
    write: (line) => {
      if (line.includes("announcement refused")) refused.push(line);
    },
  });
  const table = createProviderTable({
    node: {
      subscribe: (_topic, onMessage) => {
        deliver = onMessage;
        return () => undefined;
      },
      addPeerAddresses: async () => undefined,
    },
    logger,
  });
  return {
    refused,
    held: () => table.get(peerId)?.announcement,
    send: (value: unknown) =>
      deliver?.({
        relayedBy: "relay",
        data: new TextEncoder().encode(JSON.stringify(value)),
      } as GossipMessage),
  };
}

/** Resolves once `check` holds (each announcement is checked asynchronously); 10 s at most. */
async function until(check: () => boolean, what: string) {
  for (let tries = 0; !check() && tries < 1_000; tries++)
    await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(check(), what);
}

describe("provider table", () => {
  it("does not check a repeat of a fresh announcement, nor take it; checks and takes a changed one at once", async () => {
    const { refused, held, send } = tableOnGossip();
    const now = Date.now();
    const first = await announcementOf(now - 1_000);
    send(first);
    await until(() => held()?.issued_at === first.issued_at, "the first announcement is taken");
    // Fresh (19 s left): a forged repeat is skipped unchecked and not taken; so is the provider's own repeat.
    send(forgedRepeat(first, now));
    send(await announcementOf(now));
    // A changed one (a request running) is checked and taken at once; its check marks when theirs would have ended.
    const changed = await announcementOf(now - 500, 1);
    send(changed);
    await until(() => held()?.capacity.busy === 1, "the changed announcement is taken at once");
    assert.equal(refused.length, 0, `the forged repeat was not checked: ${refused.join("\n")}`);
    assert.equal(held()?.issued_at, changed.issued_at, "neither repeat was taken (both are newer than it)");
  });

  it("checks a repeat once the held announcement nears its expiry: a forged one is refused, the genuine one taken", async () => {
    const { refused, held, send } = tableOnGossip();
    const now = Date.now();
    const ageing = await announcementOf(now - 12_000);
    send(ageing);
    await until(() => held()?.issued_at === ageing.issued_at, "the ageing announcement is taken");
    send(forgedRepeat(ageing, now));
    await until(() => refused.length === 1, "the forged repeat is checked and refused");
    assert.equal(held()?.expires_at, ageing.expires_at, "the forged repeat did not extend the held one");
    const repeat = await announcementOf(now);
    send(repeat);
    await until(() => held()?.issued_at === repeat.issued_at, "the genuine repeat is taken");
  });
});
