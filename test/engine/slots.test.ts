import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createSlotPool } from "../../src/engine/index.ts";
import { QueueFullError } from "../../src/errors/index.ts";

describe("slot pool", () => {
  it("hands slots out in arrival order and refuses beyond the queue bound", async () => {
    const pool = createSlotPool({ slots: ["a"], maxWaiting: 2, retryAfterSeconds: 3 });
    const first = await pool.acquire();
    const order: string[] = [];
    const second = pool.acquire().then((lease) => {
      order.push("second");
      return lease;
    });
    const third = pool.acquire().then((lease) => {
      order.push("third");
      return lease;
    });
    await assert.rejects(
      pool.acquire(),
      (error: unknown) => error instanceof QueueFullError && error.retryAfterSeconds === 3,
    );
    assert.deepEqual(pool.stats(), { total: 1, busy: 1, waiting: 2, maxWaiting: 2 });
    first.release();
    (await second).release();
    (await third).release();
    assert.deepEqual(order, ["second", "third"]);
    assert.deepEqual(pool.stats(), { total: 1, busy: 0, waiting: 0, maxWaiting: 2 });
  });

  it("drops an aborted waiter from the queue", async () => {
    const pool = createSlotPool({ slots: [1], maxWaiting: 1 });
    const held = await pool.acquire();
    const controller = new AbortController();
    const waiting = pool.acquire({ signal: controller.signal });
    controller.abort(new Error("gone"));
    await assert.rejects(waiting, /gone/);
    assert.equal(pool.stats().waiting, 0);
    held.release();
    const again = await pool.acquire();
    assert.equal(again.slot, 1);
    again.release();
    again.release();
    assert.equal(pool.stats().busy, 0, "a double release frees once");
  });
});
