/**
 * Admission of inference streams on a provider, in process: the pending budget (per peer, per host for strangers,
 * trusted peers pushing out the oldest stranger), serving capacity (per peer, in all, the strangers' share), and
 * serveInference's first-frame deadline over the memory network's real frame channels.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createFrameChannel } from "../../src/p2p/index.ts";
import { inferenceProtocolId, wireVersion } from "../../src/protocol/index.ts";
import {
  busyRetryAfterMs,
  createStreamAdmission,
  type StreamAdmissionLimits,
  StreamLimitError,
  serveInference,
} from "../../src/protocols/index.ts";
import { createMemoryNetwork } from "../fixtures/memoryNetwork.ts";

const limits: StreamAdmissionLimits = {
  maxStreamsPerPeer: 2,
  maxInboundStreams: 6,
  maxStrangerStreams: 3,
  maxPendingStreams: 6,
  maxPendingStreamsPerPeer: 2,
  maxPendingStreamsPerHost: 3,
};

const noEviction = () => assert.fail("nothing should be pushed out");

function refusal(code: string) {
  return (error: unknown) => {
    assert.ok(error instanceof StreamLimitError, `a StreamLimitError, not ${error}`);
    assert.equal(error.code, code);
    assert.equal(error.retryAfterMs, busyRetryAfterMs, "it says when to retry");
    return true;
  };
}

describe("stream admission budget", () => {
  it("caps the streams one peer may have waiting for their request", () => {
    const admission = createStreamAdmission(limits);
    const stream = { peerId: "p", host: "h", trusted: true, evict: noEviction };
    admission.admitPending(stream);
    const leave = admission.admitPending({ ...stream });
    assert.throws(() => admission.admitPending({ ...stream }), refusal("too_many_streams"));
    leave();
    leave(); // twice is harmless
    admission.admitPending({ ...stream });
    assert.equal(admission.counts().pending, 2);
  });

  it("caps strangers' waiting streams per host; trusted peers and other hosts are not held by it", () => {
    const admission = createStreamAdmission(limits);
    for (let index = 0; index < 3; index++)
      admission.admitPending({ peerId: `s${index}`, host: "a", trusted: false, evict: noEviction });
    assert.throws(
      () => admission.admitPending({ peerId: "s9", host: "a", trusted: false, evict: noEviction }),
      refusal("busy"),
    );
    admission.admitPending({ peerId: "t", host: "a", trusted: true, evict: noEviction });
    admission.admitPending({ peerId: "s9", host: "b", trusted: false, evict: noEviction });
    assert.equal(admission.counts().pending, 5);
  });

  it("when the pending budget is full, strangers are refused and a trusted peer pushes out the oldest stranger", () => {
    const admission = createStreamAdmission(limits);
    const evicted: string[] = [];
    for (let index = 0; index < 6; index++) {
      const peerId = `s${index}`;
      admission.admitPending({
        peerId,
        host: `h${index}`,
        trusted: false,
        evict: (reason) => {
          assert.equal(reason.code, "busy");
          evicted.push(peerId);
        },
      });
    }
    assert.throws(
      () => admission.admitPending({ peerId: "s7", host: "h7", trusted: false, evict: noEviction }),
      refusal("busy"),
    );
    admission.admitPending({ peerId: "t1", host: "h1", trusted: true, evict: noEviction });
    admission.admitPending({ peerId: "t2", host: "h1", trusted: true, evict: noEviction });
    assert.deepEqual(evicted, ["s0", "s1"], "the oldest strangers, in order");
    assert.equal(admission.counts().pending, 6);
  });

  it("keeps serving capacity beyond the strangers' share for trusted peers", () => {
    const admission = createStreamAdmission(limits);
    const releases = [0, 1, 2].map((index) =>
      admission.admitServing({ peerId: `s${index}`, trusted: false }),
    );
    assert.throws(() => admission.admitServing({ peerId: "s3", trusted: false }), refusal("busy"));
    admission.admitServing({ peerId: "t1", trusted: true });
    admission.admitServing({ peerId: "t1", trusted: true });
    assert.throws(() => admission.admitServing({ peerId: "t1", trusted: true }), refusal("too_many_streams"));
    admission.admitServing({ peerId: "t2", trusted: true });
    assert.throws(
      () => admission.admitServing({ peerId: "t3", trusted: true }),
      refusal("busy"),
      "64 in all",
    );
    assert.deepEqual(admission.counts(), { pending: 0, serving: 6, strangersServing: 3 });
    releases[0]?.();
    releases[0]?.();
    assert.deepEqual(admission.counts(), { pending: 0, serving: 5, strangersServing: 2 });
    admission.admitServing({ peerId: "s3", trusted: false });
  });
});

describe("serveInference admission (memory network, real frame channels)", () => {
  const request = {
    v: wireVersion,
    type: "request",
    id: `0x${"11".repeat(32)}`,
    client: `0x${"22".repeat(20)}`,
    request: {
      model_hash: `0x${"33".repeat(32)}`,
      kind: "text",
      prompt: "hi",
      max_tokens: 1,
      temperature: 0,
      top_p: 1,
      top_k: 0,
      seed: 1,
      stop: [],
    },
  };

  async function start(trusted: (peerId: string) => boolean) {
    const network = createMemoryNetwork();
    const provider = network.node("provider");
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const service = await serveInference(
      { node: provider },
      {
        limits: { ...limits, firstFrameTimeoutMs: 300 },
        isTrustedPeer: trusted,
        // Holds every answered stream until the test lets go.
        answer: async (exchange) => {
          exchange.send({ v: wireVersion, type: "chunk", tokens: [1], text: "a" });
          await held;
        },
      },
    );
    const open = async (peerId: string) =>
      createFrameChannel(await network.node(peerId).openStream("provider", inferenceProtocolId));
    return { service, open, release };
  }

  it("drops a stream whose request frame does not come within the first-frame deadline", async () => {
    const { open, service } = await start(() => false);
    const channel = await open("silent");
    const startedAt = performance.now();
    const frame = (await channel.read({ timeoutMs: 5_000 })) as { code?: string };
    const elapsed = performance.now() - startedAt;
    assert.equal(frame.code, "frame_timeout");
    assert.ok(
      elapsed >= 250 && elapsed < 2_000,
      `dropped at the 300 ms deadline (after ${elapsed.toFixed(0)} ms)`,
    );
    assert.equal(service.pendingStreams(), 0, "it no longer waits");
  });

  it("pushes out a stranger's waiting stream for a trusted peer's, and keeps serving slots for trusted peers", async () => {
    const { open, service, release } = await start((peerId) => peerId.startsWith("trusted"));
    // Six strangers fill the pending budget.
    const idle = await Promise.all([0, 1, 2, 3, 4, 5].map((index) => open(`stranger-${index}`)));
    await waitUntil(() => service.pendingStreams() === 6);
    const trusted = await open("trusted-1");
    await trusted.write(request);
    const pushedOut = (await idle[0]?.read({ timeoutMs: 5_000 })) as {
      code?: string;
      retry_after_ms?: number;
    };
    assert.equal(pushedOut.code, "busy", "the oldest stranger's stream is pushed out");
    assert.equal(pushedOut.retry_after_ms, busyRetryAfterMs, "told when to retry");
    assert.equal(
      ((await trusted.read({ timeoutMs: 5_000 })) as { type?: string }).type,
      "chunk",
      "the trusted peer is served",
    );
    // Strangers' requests take at most their share of serving slots.
    for (const channel of idle.slice(1, 4)) await channel.write(request);
    await waitUntil(() => service.activeStreams() === 4);
    await idle[4]?.write(request);
    const refused = (await readUntilError(idle[4])) as { code?: string };
    assert.equal(refused.code, "busy", "a fourth stranger is refused: strangers share 3 slots");
    const second = await open("trusted-2");
    await second.write(request);
    assert.equal(
      ((await second.read({ timeoutMs: 5_000 })) as { type?: string }).type,
      "chunk",
      "a trusted peer still is served",
    );
    release();
  });
});

async function readUntilError(channel: ReturnType<typeof createFrameChannel> | undefined) {
  for (;;) {
    const frame = (await channel?.read({ timeoutMs: 5_000 })) as { type?: string } | undefined;
    if (frame === undefined || frame.type === "error") return frame;
  }
}

async function waitUntil(condition: () => boolean) {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for the provider's admission state");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
