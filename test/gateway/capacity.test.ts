/** The gateway's capacity rules and its waiting line, alone: room per provider, rests after busy, FIFO, deadlines. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ServiceUnavailableError } from "../../src/errors/index.ts";
import {
  busyRestMs,
  type CapacityPick,
  capacityOf,
  createCapacityQueue,
  hasRoom,
  type KnownProvider,
  restBusyProvider,
} from "../../src/gateway/index.ts";
import { streamLimits } from "../../src/protocol/index.ts";

function provider(capacity: { parallelism: number; max_queue: number }): KnownProvider {
  return {
    announcement: { capacity: { ...capacity, busy: 0, waiting: 0 } },
    peerId: "peer",
    address: "0x0",
    latencyMs: undefined,
    throughputTps: undefined,
    successes: 0,
    failures: 0,
    inFlight: 0,
    bannedUntil: 0,
    busyUntil: 0,
    busyStreak: 0,
    untrusted: false,
    reputation: undefined,
  } as unknown as KnownProvider;
}

describe("gateway capacity", () => {
  it("gives a provider as many requests as it announced it takes, within the streams it allows one peer", () => {
    assert.equal(capacityOf(provider({ parallelism: 1, max_queue: 1 })), 2);
    assert.equal(capacityOf(provider({ parallelism: 4, max_queue: 64 })), streamLimits.maxStreamsPerPeer);
    const small = provider({ parallelism: 1, max_queue: 0 });
    assert.equal(hasRoom(small), true);
    small.inFlight = 1;
    assert.equal(hasRoom(small), false, "full at its capacity");
  });

  it("rests a busy provider for what it asked, at least a rest that doubles with each refusal in a row", () => {
    const busy = provider({ parallelism: 1, max_queue: 0 });
    const rests: number[] = [];
    for (let index = 0; index < 4; index++) {
      const before = Date.now();
      restBusyProvider(busy, 0);
      rests.push(busy.busyUntil - before);
    }
    for (const [index, rest] of rests.entries()) {
      const expected = busyRestMs.min * 2 ** index;
      assert.ok(rest >= expected && rest <= expected + 20, `rest ${index}: ${rest} ms, about ${expected}`);
    }
    assert.equal(hasRoom(busy), false, "not asked while it rests");
    const asked = provider({ parallelism: 1, max_queue: 0 });
    restBusyProvider(asked, 5_000);
    assert.ok(asked.busyUntil - Date.now() > 4_900, "a longer retry-after is honoured");
    restBusyProvider(asked, 10 * 60_000);
    assert.ok(asked.busyUntil - Date.now() <= busyRestMs.max, "within the longest rest");
  });

  it("serves waiting requests in arrival order, lets a request for free room pass one that cannot use it, and refuses past the deadline", async () => {
    const queue = createCapacityQueue({ maxWaiting: 3, timeoutMs: 200 });
    const a = provider({ parallelism: 1, max_queue: 0 });
    const b = provider({ parallelism: 1, max_queue: 0 });
    a.inFlight = 1;
    b.inFlight = 1;
    const pickFrom = (entry: KnownProvider) => (): CapacityPick => (hasRoom(entry) ? entry : "full");
    const signal = new AbortController().signal;
    const order: string[] = [];
    const take = (name: string, entry: KnownProvider) =>
      queue.take({ pick: pickFrom(entry), arrivedAt: Date.now(), signal, model: "m" }).then((taken) => {
        order.push(name);
        return taken;
      });
    const firstOnA = take("first-a", a);
    const secondOnA = take("second-a", a);
    const onB = take("on-b", b);
    assert.equal(queue.stats().waiting, 3);
    b.inFlight = 0;
    queue.release();
    assert.equal(await onB, b, "room on b goes to the one waiting for b, past those waiting for a");
    assert.equal(b.inFlight, 1, "counted for it at once");
    a.inFlight = 0;
    queue.release();
    assert.equal(await firstOnA, a);
    await assert.rejects(secondOnA, (error) => {
      assert.ok(error instanceof ServiceUnavailableError);
      assert.equal(error.code, "queue_timeout");
      return true;
    });
    assert.deepEqual(order, ["on-b", "first-a"]);
    assert.equal(queue.stats().waiting, 0);
  });
});
