/**
 * The gateway's failover in process: real inference protocol, frame channels and receipts over an in-memory network,
 * with scripted providers. Each failure is sorted by whose fault it is: the provider's (banned or untrusted, and the
 * request fails over), the client's input or the payment (answered at once, nobody blamed), or the gateway's own
 * (answered at once, nobody blamed).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import type { BackendGenerateParameters } from "../../src/api/index.ts";
import { InvalidInputError, PaymentRequiredError, ServiceUnavailableError } from "../../src/errors/index.ts";
import {
  answerWithFailover,
  createActivityFeed,
  createAuditSampler,
  createCapacityQueue,
  createProviderTable,
  createStandby,
  type FailoverContext,
  type KnownProvider,
  type Standby,
} from "../../src/gateway/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import type { GatewayPayments, PayingChannel } from "../../src/payments/index.ts";
import { receiptDomain } from "../../src/protocol/index.ts";
import { openReceiptStore, type ReceiptStore } from "../../src/store/index.ts";
import { createMemoryNetwork } from "../fixtures/memoryNetwork.ts";
import {
  type Script,
  type ScriptedProvider,
  scriptedModel,
  startScriptedProvider,
} from "../fixtures/scriptedProviders.ts";
import { temporaryHome } from "../helpers.ts";

const gatewayKey = generatePrivateKey();
/** How the paid scripted providers say they are paid (the fake payments below pay on it). */
const paidOn = {
  chain_id: 31337,
  payment_channels: "0x00000000000000000000000000000000000000c4",
  credit_window: "1000000",
};
const timeouts = { firstTokenMs: 2_000, stallMs: 300, banMs: 30_000 };

function request(overrides: Partial<BackendGenerateParameters> = {}): BackendGenerateParameters {
  return {
    model: { name: scriptedModel.name, hash: scriptedModel.hash.slice(2) },
    prompt: { kind: "chat", messages: [{ role: "user", content: "hello" }] },
    sampling: { maxTokens: 8, temperature: 0, topP: 1, topK: 0, stop: [] },
    signal: new AbortController().signal,
    ...overrides,
  };
}

describe("gateway failover (in process, scripted providers)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  const stores: ReceiptStore[] = [];
  let count = 0;

  before(async () => {
    directory = await temporaryHome("mycel-failover-");
  });
  after(async () => {
    for (const store of stores) store.close();
    await directory.remove();
  });

  /** A gateway's failover context over fresh providers running `scripts` (one list per provider, in routing order). */
  async function setUp(
    scripts: Script[][],
    options: {
      receipts?: (store: ReceiptStore) => ReceiptStore;
      capacity?: { parallelism: number; max_queue: number };
      queue?: { maxWaiting?: number; timeoutMs?: number };
      /** Paid providers (price and payment in their announcements) and the gateway's payments. */
      paid?: { payments: GatewayPayments; price: { input: string; output: string } };
      standby?: Standby;
      /** Every provider is reached through a relay (the gateway's connection to each is limited). */
      relayed?: boolean;
    } = {},
  ) {
    const network = createMemoryNetwork();
    count++;
    const providers: ScriptedProvider[] = [];
    for (const [index, script] of scripts.entries())
      providers.push(
        await startScriptedProvider({
          network,
          peerId: `provider-${count}-${index}`,
          scripts: script,
          capacity: options.capacity,
          price: options.paid?.price,
          payment: options.paid ? paidOn : undefined,
        }),
      );
    const node = network.node(`gateway-${count}`);
    const table = createProviderTable({ node, logger: silentLogger });
    const known: KnownProvider[] = providers.map((provider) => table.accept(provider.announcement));
    const stored = openReceiptStore({ path: join(directory.home, `receipts-${count}.sqlite`) });
    stores.push(stored);
    const receipts = options.receipts ? options.receipts(stored) : stored;
    const context: FailoverContext = {
      components: { node, logger: silentLogger },
      table,
      client: privateKeyToAccount(gatewayKey).address,
      domain: receiptDomain(),
      timeouts,
      maxAttempts: 4,
      payments: options.paid?.payments,
      reputation: undefined,
      receipts,
      sampler: createAuditSampler({
        node,
        privateKey: gatewayKey,
        receipts,
        validators: [],
        rate: 0,
        logger: silentLogger,
      }),
      activity: createActivityFeed({ logger: silentLogger }),
      settling: new Set(),
      queue: createCapacityQueue(options.queue),
      standby: options.standby,
      ...(options.relayed ? { connectionKind: () => "relayed" as const } : {}),
      logger: silentLogger,
    };
    return { providers, known, context, stored };
  }

  it("asks another provider when one is busy: not a failure, no ban, it rests only as long as it asked", async () => {
    const { providers, known, context } = await setUp([
      [{ kind: "error", code: "busy", retryAfterMs: 700 }],
      [{ kind: "honest", tokens: [10, 11], text: "hi" }],
    ]);
    const before = Date.now();
    const answer = await answerWithFailover(request(), context);
    assert.deepEqual(answer.providers, [providers[1]?.address]);
    assert.equal(answer.failovers, 0, "a busy refusal is no failover");
    assert.equal(answer.text, "hi");
    const [busy, served] = known as [KnownProvider, KnownProvider];
    assert.equal(busy.failures, 0, "busy is not a failure");
    assert.equal(busy.bannedUntil, 0, "and not banned");
    assert.equal(busy.untrusted, false);
    assert.ok(
      busy.busyUntil > before + 600 && busy.busyUntil <= Date.now() + 700,
      "resting for its retry-after",
    );
    assert.equal(served.successes, 1);
  });

  it("continues a stalled answer on the next provider from the tokens so far, and bans the stalled one", async () => {
    const { providers, known, context } = await setUp([
      [{ kind: "honest", tokens: [10, 11], text: "ab", hang: true }],
      [{ kind: "honest", tokens: [12], text: "c" }],
    ]);
    const before = Date.now();
    const answer = await answerWithFailover(request(), context);
    assert.equal(answer.text, "abc", "the tokens of the stalled provider are kept");
    assert.equal(answer.usage.completionTokens, 3);
    assert.deepEqual(answer.providers, [providers[1]?.address], "one per receipt");
    assert.deepEqual(
      answer.unreceiptedProviders,
      [providers[0]?.address],
      "the stalled one's output had none",
    );
    assert.deepEqual(providers[1]?.requests[0]?.request.prefix_tokens, [10, 11], "continued, not restarted");
    assert.equal(providers[1]?.requests[0]?.request.max_tokens, 6);
    assert.ok(
      (known[0]?.bannedUntil ?? 0) >= before + timeouts.banMs,
      "a stalled provider sits out the whole ban",
    );
    assert.equal(known[0]?.untrusted, false);
  });

  it("says whose receipt was lost when a provider stops after the last token: no failover, a warning, usage kept", async () => {
    const { providers, context } = await setUp([
      [{ kind: "honest", tokens: [10, 11], text: "ab", hang: true }],
      [{ kind: "honest", tokens: [99], text: "z" }],
    ]);
    const answer = await answerWithFailover(
      request({ sampling: { ...request().sampling, maxTokens: 2 } }),
      context,
    );
    assert.equal(answer.text, "ab", "complete: nothing asked of another provider");
    assert.equal(providers[1]?.requests.length, 0);
    assert.equal(answer.usage.completionTokens, 2);
    assert.deepEqual(answer.receipts, []);
    assert.deepEqual(answer.unreceiptedProviders, [providers[0]?.address]);
    assert.match(answer.warnings?.join("\n") ?? "", /receipt of the last segment was lost/);
  });

  it("resumes a stream a relay cut on the same provider, from the tokens so far, without blaming it", async () => {
    const { providers, known, context } = await setUp(
      [
        [
          { kind: "honest", tokens: [10, 11], text: "ab", hang: true },
          { kind: "honest", tokens: [12], text: "c" },
        ],
        [{ kind: "honest", tokens: [99], text: "z" }],
      ],
      { relayed: true },
    );
    const answer = await answerWithFailover(request(), context);
    assert.equal(answer.text, "abc", "no token lost or repeated");
    assert.deepEqual(answer.providers, [providers[0]?.address], "resumed on the same provider");
    assert.deepEqual(providers[0]?.requests[1]?.request.prefix_tokens, [10, 11], "continued, not restarted");
    assert.equal(providers[1]?.requests.length, 0, "the other provider was not needed");
    assert.equal(known[0]?.failures, 0, "a cut relayed stream is not the provider's failure");
    assert.equal(known[0]?.bannedUntil, 0);
  });

  it("gives providers resting after a failure another try when no other is left (never an untrusted one)", async () => {
    const { providers, known, context } = await setUp([[{ kind: "honest", tokens: [10], text: "a" }]]);
    const resting = known[0] as KnownProvider;
    resting.bannedUntil = Date.now() + 60_000;
    const answer = await answerWithFailover(request(), context);
    assert.deepEqual(answer.providers, [providers[0]?.address]);
    resting.untrusted = true;
    await assert.rejects(answerWithFailover(request(), context), ServiceUnavailableError);
  });

  it("never routes again to a provider whose receipt is forged, remembers it, and drops its tokens", async () => {
    const { providers, known, context, stored } = await setUp([
      [{ kind: "forged" }],
      [{ kind: "honest", tokens: [20, 21], text: "fine" }],
    ]);
    const answer = await answerWithFailover(request(), context);
    assert.equal(answer.text, "fine", "the forger's text is not in the answer");
    assert.equal(answer.usage.completionTokens, 2);
    assert.equal(
      providers[1]?.requests[0]?.request.prefix_tokens,
      undefined,
      "its tokens are not continued from",
    );
    assert.equal(known[0]?.untrusted, true);
    assert.deepEqual(
      stored.untrustedProviders().map((entry) => entry.address),
      [providers[0]?.address],
      "remembered across restarts",
    );
  });

  it("treats a malformed frame as a protocol break: the provider is not trusted again", async () => {
    const { known, context } = await setUp([
      [{ kind: "malformed" }],
      [{ kind: "honest", tokens: [1], text: "x" }],
    ]);
    const answer = await answerWithFailover(request(), context);
    assert.equal(answer.text, "x");
    assert.equal(known[0]?.untrusted, true);
  });

  it("answers the client's own bad input at once: no failover, no provider blamed", async () => {
    const { providers, known, context } = await setUp([
      [{ kind: "error", code: "context_length_exceeded", message: "too long for this model" }],
      [{ kind: "honest", tokens: [1], text: "x" }],
    ]);
    await assert.rejects(answerWithFailover(request(), context), (error) => {
      assert.ok(error instanceof InvalidInputError);
      assert.match(error.message, /too long for this model/);
      return true;
    });
    assert.equal(providers[1]?.requests.length, 0, "no other provider is asked");
    assert.equal(known[0]?.failures, 0);
    assert.equal(known[0]?.bannedUntil, 0);
  });

  it("stops on a payment refusal: 402, no failover, no provider blamed", async () => {
    const { providers, known, context } = await setUp([
      [{ kind: "error", code: "payment_required", message: "unpaid beyond the credit window" }],
      [{ kind: "honest", tokens: [1], text: "x" }],
    ]);
    await assert.rejects(answerWithFailover(request(), context), PaymentRequiredError);
    assert.equal(providers[1]?.requests.length, 0);
    assert.equal(known[0]?.failures, 0);
    assert.equal(known[0]?.bannedUntil, 0);
  });

  it("keeps the answer when this gateway's receipt store fails: a warning, and the provider is credited, not blamed", async () => {
    const { providers, known, context } = await setUp([[{ kind: "honest", tokens: [5, 6], text: "ok" }]], {
      receipts: (store) => ({
        ...store,
        saveReceipt: () => {
          throw new Error("SQLITE_FULL: database or disk is full");
        },
      }),
    });
    const answer = await answerWithFailover(request(), context);
    assert.equal(answer.text, "ok");
    assert.equal(answer.receipts.length, 1, "the client still gets the receipt");
    assert.match(answer.warnings?.[0] ?? "", /could not store the receipt.*disk is full/);
    assert.equal(known[0]?.successes, 1);
    assert.equal(known[0]?.failures, 0);
    assert.equal(known[0]?.bannedUntil, 0);
    assert.equal(known[0]?.untrusted, false);
    assert.equal(providers[0]?.requests.length, 1);
  });

  it("fails the request on an error of the gateway's own without blaming the provider or failing over", async () => {
    const { providers, known, context } = await setUp([
      [{ kind: "honest", tokens: [5, 6], text: "ok" }],
      [{ kind: "honest", tokens: [7], text: "no" }],
    ]);
    const bug = new Error("a bug in the gateway");
    await assert.rejects(
      answerWithFailover(
        request({
          onStart: () => {
            throw bug;
          },
        }),
        context,
      ),
      (error) => error === bug,
    );
    assert.equal(known[0]?.failures, 0);
    assert.equal(known[0]?.bannedUntil, 0);
    assert.equal(known[0]?.untrusted, false);
    assert.equal(providers[1]?.requests.length, 0);
  });

  it("says 503 naming the model and the last failure when every provider failed", async () => {
    const { known, context } = await setUp([
      [{ kind: "error", code: "internal_error", message: "first is broken" }],
      [{ kind: "error", code: "time_limit", message: "second took too long" }],
    ]);
    await assert.rejects(answerWithFailover(request(), context), (error) => {
      assert.ok(error instanceof ServiceUnavailableError);
      assert.match(error.shortMessage, /every provider of model "scripted-model" failed \(2 tried\)/);
      assert.match(error.message, /second took too long/);
      return true;
    });
    assert.deepEqual(
      known.map((provider) => provider.failures),
      [1, 1],
    );
  });

  describe("waiting for capacity (the gateway's queue)", () => {
    /** A request whose message names it, so the order providers receive requests in can be read back. */
    const named = (name: string, signal = new AbortController().signal) =>
      request({ prompt: { kind: "chat", messages: [{ role: "user", content: name }] }, signal });
    const nameOf = (received: ScriptedProvider["requests"][number]) =>
      received.request.messages?.[0]?.content;
    const slow: Script = { kind: "honest", tokens: [1, 2, 3], text: "abc", delayMs: 40 };

    it("holds requests beyond every provider's capacity and serves them all in arrival order, blaming nobody", async () => {
      const { providers, known, context } = await setUp([[slow], [slow]], {
        capacity: { parallelism: 1, max_queue: 0 },
      });
      let most = 0;
      const watch = setInterval(() => {
        for (const provider of known) most = Math.max(most, provider.inFlight);
      }, 5);
      const names = Array.from({ length: 8 }, (_, index) => `request-${index}`);
      try {
        const answers = await Promise.all(names.map((name) => answerWithFailover(named(name), context)));
        assert.deepEqual(
          answers.map((answer) => answer.text),
          names.map(() => "abc"),
          "every request answered",
        );
      } finally {
        clearInterval(watch);
      }
      assert.equal(most, 1, "never more than a provider's announced capacity in flight on it");
      assert.deepEqual(
        known.map((provider) => provider.failures),
        [0, 0],
        "nobody blamed",
      );
      const served = providers
        .flatMap((provider) =>
          provider.requests.map((received, index) => ({ name: nameOf(received), index })),
        )
        .sort((a, b) => a.index - b.index);
      // Two at a time in arrival order: the k-th pair holds requests 2k and 2k+1.
      for (const [position, entry] of served.entries())
        assert.ok(
          Math.floor(Number(entry.name?.split("-")[1]) / 2) === entry.index,
          `request ${entry.name} served in turn ${entry.index} (position ${position})`,
        );
      assert.equal(context.queue.stats().waiting, 0, "nobody left waiting");
    });

    it("waits for a busy provider's rest to end when it is the only one, then is served by it", async () => {
      const { providers, known, context } = await setUp([
        [{ kind: "error", code: "too_many_streams", retryAfterMs: 300 }, slow],
      ]);
      const started = Date.now();
      const answer = await answerWithFailover(request(), context);
      assert.equal(answer.text, "abc");
      assert.ok(Date.now() - started >= 250, "waited for the rest the provider asked");
      assert.equal(providers[0]?.requests.length, 2, "asked again after its rest");
      assert.equal(known[0]?.failures, 0, "busy is not a failure");
      assert.equal(known[0]?.bannedUntil, 0, "and not a ban");
    });

    it("answers 503 with Retry-After when a request's deadline passes in the queue, and when the queue is full", async () => {
      const hog: Script = { kind: "honest", tokens: [1, 2, 3, 4, 5, 6], text: "hog", delayMs: 100 };
      const { known, context } = await setUp([[hog]], {
        capacity: { parallelism: 1, max_queue: 0 },
        queue: { maxWaiting: 1, timeoutMs: 150 },
      });
      const first = answerWithFailover(named("first"), context);
      const waiting = answerWithFailover(named("waiting"), context);
      const refusedFull = await answerWithFailover(named("third"), context).then(
        () => undefined,
        (error: unknown) => error,
      );
      assert.ok(
        refusedFull instanceof ServiceUnavailableError,
        `queue full: 503, got ${String(refusedFull)}`,
      );
      assert.equal(refusedFull.code, "queue_full");
      assert.equal(refusedFull.retryAfterSeconds, 1, "with Retry-After");
      await assert.rejects(waiting, (error) => {
        assert.ok(error instanceof ServiceUnavailableError, "past the deadline: 503");
        assert.equal(error.code, "queue_timeout");
        assert.equal(error.retryAfterSeconds, 1);
        assert.match(error.message, /scripted-model/);
        return true;
      });
      assert.equal((await first).text, "hog", "the request being served is not disturbed");
      assert.equal(known[0]?.failures, 0, "nobody blamed");
    });

    it("lets a client that goes away leave the queue: it is cancelled, and the next one takes its turn", async () => {
      const { providers, context } = await setUp([[slow]], { capacity: { parallelism: 1, max_queue: 0 } });
      const first = answerWithFailover(named("first"), context);
      const leaving = new AbortController();
      const gone = answerWithFailover(named("gone"), context);
      const left = answerWithFailover(named("left", leaving.signal), context);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(context.queue.stats().waiting, 2, "two wait behind the first");
      leaving.abort();
      assert.equal((await left).finishReason, "cancelled");
      assert.equal(context.queue.stats().waiting, 1, "the one that left is out of the queue");
      assert.equal((await first).text, "abc");
      assert.equal((await gone).text, "abc");
      assert.deepEqual(
        providers[0]?.requests.map(nameOf),
        ["first", "gone"],
        "the provider never got the cancelled one",
      );
    });

    it("still answers a payment refusal at once while others wait for capacity", async () => {
      const { known, context } = await setUp([[slow]], { capacity: { parallelism: 1, max_queue: 0 } });
      const first = answerWithFailover(named("first"), context);
      const started = Date.now();
      // Every provider is paid on a chain this gateway does not pay on: 402 at once, no wait.
      const announcement = known[0]?.announcement;
      assert.ok(announcement);
      const unpayable = structuredClone(announcement);
      unpayable.price = { input: "1", output: "1" };
      unpayable.payment = {
        chain_id: 999,
        payment_channels: "0x0000000000000000000000000000000000000001",
        credit_window: "1",
      } as never;
      unpayable.issued_at += 1;
      const original = known[0]?.announcement;
      context.table.accept(unpayable);
      try {
        await assert.rejects(answerWithFailover(named("unpaid"), context), PaymentRequiredError);
        assert.ok(Date.now() - started < 100, "refused at once, not after the queue's deadline");
      } finally {
        if (known[0] && original) known[0].announcement = original;
      }
      assert.equal((await first).text, "abc");
    });
  });

  describe("a provider that does not know the gateway's channel", () => {
    /**
     * Payments that hand out channels by number (a unit test of failover alone: the channels are not on a chain, and
     * their vouchers go nowhere); `chainKnows` says what the chain would answer for a forgotten channel.
     */
    function fakePayments(chainKnows: boolean) {
      const opened: Hex[] = [];
      const forgotten: Hex[] = [];
      const byProvider = new Map<string, PayingChannel>();
      const channel = (provider: Hex): PayingChannel => {
        const channelId = `0x${(opened.length + 1).toString(16).padStart(64, "0")}` as Hex;
        opened.push(channelId);
        return {
          channelId,
          provider,
          startSegment: () => ({ addOutput() {}, complete() {}, abandon() {} }),
          due: () => false,
          pay: async () => undefined,
          acknowledge() {},
        };
      };
      const payments: GatewayPayments = {
        canPay: (payment) => payment?.chain_id === paidOn.chain_id,
        async channelFor(input) {
          const current = byProvider.get(input.provider) ?? channel(input.provider);
          byProvider.set(input.provider, current);
          return current;
        },
        channels: () => [],
        async forgetIfUnknown(input) {
          if (!chainKnows) {
            forgotten.push(input.channelId);
            for (const [provider, entry] of byProvider)
              if (entry.channelId === input.channelId) byProvider.delete(provider);
          }
          return !chainKnows;
        },
        budget: { limit: 0n, depositPerProvider: 0n, committed: () => 0n },
        stop: async () => undefined,
      };
      return { payments, opened, forgotten };
    }
    const price = { input: "1000", output: "1000" };

    it("forgets a channel the chain does not know either, and asks the same provider again on a new one, blaming nobody", async () => {
      const fake = fakePayments(false);
      const { providers, known, context } = await setUp(
        [
          [
            { kind: "error", code: "unknown_channel" },
            { kind: "honest", tokens: [4, 5], text: "ok" },
          ],
        ],
        { paid: { payments: fake.payments, price } },
      );
      const answer = await answerWithFailover(request(), context);
      assert.equal(answer.text, "ok");
      assert.deepEqual(answer.providers, [providers[0]?.address], "the same provider answered");
      assert.equal(answer.failovers, 0);
      assert.equal(fake.opened.length, 2, "a new channel was opened");
      assert.deepEqual(fake.forgotten, [fake.opened[0]], "the unknown one was forgotten");
      assert.deepEqual(
        providers[0]?.requests.map((received) => received.payment?.channel_id),
        fake.opened,
        "asked first on the old channel, then on the new one",
      );
      assert.equal(known[0]?.failures, 0, "nobody blamed");
      assert.equal(known[0]?.bannedUntil, 0);
    });

    it("blames the provider when the chain knows the channel it says it does not know", async () => {
      const fake = fakePayments(true);
      const { known, context } = await setUp(
        [[{ kind: "error", code: "unknown_channel" }], [{ kind: "honest", tokens: [4, 5], text: "ok" }]],
        { paid: { payments: fake.payments, price } },
      );
      const answer = await answerWithFailover(request(), context);
      assert.equal(answer.failovers, 1, "failed over to the other provider");
      assert.equal(fake.opened.length, 2, "one channel per provider, none reopened");
      assert.deepEqual(fake.forgotten, [], "nothing forgotten");
      assert.equal(known[0]?.failures, 1, "the provider that was wrong is blamed");
    });
  });

  describe("the standby: the provider a request would fail over to, made ready while it streams", () => {
    /** Paid providers' payments that record which providers got a channel, with a budget of `limit`. */
    function recordingPayments(budget: { limit: bigint; depositPerProvider: bigint; committed: bigint }) {
      const funded: string[] = [];
      const payments: GatewayPayments = {
        canPay: (payment) => payment?.chain_id === paidOn.chain_id,
        async channelFor(input) {
          funded.push(input.provider);
          return {
            channelId: `0x${"c1".repeat(32)}`,
            provider: input.provider,
            startSegment: () => ({ addOutput() {}, complete() {}, abandon() {} }),
            due: () => false,
            pay: async () => undefined,
            acknowledge() {},
          };
        },
        channels: () => [],
        forgetIfUnknown: async () => false,
        budget: { ...budget, committed: () => budget.committed },
        stop: async () => undefined,
      };
      return { payments, funded };
    }
    const price = { input: "1000", output: "1000" };

    it("connects to the next provider and funds its channel while the first streams, so the failover finds it ready", async () => {
      const fake = recordingPayments({ limit: 100n, depositPerProvider: 10n, committed: 0n });
      // What the standby did, and how many requests the next provider had received by then.
      const events: { step: string; peer: string; requestsThen: number }[] = [];
      let providers: ScriptedProvider[] = [];
      const requestsOf = (peer: string) =>
        providers.find((provider) => provider.node.peerId === peer)?.requests.length ?? -1;
      const standby = createStandby({
        connect: async (peer) => {
          events.push({ step: "connect", peer, requestsThen: requestsOf(peer) });
        },
        logger: silentLogger,
      });
      const setup = await setUp(
        [
          // Streams three tokens, then stalls without a receipt: the request fails over.
          [{ kind: "honest", tokens: [1, 2, 3], text: "abc", delayMs: 20, hang: true }],
          [{ kind: "honest", tokens: [4, 5], text: "de" }],
        ],
        { paid: { payments: fake.payments, price }, standby },
      );
      providers = setup.providers;
      const [first, next] = providers as [ScriptedProvider, ScriptedProvider];
      const answer = await answerWithFailover(request(), setup.context);
      assert.equal(answer.failovers, 1);
      assert.deepEqual(answer.providers, [next.address]);
      assert.deepEqual(
        events.filter((event) => event.step === "connect"),
        [{ step: "connect", peer: next.node.peerId, requestsThen: 0 }],
        "connected to the next provider (only), before it was asked anything",
      );
      assert.deepEqual(
        fake.funded.map((provider) => provider.toLowerCase()),
        [first.address, next.address, next.address].map((address) => address.toLowerCase()),
        "the first provider's channel, the next one's as standby while the first streamed, then for its segment",
      );
    });

    it("funds no standby channel that would leave the budget no room for another deposit", async () => {
      const fake = recordingPayments({ limit: 25n, depositPerProvider: 10n, committed: 10n });
      const connected: string[] = [];
      const standby = createStandby({
        connect: async (peer) => {
          connected.push(peer);
        },
        logger: silentLogger,
      });
      const { providers, context } = await setUp(
        [
          [{ kind: "honest", tokens: [1, 2, 3], text: "abc", delayMs: 20 }],
          [{ kind: "honest", tokens: [4, 5], text: "de" }],
        ],
        { paid: { payments: fake.payments, price }, standby },
      );
      const answer = await answerWithFailover(request(), context);
      assert.equal(answer.failovers, 0);
      assert.deepEqual(connected, [providers[1]?.node.peerId], "still connected to it");
      assert.deepEqual(fake.funded, [providers[0]?.address], "only the serving provider's channel");
    });

    it("does not dial a provider again while it is being made ready, nor for a while after that failed", async () => {
      let dials = 0;
      let release: () => void = () => undefined;
      const standby = createStandby({
        connect: () => {
          dials++;
          return new Promise((_, reject) => {
            release = () => reject(new Error("unreachable"));
          });
        },
        logger: silentLogger,
      });
      const { known } = await setUp([[{ kind: "honest", tokens: [1], text: "a" }]]);
      const provider = known[0] as KnownProvider;
      const first = standby.prepare(provider);
      await standby.prepare(provider);
      assert.equal(dials, 1, "one dial while the first is under way");
      release();
      await first;
      await standby.prepare(provider);
      assert.equal(dials, 1, "none right after it failed");
    });
  });
});
