import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Address, getAddress, type Hex } from "viem";
import { deploymentVoucherDomain, getChannel, listChannels } from "../../src/chain/index.ts";
import { PaymentRequiredError } from "../../src/errors/index.ts";
import {
  createGatewayPayments,
  createProviderPayments,
  type GatewayPayments,
  type PayingChannel,
  type ProviderPayments,
} from "../../src/payments/index.ts";
import {
  parseFrame,
  priceOfTokens,
  recoverVoucherSigner,
  type VoucherFrame,
  voucherFrameSchema,
  wireVersion,
} from "../../src/protocol/index.ts";
import { type ClientChannel, openPaymentStore, type PaymentStore } from "../../src/store/index.ts";
import { type LocalChain, startLocalChain, type TestAccount } from "../fixtures/chain/localChain.ts";
import { temporaryHome, withDeadline } from "../helpers.ts";

const myc = 10n ** 18n;
const depositPerProvider = 10n * myc;
/** A provider's credit window, as its announcement gives it. */
const creditWindow = myc / 10n;
/** Prices per 1M tokens. */
const price = { input: myc / 2n, output: 2n * myc };

let chain: LocalChain;
let directory: { home: string; remove: () => Promise<void> };
const stores: PaymentStore[] = [];
const instances: GatewayPayments[] = [];

const common = () => ({ deployments: chain.deployments });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function openStore(name: string): PaymentStore {
  const store = openPaymentStore({ path: join(directory.home, `${name}.db`), chain: "test-chain" });
  stores.push(store);
  return store;
}

function createGateway(gateway: TestAccount, store: PaymentStore, budget: bigint): GatewayPayments {
  const payments = createGatewayPayments({
    connection: gateway.connection,
    deployments: chain.deployments,
    store,
    privateKey: gateway.privateKey,
    depositPerProvider,
    budget,
  });
  instances.push(payments);
  return payments;
}

/** The channels the gateway's key opened, as the chain lists them. */
async function channelsOnChain(gateway: TestAccount) {
  return (await listChannels(chain.deployer, { ...common(), account: gateway.address })).asClient;
}

/** The price of a segment with `completionTokens` of output after a 20-token prompt. */
function segmentPrice(completionTokens: number): bigint {
  return priceOfTokens({ promptTokens: 20, completionTokens, pricePerMillion: price });
}

/** The output tokens whose price (after a 20-token prompt) comes closest to `amount` from below. */
function tokensCosting(amount: bigint): number {
  return Number(((amount - segmentPrice(0)) * 1_000_000n) / price.output);
}

/** Meters one finished segment of `tokens` output and returns its price. */
function serveSegment(channel: PayingChannel, tokens: number): bigint {
  const bill = channel.startSegment({ outputPricePerMillion: price.output });
  bill.addOutput(tokens);
  const cost = segmentPrice(tokens);
  bill.complete(cost);
  return cost;
}

/** A send function that records each frame with the store's row at the moment it was sent. */
function capturingSender(store: PaymentStore, client: Address) {
  type Sent = { frame: VoucherFrame; row: ClientChannel | undefined };
  const sent: Sent[] = [];
  let firstSent!: (entry: Sent) => void;
  const first = new Promise<Sent>((resolve) => {
    firstSent = resolve;
  });
  const send = async (frame: VoucherFrame) => {
    const row = store.channelsOf(client).find((entry) => entry.channelId === frame.channel_id.toLowerCase());
    sent.push({ frame, row });
    firstSent(sent[0] as Sent);
  };
  /** Resolves with the first voucher sent; fails if `paying` ends without sending one, or after 10 s. */
  const firstVoucher = (paying: Promise<unknown>) => {
    const ended = paying.then(() => {
      throw new Error("pay() ended without sending a voucher");
    });
    // Handled here (pay() usually ends later, after the voucher): the race below still sees it.
    ended.catch(() => undefined);
    return withDeadline("the first voucher to be sent", Promise.race([first, ended]), 10_000);
  };
  return { sent, send, firstVoucher };
}

async function assertSignedByGateway(frame: VoucherFrame, gateway: TestAccount) {
  assert.deepEqual(parseFrame(voucherFrameSchema, frame), frame, "the frame is a valid voucher frame");
  assert.equal(frame.v, wireVersion, "the wire version");
  assert.equal(frame.type, "voucher", "a voucher frame");
  const signer = await recoverVoucherSigner({
    domain: deploymentVoucherDomain(chain.deployments),
    message: { channelId: frame.channel_id as Hex, cumulativeAmount: BigInt(frame.cumulative_amount) },
    signature: frame.signature as Hex,
  });
  assert.equal(signer, gateway.address, "the voucher is signed by the gateway's key");
}

/**
 * Whether `promise` is still pending after the event loop ran a while: a fixed 50 ms wait on purpose, since what is
 * tested is that nothing settles it.
 */
async function isPending(promise: Promise<unknown>) {
  const marker = Symbol("pending");
  return (await Promise.race([promise, sleep(50).then(() => marker)])) === marker;
}

describe("gateway payments on a local chain", () => {
  before(async () => {
    chain = await startLocalChain();
    directory = await temporaryHome("mycel-gateway-payments-");
  });
  after(async () => {
    await Promise.all(instances.map((instance) => instance.stop()));
    for (const store of stores) store.close();
    await directory?.remove();
    await chain?.stop();
  });

  describe("opening, budget and paying", () => {
    let gateway: TestAccount;
    let providerA: TestAccount;
    let providerB: TestAccount;
    let providerC: TestAccount;
    let store: PaymentStore;
    let payments: GatewayPayments;
    let channelA: PayingChannel;
    /** The provider's side of channel A, with its own store: it must accept every voucher the gateway sends. */
    let receiver: ProviderPayments;

    before(async () => {
      gateway = await chain.account("gateway");
      providerA = await chain.account("provider-a");
      providerB = await chain.account("provider-b");
      providerC = await chain.account("provider-c");
      store = openStore("gateway");
      payments = createGateway(gateway, store, depositPerProvider * 2n + depositPerProvider / 2n);
      receiver = createProviderPayments({
        connection: providerA.connection,
        deployments: chain.deployments,
        store: openStore("provider-a"),
        provider: providerA.address,
        outputPricePerMillion: price.output,
        creditWindowTokens: 50_000,
        settlement: { thresholdAmount: 10n ** 30n },
      });
    });

    it("says which announcements it can pay", () => {
      const announced = {
        chain_id: chain.deployments.chainId,
        payment_channels: chain.deployments.contracts.paymentChannels,
        credit_window: creditWindow.toString(),
      };
      assert.equal(payments.canPay(announced), true, "this chain's PaymentChannels");
      assert.equal(
        payments.canPay({ ...announced, payment_channels: announced.payment_channels.toLowerCase() }),
        true,
        "whatever the address's case",
      );
      assert.equal(payments.canPay(undefined), false, "a provider that serves unpaid");
      assert.equal(
        payments.canPay({ ...announced, chain_id: announced.chain_id + 1 }),
        false,
        "another chain",
      );
      assert.equal(
        payments.canPay({ ...announced, payment_channels: chain.deployments.contracts.token }),
        false,
        "another contract",
      );
      assert.deepEqual(
        payments.budget,
        {
          limit: depositPerProvider * 2n + depositPerProvider / 2n,
          depositPerProvider,
          committed: payments.budget.committed,
        },
        "the budget",
      );
      assert.equal(payments.budget.committed(), 0n, "nothing committed yet");
    });

    it("opens one channel per provider, even when asked concurrently", async () => {
      const before = await channelsOnChain(gateway);
      const asked = await Promise.all([
        payments.channelFor({ provider: providerA.address, creditWindow }),
        payments.channelFor({ provider: providerA.address, creditWindow }),
        payments.channelFor({ provider: providerA.address.toLowerCase() as Address, creditWindow }),
      ]);
      channelA = asked[0];
      for (const channel of asked) assert.equal(channel, channelA, "every caller gets the same channel");
      assert.equal(channelA.provider, providerA.address, "the provider");
      const after = await channelsOnChain(gateway);
      assert.equal(after.length, before.length + 1, "one channel opened on chain");
      const onChain = await getChannel(chain.deployer, { ...common(), channelId: channelA.channelId });
      assert.equal(onChain.client, gateway.address, "the gateway is the client");
      assert.equal(onChain.provider, providerA.address, "to the provider");
      assert.equal(onChain.deposit, depositPerProvider, "with the deposit per provider");
      assert.equal(onChain.state, "open", "open");
      const rows = payments.channels();
      assert.equal(rows.length, 1, "one channel in the store");
      assert.equal(rows[0]?.channelId, channelA.channelId.toLowerCase(), "the store's channel");
      assert.equal(rows[0]?.deposit, depositPerProvider, "the store's deposit");
      assert.equal(payments.budget.committed(), depositPerProvider, "the deposit is committed");

      const again = await payments.channelFor({ provider: providerA.address, creditWindow });
      assert.equal(again, channelA, "asked later, the same channel");
      assert.equal((await channelsOnChain(gateway)).length, after.length, "no other channel opened");
    });

    it("opens another provider's channel, then refuses one beyond the budget", async () => {
      const channelB = await payments.channelFor({ provider: providerB.address, creditWindow });
      assert.notEqual(channelB.channelId, channelA.channelId, "a channel per provider");
      assert.equal(payments.budget.committed(), depositPerProvider * 2n, "two deposits committed");
      const before = await channelsOnChain(gateway);
      const rows = payments.channels();
      await assert.rejects(
        payments.channelFor({ provider: providerC.address, creditWindow }),
        (error: unknown) => {
          assert.ok(error instanceof PaymentRequiredError, `expected PaymentRequiredError, got ${error}`);
          assert.equal(error.code, "payment_required", "the code");
          return true;
        },
        "a third deposit would exceed the budget",
      );
      assert.deepEqual(await channelsOnChain(gateway), before, "no channel opened on chain");
      assert.deepEqual(payments.channels(), rows, "no channel added to the store");
      assert.equal(payments.budget.committed(), depositPerProvider * 2n, "nothing more committed");
    });

    it("pays what is owed with a voucher signed and written down before it is sent", async () => {
      const bill = channelA.startSegment({ outputPricePerMillion: price.output });
      assert.equal(channelA.due(), false, "nothing owed yet");
      // While a segment runs, its output (at the output price) is what is owed.
      const half = Number(((creditWindow / 2n) * 1_000_000n) / price.output);
      bill.addOutput(half - 1);
      assert.equal(channelA.due(), false, "less than half the credit window owed");
      bill.addOutput(1);
      assert.equal(channelA.due(), true, "half the credit window owed: a voucher is due");
      // The receipt's price (prompt and output) replaces the running count.
      const owed = segmentPrice(half);
      bill.complete(owed);

      const { sent, send } = capturingSender(store, gateway.address);
      const paying = channelA.pay(send);
      assert.equal(channelA.due(), false, "not due while a payment is queued");
      assert.equal(await isPending(paying), true, "pay waits for the provider's acknowledgement");
      assert.equal(sent.length, 1, "one voucher sent");
      const [{ frame, row }] = sent as [(typeof sent)[number]];
      assert.equal(frame.channel_id, channelA.channelId, "for the channel");
      assert.equal(BigInt(frame.cumulative_amount), owed, "for what is owed: the segment's price");
      await assertSignedByGateway(frame, gateway);
      assert.equal(row?.signedAmount, owed, "the signed amount was stored before the voucher went out");
      assert.equal(row?.acknowledgedAmount, 0n, "not acknowledged yet");

      const accepted = await receiver.acceptVoucher({
        channelId: frame.channel_id as Hex,
        cumulativeAmount: BigInt(frame.cumulative_amount),
        signature: frame.signature as Hex,
      });
      channelA.acknowledge(accepted.cumulativeAmount);
      await paying;
      const stored = payments
        .channels()
        .find((entry) => entry.channelId === channelA.channelId.toLowerCase());
      assert.equal(stored?.acknowledgedAmount, owed, "the acknowledgement is stored");
      assert.equal(stored?.signedAmount, owed, "the signed amount");

      await channelA.pay(send);
      assert.equal(sent.length, 1, "nothing more owed: no voucher sent");
      assert.equal(channelA.due(), false, "nothing due");
    });

    it("keeps what was signed when a voucher cannot be sent, and covers it with the next", async () => {
      const row = () =>
        payments.channels().find((entry) => entry.channelId === channelA.channelId.toLowerCase());
      const signedBefore = row()?.signedAmount ?? 0n;
      const first = serveSegment(channelA, 1_000);
      let attempts = 0;
      await channelA.pay(async () => {
        attempts++;
        throw new Error("stream closed");
      });
      assert.equal(attempts, 1, "one attempt");
      assert.equal(row()?.signedAmount, signedBefore + first, "the unsent voucher is written down");
      const second = serveSegment(channelA, 2_000);
      const { sent, send, firstVoucher } = capturingSender(store, gateway.address);
      const paying = channelA.pay(send);
      await firstVoucher(paying);
      const frame = (sent[0] as (typeof sent)[number]).frame;
      assert.equal(
        BigInt(frame.cumulative_amount),
        signedBefore + first + second,
        "the next voucher covers both",
      );
      await receiver.acceptVoucher({
        channelId: frame.channel_id as Hex,
        cumulativeAmount: BigInt(frame.cumulative_amount),
        signature: frame.signature as Hex,
      });
      channelA.acknowledge(BigInt(frame.cumulative_amount));
      await paying;
      assert.equal(row()?.acknowledgedAmount, signedBefore + first + second, "acknowledged");
      channelA.acknowledge(1n);
      assert.equal(
        row()?.acknowledgedAmount,
        signedBefore + first + second,
        "a lower acknowledgement lowers nothing",
      );
    });

    it("reuses the open channel after a restart and never signs below what it signed", async () => {
      const signedBefore = payments
        .channels()
        .find((entry) => entry.channelId === channelA.channelId.toLowerCase())?.signedAmount;
      assert.ok(signedBefore !== undefined && signedBefore > 0n, "vouchers were signed before the restart");
      const onChainBefore = await channelsOnChain(gateway);
      const restarted = createGateway(gateway, store, depositPerProvider * 2n + depositPerProvider / 2n);
      const channel = await restarted.channelFor({ provider: providerA.address, creditWindow });
      assert.equal(channel.channelId.toLowerCase(), channelA.channelId.toLowerCase(), "the same channel");
      assert.deepEqual(await channelsOnChain(gateway), onChainBefore, "no channel opened on chain");
      assert.equal(restarted.budget.committed(), depositPerProvider * 2n, "the same deposits committed");

      const { sent, send, firstVoucher } = capturingSender(store, gateway.address);
      await channel.pay(send);
      assert.equal(sent.length, 0, "nothing new owed: nothing signed");
      const cost = serveSegment(channel, 3_000);
      const paying = channel.pay(send);
      await firstVoucher(paying);
      const frame = (sent[0] as (typeof sent)[number]).frame;
      assert.equal(
        BigInt(frame.cumulative_amount),
        signedBefore + cost,
        "the new voucher adds to what was signed",
      );
      await assertSignedByGateway(frame, gateway);
      const accepted = await receiver.acceptVoucher({
        channelId: frame.channel_id as Hex,
        cumulativeAmount: BigInt(frame.cumulative_amount),
        signature: frame.signature as Hex,
      });
      assert.equal(
        accepted.cumulativeAmount,
        signedBefore + cost,
        "the provider accepts it (above its latest)",
      );
      channel.acknowledge(accepted.cumulativeAmount);
      await paying;
    });
  });

  describe("several providers at once", () => {
    it("opens channels to several providers concurrently, within the budget", async () => {
      const gateway = await chain.account("busy-gateway");
      const providers = await Promise.all(
        ["busy-1", "busy-2", "busy-3"].map((label) => chain.account(label)),
      );
      const store = openStore("busy-gateway");
      const payments = createGateway(gateway, store, depositPerProvider * 2n);
      const results = await Promise.allSettled(
        providers.map((provider) => payments.channelFor({ provider: provider.address, creditWindow })),
      );
      const opened = results.filter((result) => result.status === "fulfilled");
      const refused = results.flatMap((result) => (result.status === "rejected" ? [result.reason] : []));
      assert.equal(opened.length, 2, `two channels fit the budget (${refused.map(String).join("; ")})`);
      assert.equal(refused.length, 1, "the third is refused");
      assert.ok(refused[0] instanceof PaymentRequiredError, `refused for the budget, not ${refused[0]}`);
      assert.equal((await channelsOnChain(gateway)).length, 2, "two channels on chain");
      assert.equal(
        payments.budget.committed(),
        depositPerProvider * 2n,
        "the budget is committed, not exceeded",
      );
    });
  });

  describe("topping up", () => {
    let gateway: TestAccount;
    let provider: TestAccount;
    let otherProvider: TestAccount;
    let store: PaymentStore;
    const budget = depositPerProvider * 10n;
    /** Leaves less than the headroom (a quarter of the deposit) unsigned. */
    const spend = (depositPerProvider * 8n) / 10n;

    before(async () => {
      gateway = await chain.account("topping-gateway");
      provider = await chain.account("topping-provider");
      otherProvider = await chain.account("topping-provider-2");
      store = openStore("topping-gateway");
    });

    /** Opens a channel to `to`, pays `spend` on it and returns the channel. */
    async function openAndSpend(payments: GatewayPayments, to: Address) {
      const channel = await payments.channelFor({ provider: to, creditWindow });
      serveSegment(channel, tokensCosting(spend));
      const { sent, send, firstVoucher } = capturingSender(store, gateway.address);
      const paying = channel.pay(send);
      await firstVoucher(paying);
      const amount = BigInt((sent[0] as (typeof sent)[number]).frame.cumulative_amount);
      assert.ok(depositPerProvider - amount < depositPerProvider / 4n, "less than the headroom is left");
      channel.acknowledge(amount);
      await paying;
      return channel;
    }

    async function depositOf(channelId: Hex) {
      const onChain = await getChannel(chain.deployer, { ...common(), channelId });
      const row = store
        .channelsOf(gateway.address)
        .find((entry) => entry.channelId === channelId.toLowerCase());
      return { onChain: onChain.deposit, stored: row?.deposit };
    }

    it("tops up a channel whose remaining deposit fell below the headroom after a restart", async () => {
      const payments = createGateway(gateway, store, budget);
      const channel = await openAndSpend(payments, otherProvider.address);
      const restarted = createGateway(gateway, store, budget);
      const again = await restarted.channelFor({ provider: otherProvider.address, creditWindow });
      assert.equal(again.channelId.toLowerCase(), channel.channelId.toLowerCase(), "the same channel");
      assert.deepEqual(
        await depositOf(channel.channelId),
        { onChain: depositPerProvider * 2n, stored: depositPerProvider * 2n },
        "topped up by the deposit per provider, on chain and in the store",
      );
      assert.equal(restarted.budget.committed(), depositPerProvider * 2n, "the top-up is committed");
    });

    it("tops up a channel whose remaining deposit fell below the headroom in the same run", async () => {
      const payments = createGateway(gateway, store, budget);
      const channel = await openAndSpend(payments, provider.address);
      const again = await payments.channelFor({ provider: provider.address, creditWindow });
      assert.equal(again, channel, "the same channel");
      assert.deepEqual(
        await depositOf(channel.channelId),
        { onChain: depositPerProvider * 2n, stored: depositPerProvider * 2n },
        "topped up by the deposit per provider, on chain and in the store",
      );
    });
  });

  describe("budget left for a top-up", () => {
    it("keeps using a channel it cannot top up while deposit is left, and refuses once it is spent", async () => {
      const gateway = await chain.account("tight-gateway");
      const provider = await chain.account("tight-provider");
      const store = openStore("tight-gateway");
      const payments = createGateway(gateway, store, depositPerProvider + depositPerProvider / 2n);
      const channel = await payments.channelFor({ provider: provider.address, creditWindow });
      serveSegment(channel, tokensCosting((depositPerProvider * 9n) / 10n));
      const { sent, send, firstVoucher } = capturingSender(store, gateway.address);
      const paying = channel.pay(send);
      await firstVoucher(paying);
      channel.acknowledge(BigInt((sent[0] as (typeof sent)[number]).frame.cumulative_amount));
      await paying;

      const restarted = createGateway(gateway, store, depositPerProvider + depositPerProvider / 2n);
      const again = await restarted.channelFor({ provider: provider.address, creditWindow });
      assert.equal(
        again.channelId.toLowerCase(),
        channel.channelId.toLowerCase(),
        "deposit is left: the same channel",
      );
      const onChain = await getChannel(chain.deployer, { ...common(), channelId: channel.channelId });
      assert.equal(onChain.deposit, depositPerProvider, "not topped up beyond the budget");

      // Owing more than the deposit: the voucher stops at the deposit.
      serveSegment(again, tokensCosting(depositPerProvider / 2n));
      const more = capturingSender(store, gateway.address);
      const payingMore = again.pay(more.send);
      await more.firstVoucher(payingMore);
      const amount = BigInt((more.sent[0] as (typeof more.sent)[number]).frame.cumulative_amount);
      assert.equal(amount, depositPerProvider, "a voucher never exceeds the deposit");
      again.acknowledge(amount);
      await payingMore;

      const third = createGateway(gateway, store, depositPerProvider + depositPerProvider / 2n);
      await assert.rejects(
        third.channelFor({ provider: provider.address, creditWindow }),
        PaymentRequiredError,
        "the deposit is spent and the budget allows no top-up",
      );
      assert.equal(
        (await getChannel(chain.deployer, { ...common(), channelId: channel.channelId })).deposit,
        depositPerProvider,
        "still not topped up",
      );
      assert.equal(getAddress(provider.address), provider.address, "the provider's address is checksummed");
    });
  });

  describe("channels the chain does not know", () => {
    it("does not reuse a stored channel the chain does not know, and forgets one a provider does not know only when the chain agrees", async () => {
      const gateway = await chain.account("gateway-unknown-channel");
      const provider = await chain.account("provider-unknown-channel");
      const store = openStore("unknown-channel");
      // As a chain reset leaves it: a channel in the store (same chain binding) that this chain never opened.
      const ghost = `0x${"9c".repeat(32)}` as Hex;
      store.addChannel({
        channelId: ghost,
        client: gateway.address,
        provider: provider.address,
        deposit: depositPerProvider,
        state: "open",
      });
      const payments = createGateway(gateway, store, 5n * depositPerProvider);
      const channel = await payments.channelFor({ provider: provider.address, creditWindow });
      assert.notEqual(channel.channelId.toLowerCase(), ghost, "a new channel, not the ghost");
      assert.equal(
        (await getChannel(chain.deployer, { ...common(), channelId: channel.channelId })).client,
        gateway.address,
        "opened on this chain",
      );
      const rows = new Map(store.channelsOf(gateway.address).map((row) => [row.channelId, row.state]));
      assert.equal(rows.get(ghost), "unknown", "the ghost is marked unknown");
      assert.equal(payments.budget.committed(), depositPerProvider, "and not counted against the budget");

      assert.equal(
        await payments.forgetIfUnknown({ channelId: channel.channelId }),
        false,
        "a provider saying it does not know a channel the chain knows is wrong: the channel is kept",
      );
      const same = await payments.channelFor({ provider: provider.address, creditWindow });
      assert.equal(same.channelId, channel.channelId, "still used");

      // A chain reset while the gateway runs: a provider says it does not know the channel, and neither does the chain.
      const otherStore = openStore("unknown-channel-running");
      otherStore.addChannel({
        channelId: ghost,
        client: gateway.address,
        provider: provider.address,
        deposit: depositPerProvider,
        state: "open",
      });
      const running = createGateway(gateway, otherStore, 5n * depositPerProvider);
      assert.equal(await running.forgetIfUnknown({ channelId: ghost }), true, "forgotten");
      assert.equal(otherStore.channelsOf(gateway.address)[0]?.state, "unknown");
      const reopened = await running.channelFor({ provider: provider.address, creditWindow });
      assert.notEqual(reopened.channelId.toLowerCase(), ghost, "the next request gets a new channel");
    });
  });
});
