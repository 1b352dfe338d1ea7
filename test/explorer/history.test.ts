import assert from "node:assert/strict";
import { afterEach, describe, it, mock } from "node:test";
import { createNetworkHistory, defaultHistoryOptions } from "../../src/explorer/history.ts";
import type { HistoryPoint, ProviderView } from "../../src/explorer/index.ts";
import type { GatewayActivity } from "../../src/gateway/index.ts";
import { withDeadline } from "../helpers.ts";

/** A gateway with a provider table set by the test and activity the test emits. */
function fakeGateway(providers: ProviderView[] = []) {
  const listeners = new Set<(activity: GatewayActivity) => void>();
  return {
    providers,
    listeners,
    emit: (activity: GatewayActivity) => {
      for (const listener of listeners) listener(activity);
    },
    describeProviders: () => providers,
    subscribe(listener: (activity: GatewayActivity) => void) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
  };
}

function providerView(address: string, overrides: Partial<ProviderView> = {}): ProviderView {
  return {
    peer_id: `16Uiu2HAm${address.slice(2, 8)}`,
    address,
    models: [{ hash: `0x${"12".repeat(32)}`, name: "tiny", context_size: 2048 }],
    price_per_million: { input: "100", output: "200" },
    latency_ms: 35,
    throughput_tps: 42.5,
    in_flight: 1,
    successes: 3,
    failures: 0,
    load: 0.25,
    parallelism: 4,
    waiting: 0,
    banned: false,
    untrusted: false,
    status: "online",
    reputation: 1,
    announced_at: 1,
    expires_at: 2,
    ...overrides,
  };
}

const requestId = `0x${"ab".repeat(32)}` as const;
/** Large enough that the timer never fires during a test: points are taken with sample(). */
const manual = { intervalMs: 3_600_000 };

/** Makes Date.now read whatever `clock.now` is set to until the test ends. */
function mockClock(start: number) {
  const clock = { now: start };
  mock.method(Date, "now", () => clock.now);
  return clock;
}

describe("explorer: network history", () => {
  afterEach(() => mock.restoreAll());

  it("defaults to a point every 5 s, the last hour kept", () => {
    const history = createNetworkHistory({ source: fakeGateway() });
    try {
      assert.equal(history.intervalMs, 5_000);
      assert.equal(history.capacity, 720);
      assert.deepEqual(defaultHistoryOptions, { intervalMs: 5_000, capacity: 720 });
      assert.deepEqual(history.points(), [], "no point before the first interval");
    } finally {
      history.stop();
    }
  });

  it("turns the activity between two samples into tokens per second and completed requests", () => {
    const clock = mockClock(100_000);
    const gateway = fakeGateway();
    const history = createNetworkHistory({ source: gateway, ...manual });
    try {
      gateway.emit({ type: "tokens", provider: "0x01", count: 30 });
      gateway.emit({ type: "tokens", provider: "0x02", count: 20 });
      gateway.emit({ type: "receipt", requestId, segment: 0 });
      gateway.emit({ type: "completed", requestId });
      gateway.emit({ type: "completed", requestId });
      clock.now = 102_000;
      const point = history.sample();
      assert.deepEqual(point, { t: 102_000, tokens_per_second: 25, requests: 2, providers: [] });

      clock.now = 102_500;
      gateway.emit({ type: "tokens", provider: "0x01", count: 10 });
      gateway.emit({ type: "completed", requestId });
      const next = history.sample();
      assert.equal(next.tokens_per_second, 20, "10 tokens over the 0.5 s since the last sample");
      assert.equal(next.requests, 1, "the counters start again after each sample");

      clock.now = 104_500;
      assert.deepEqual(
        history.sample(),
        { t: 104_500, tokens_per_second: 0, requests: 0, providers: [] },
        "a quiet interval",
      );
      assert.deepEqual(
        history.points().map((kept) => kept.t),
        [102_000, 102_500, 104_500],
        "oldest first",
      );
    } finally {
      history.stop();
    }
  });

  it("does not divide by zero when two samples share a millisecond", () => {
    const clock = mockClock(5_000);
    const gateway = fakeGateway();
    const history = createNetworkHistory({ source: gateway, ...manual });
    try {
      clock.now = 6_000;
      history.sample();
      gateway.emit({ type: "tokens", provider: "0x01", count: 3 });
      const point = history.sample();
      assert.ok(Number.isFinite(point.tokens_per_second), `finite: ${point.tokens_per_second}`);
      assert.ok(point.tokens_per_second > 0);
    } finally {
      history.stop();
    }
  });

  it("keeps only the newest `capacity` points", () => {
    const clock = mockClock(0);
    const history = createNetworkHistory({ source: fakeGateway(), ...manual, capacity: 3 });
    try {
      assert.equal(history.capacity, 3);
      for (let second = 1; second <= 5; second += 1) {
        clock.now = second * 1000;
        history.sample();
      }
      assert.deepEqual(
        history.points().map((point) => point.t),
        [3000, 4000, 5000],
        "the two oldest dropped",
      );
      history.points().pop();
      assert.equal(history.points().length, 3, "points() hands out a copy");
    } finally {
      history.stop();
    }
  });

  it("lists every provider but the expired ones, with their figures", () => {
    mockClock(1_000);
    const gateway = fakeGateway([
      providerView("0x1111111111111111111111111111111111111111"),
      providerView("0x2222222222222222222222222222222222222222", { status: "expired" }),
      providerView("0x3333333333333333333333333333333333333333", {
        status: "busy",
        latency_ms: null,
        throughput_tps: null,
        price_per_million: { input: "1", output: "999" },
        in_flight: 4,
        load: 1,
      }),
      providerView("0x4444444444444444444444444444444444444444", { status: "banned" }),
    ]);
    const history = createNetworkHistory({ source: gateway, ...manual });
    try {
      const point = history.sample();
      assert.deepEqual(point.providers, [
        {
          address: "0x1111111111111111111111111111111111111111",
          latency_ms: 35,
          throughput_tps: 42.5,
          price_output: "200",
          in_flight: 1,
          load: 0.25,
        },
        {
          address: "0x3333333333333333333333333333333333333333",
          latency_ms: null,
          throughput_tps: null,
          price_output: "999",
          in_flight: 4,
          load: 1,
        },
        {
          address: "0x4444444444444444444444444444444444444444",
          latency_ms: 35,
          throughput_tps: 42.5,
          price_output: "200",
          in_flight: 1,
          load: 0.25,
        },
      ]);
      gateway.providers.splice(0, gateway.providers.length);
      assert.deepEqual(history.sample().providers, [], "read again at each sample");
    } finally {
      history.stop();
    }
  });

  it("hands each point to its listeners until they unsubscribe", () => {
    mockClock(1_000);
    const history = createNetworkHistory({ source: fakeGateway(), ...manual });
    try {
      const first: HistoryPoint[] = [];
      const second: HistoryPoint[] = [];
      const stopFirst = history.onPoint((point) => first.push(point));
      history.onPoint((point) => second.push(point));
      const one = history.sample();
      stopFirst();
      const two = history.sample();
      assert.deepEqual(first, [one], "no points after unsubscribing");
      assert.deepEqual(second, [one, two]);
      assert.equal(second[0], one, "the same object sample() returns");
    } finally {
      history.stop();
    }
  });

  it("samples on its timer until stopped, and stop() lets go of the gateway and the listeners", async () => {
    const gateway = fakeGateway();
    const history = createNetworkHistory({ source: gateway, intervalMs: 20 });
    const timed: HistoryPoint[] = [];
    let tookTwo!: () => void;
    const twoTaken = new Promise<void>((resolve) => {
      tookTwo = resolve;
    });
    history.onPoint((point) => {
      timed.push(point);
      if (timed.length === 2) tookTwo();
    });
    assert.equal(gateway.listeners.size, 1, "subscribed to the gateway");
    await withDeadline("two points from the 20 ms timer", twoTaken, 5_000);
    assert.ok(timed.length >= 2, `the timer took ${timed.length} points`);

    history.stop();
    assert.equal(gateway.listeners.size, 0, "unsubscribed from the gateway");
    const taken = history.points().length;
    // A fixed wait on purpose: what is tested is that nothing happens while five 20 ms intervals pass.
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(history.points().length, taken, "no points after stop()");
    const seen = timed.length;
    history.sample();
    assert.equal(timed.length, seen, "listeners are dropped on stop()");
  });
});
