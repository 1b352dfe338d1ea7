import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Address, type Hex, hexToBigInt, keccak256, numberToHex, stringToBytes } from "viem";
import {
  type ChainConnection,
  deploymentVoucherDomain,
  getChannel,
  getTokenBalance,
  openChannel,
  requestChannelClose,
  settleVoucher,
  topUpChannel,
  withdrawChannel,
} from "../../src/chain/index.ts";
import { PaymentRequiredError } from "../../src/errors/index.ts";
import type { Logger, LogLevel } from "../../src/log/index.ts";
import {
  createProviderPayments,
  type ProviderPayments,
  VoucherRejectedError,
} from "../../src/payments/index.ts";
import { priceOfTokens, recoverVoucherSigner, signVoucher, voucherDomain } from "../../src/protocol/index.ts";
import { openPaymentStore, type PaymentStore } from "../../src/store/index.ts";
import { type LocalChain, startLocalChain, type TestAccount } from "../fixtures/chain/localChain.ts";
import { temporaryHome, waitFor } from "../helpers.ts";

const myc = 10n ** 18n;
/** Every channel's deposit. */
const deposit = 10n * myc;
/** Half a unit per output token: prices round down, so the credit window holds one token more than its size. */
const outputPricePerMillion = 500_000n;
const creditWindowTokens = 100;
/** The order of secp256k1: a signature (r, s) is also valid as (r, n - s) with the other v. */
const secp256k1Order = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
/** Never reached: only the tests decide when to settle. */
const neverThreshold = 10n ** 30n;

let chain: LocalChain;
let client: TestAccount;
let provider: TestAccount;
let otherProvider: TestAccount;
let mallory: TestAccount;
let directory: { home: string; remove: () => Promise<void> };
let store: PaymentStore;
let payments: ProviderPayments;

const common = () => ({ deployments: chain.deployments });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function priceOfOutput(tokens: number): bigint {
  return priceOfTokens({
    promptTokens: 0,
    completionTokens: tokens,
    pricePerMillion: { input: 0n, output: outputPricePerMillion },
  });
}

/** The most output tokens whose price, beyond `paid`, stays within `limit`. */
function mostTokensWithin(limit: bigint, paid = 0n): number {
  let tokens = 0;
  while (priceOfOutput(tokens + 1) - paid <= limit) tokens++;
  return tokens;
}

async function open(from: TestAccount, to: Address, amount = deposit): Promise<Hex> {
  const { channelId } = await openChannel(from.connection, { ...common(), provider: to, amount });
  return channelId;
}

function sign(signer: TestAccount, channelId: Hex, cumulativeAmount: bigint) {
  return signVoucher({
    privateKey: signer.privateKey,
    domain: deploymentVoucherDomain(chain.deployments),
    message: { channelId, cumulativeAmount },
  });
}

/** Signs and offers a voucher to `payments` (or another instance). */
async function offer(
  channelId: Hex,
  cumulativeAmount: bigint,
  parameters: { signer?: TestAccount; to?: ProviderPayments } = {},
) {
  const signature = await sign(parameters.signer ?? client, channelId, cumulativeAmount);
  return (parameters.to ?? payments).acceptVoucher({ channelId, cumulativeAmount, signature });
}

/** Asserts that `action` is refused with a VoucherRejectedError of `code`. */
async function assertRejected(action: Promise<unknown>, code: string, message: string) {
  await assert.rejects(
    action,
    (error: unknown) => {
      assert.ok(
        error instanceof VoucherRejectedError,
        `${message}: expected a VoucherRejectedError, got ${error}`,
      );
      assert.equal(error.code, code, `${message}: the code (${error.message})`);
      return true;
    },
    message,
  );
}

/** Asserts that a refused voucher changed neither the store nor the chain. */
async function assertNothingChanged(
  channelId: Hex,
  action: () => Promise<unknown>,
  code: string,
  message: string,
) {
  const before = store.latestVoucher(channelId);
  const vouchers = store.vouchersOf(provider.address);
  const onChain = await getChannel(chain.deployer, { ...common(), channelId }).catch(() => undefined);
  await assertRejected(action(), code, message);
  assert.deepEqual(store.latestVoucher(channelId), before, `${message}: the stored voucher is unchanged`);
  assert.deepEqual(store.vouchersOf(provider.address), vouchers, `${message}: the store is unchanged`);
  assert.deepEqual(
    await getChannel(chain.deployer, { ...common(), channelId }).catch(() => undefined),
    onChain,
    `${message}: the channel on chain is unchanged`,
  );
}

/** A logger that keeps the lines at warn and error. */
function recordingLogger() {
  const lines: { level: LogLevel; message: string }[] = [];
  const logger: Logger = {
    debug: () => {},
    info: () => {},
    warn: (message) => lines.push({ level: "warn", message }),
    error: (message) => lines.push({ level: "error", message }),
    child: () => logger,
  };
  return { logger, lines };
}

function create(overrides: { connection?: ChainConnection; logger?: Logger; checkIntervalMs?: number } = {}) {
  return createProviderPayments({
    connection: overrides.connection ?? provider.connection,
    deployments: chain.deployments,
    store,
    provider: provider.address,
    outputPricePerMillion,
    creditWindowTokens,
    settlement: {
      thresholdAmount: neverThreshold,
      maxAgeMs: 3_600_000,
      checkIntervalMs: overrides.checkIntervalMs ?? 200,
    },
    logger: overrides.logger,
  });
}

function balanceOf(owner: Address) {
  return getTokenBalance(chain.deployer, { token: chain.deployments.contracts.token, owner });
}

function settledOnChain(channelId: Hex) {
  return getChannel(chain.deployer, { ...common(), channelId }).then((record) => record.settled);
}

describe("provider payments on a local chain", () => {
  before(async () => {
    chain = await startLocalChain();
    client = await chain.account("client");
    provider = await chain.account("provider");
    otherProvider = await chain.account("other-provider");
    mallory = await chain.account("mallory");
    directory = await temporaryHome("mycel-provider-payments-");
    store = openPaymentStore({ path: join(directory.home, "mycel.db"), chain: "test-chain" });
    payments = create();
  });
  after(async () => {
    await payments?.stop({ timeoutMs: 1_000 });
    store?.close();
    await directory?.remove();
    await chain?.stop();
  });

  it("announces the chain, the contract and the credit window in smallest units", () => {
    const creditWindow = priceOfOutput(creditWindowTokens);
    assert.equal(payments.creditWindow, creditWindow, "the credit window is the price of its tokens");
    assert.deepEqual(
      payments.announcement,
      {
        chain_id: chain.deployments.chainId,
        payment_channels: chain.deployments.contracts.paymentChannels,
        credit_window: creditWindow.toString(),
      },
      "the announcement",
    );
  });

  describe("vouchers", () => {
    let channelId: Hex;
    const first = deposit / 10n;

    before(async () => {
      channelId = await open(client, provider.address);
    });

    it("accepts a valid voucher and stores it", async () => {
      const signature = await sign(client, channelId, first);
      const stored = await payments.acceptVoucher({ channelId, cumulativeAmount: first, signature });
      assert.equal(stored.channelId, channelId.toLowerCase(), "the channel");
      assert.equal(stored.provider, provider.address, "the provider");
      assert.equal(stored.client, client.address, "the client (the signer)");
      assert.equal(stored.cumulativeAmount, first, "the amount");
      assert.equal(stored.signature, signature, "the signature, as received");
      assert.equal(stored.settledAmount, 0n, "nothing settled yet");
      assert.deepEqual(store.latestVoucher(channelId), stored, "the store holds what acceptVoucher returned");
      assert.deepEqual(payments.vouchers(), [stored], "vouchers() lists it");
    });

    it("refuses a replayed and a lower voucher as voucher_stale", async () => {
      const replay = store.latestVoucher(channelId);
      assert.ok(replay, "a voucher is stored");
      await assertNothingChanged(
        channelId,
        () =>
          payments.acceptVoucher({
            channelId,
            cumulativeAmount: replay.cumulativeAmount,
            signature: replay.signature,
          }),
        "voucher_stale",
        "the same voucher again",
      );
      await assertNothingChanged(
        channelId,
        () => offer(channelId, first / 2n),
        "voucher_stale",
        "a lower voucher",
      );
      await assertNothingChanged(
        channelId,
        () => offer(channelId, 0n),
        "voucher_stale",
        "a voucher for nothing",
      );
    });

    it("refuses vouchers the channel's client did not sign as voucher_forged", async () => {
      const amount = first * 2n;
      await assertNothingChanged(
        channelId,
        () => offer(channelId, amount, { signer: mallory }),
        "voucher_forged",
        "a voucher signed by another key",
      );
      await assertNothingChanged(
        channelId,
        () => offer(channelId, amount, { signer: provider }),
        "voucher_forged",
        "a voucher signed by the provider itself",
      );
      const forOtherAmount = await sign(client, channelId, amount + 1n);
      await assertNothingChanged(
        channelId,
        () => payments.acceptVoucher({ channelId, cumulativeAmount: amount, signature: forOtherAmount }),
        "voucher_forged",
        "the client's signature over another amount",
      );
      const otherDomain = await signVoucher({
        privateKey: client.privateKey,
        domain: voucherDomain({
          chainId: chain.deployments.chainId + 1,
          paymentChannels: chain.deployments.contracts.paymentChannels,
        }),
        message: { channelId, cumulativeAmount: amount },
      });
      await assertNothingChanged(
        channelId,
        () => payments.acceptVoucher({ channelId, cumulativeAmount: amount, signature: otherDomain }),
        "voucher_forged",
        "the client's signature for another chain",
      );
      // The voucher frame's schema admits 65-byte signatures only; a shorter one must still store nothing.
      const before = store.latestVoucher(channelId);
      await assert.rejects(
        payments.acceptVoucher({ channelId, cumulativeAmount: amount, signature: "0x1234" }),
        Error,
        "a truncated signature is refused",
      );
      assert.deepEqual(store.latestVoucher(channelId), before, "a truncated signature stores nothing");
    });

    it("refuses the high-s twin of a valid signature, then accepts the valid one", async () => {
      const amount = first * 2n;
      const signature = await sign(client, channelId, amount);
      const r = signature.slice(0, 66);
      const s = hexToBigInt(`0x${signature.slice(66, 130)}`);
      const v = Number.parseInt(signature.slice(130, 132), 16);
      const twin =
        `${r}${numberToHex(secp256k1Order - s, { size: 32 }).slice(2)}${(v === 27 ? 28 : 27).toString(16)}` as Hex;
      const domain = deploymentVoucherDomain(chain.deployments);
      assert.equal(
        await recoverVoucherSigner({
          domain,
          message: { channelId, cumulativeAmount: amount },
          signature: twin,
        }),
        client.address,
        "the twin recovers to the client too (it is malleable, not forged by another key)",
      );
      await assertNothingChanged(
        channelId,
        () => payments.acceptVoucher({ channelId, cumulativeAmount: amount, signature: twin }),
        "voucher_forged",
        "a high-s signature",
      );
      const yParity = `${signature.slice(0, 130)}${(v - 27).toString(16).padStart(2, "0")}` as Hex;
      await assertNothingChanged(
        channelId,
        () => payments.acceptVoucher({ channelId, cumulativeAmount: amount, signature: yParity }),
        "voucher_forged",
        "a signature with v of 0 or 1",
      );
      const stored = await payments.acceptVoucher({ channelId, cumulativeAmount: amount, signature });
      assert.equal(stored.cumulativeAmount, amount, "the low-s signature is accepted");
    });

    it("refuses a voucher above the deposit as voucher_underfunded", async () => {
      await assertNothingChanged(
        channelId,
        () => offer(channelId, deposit + 1n),
        "voucher_underfunded",
        "a voucher one unit above the deposit",
      );
    });

    it("refuses a voucher for a channel to another provider as wrong_channel", async () => {
      const elsewhere = await open(client, otherProvider.address);
      await assertNothingChanged(
        elsewhere,
        () => offer(elsewhere, first),
        "wrong_channel",
        "a channel that pays another provider",
      );
      assert.equal(store.latestVoucher(elsewhere), undefined, "nothing stored for it");
    });

    it("refuses a voucher for a channel that does not exist as unknown_channel", async () => {
      const unknown = keccak256(stringToBytes("no such channel"));
      await assertNothingChanged(
        unknown,
        () => offer(unknown, first),
        "unknown_channel",
        "an unknown channel",
      );
    });

    it("accepts a higher voucher once the channel was topped up (reads the deposit again)", async () => {
      await topUpChannel(client.connection, { ...common(), channelId, amount: deposit });
      const amount = deposit + deposit / 2n;
      const stored = await offer(channelId, amount);
      assert.equal(stored.cumulativeAmount, amount, "a voucher above the first deposit is accepted");
      assert.equal(store.latestVoucher(channelId)?.cumulativeAmount, amount, "and stored");
      await assertNothingChanged(
        channelId,
        () => offer(channelId, deposit * 2n + 1n),
        "voucher_underfunded",
        "a voucher above the topped-up deposit",
      );
    });

    it("reports an unreachable chain as chain_unavailable, and trusts a channel it read before", async () => {
      let down = false;
      const publicClient = provider.connection.publicClient;
      const flaky = {
        ...provider.connection,
        publicClient: {
          ...publicClient,
          readContract: ((...args: Parameters<typeof publicClient.readContract>) =>
            down
              ? Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:1"))
              : publicClient.readContract(...args)) as typeof publicClient.readContract,
        },
      } as ChainConnection;
      const instance = create({ connection: flaky });
      const fresh = await open(client, provider.address);
      down = true;
      await assert.rejects(
        offer(fresh, first, { to: instance }),
        (error: unknown) => {
          assert.ok(error instanceof VoucherRejectedError, `expected a VoucherRejectedError, got ${error}`);
          assert.equal(error.code, "chain_unavailable", "the code");
          assert.equal(error.retryAfterMs, 2_000, "worth retrying shortly");
          return true;
        },
        "a channel never read cannot be checked",
      );
      assert.equal(store.latestVoucher(fresh), undefined, "nothing stored");
      down = false;
      await offer(fresh, first, { to: instance });
      down = true;
      const stored = await offer(fresh, first * 2n, { to: instance });
      assert.equal(
        stored.cumulativeAmount,
        first * 2n,
        "a channel read before is trusted while the chain is down",
      );
      await assertRejected(
        offer(fresh, deposit + 1n, { to: instance }),
        "voucher_underfunded",
        "above the deposit last read",
      );
      down = false;
    });
  });

  describe("metering (admit)", () => {
    let channelId: Hex;

    before(async () => {
      channelId = await open(client, provider.address);
    });

    it("charges output until the unpaid part would exceed the credit window", async () => {
      const creditWindow = payments.creditWindow;
      const boundary = mostTokensWithin(creditWindow);
      assert.ok(boundary > creditWindowTokens, "rounding down lets one more token in (the case this checks)");
      const charge = await payments.admit({ channelId, client: client.address });
      assert.equal(charge.channelId, channelId, "the charge's channel");
      assert.deepEqual(charge.debt(), { unpaid: 0n, creditWindow }, "nothing owed yet");
      assert.equal(charge.charge(boundary - 1), true, "within the window");
      assert.equal(charge.charge(1), true, "exactly at the boundary");
      assert.deepEqual(charge.debt(), { unpaid: priceOfOutput(boundary), creditWindow }, "what is owed");
      assert.equal(charge.charge(1), false, "one token more would exceed the window");
      assert.equal(charge.charge(1_000), false, "many more too");
      assert.deepEqual(
        charge.debt(),
        { unpaid: priceOfOutput(boundary), creditWindow },
        "a refused charge counts nothing",
      );

      const paid = priceOfOutput(boundary);
      await offer(channelId, paid);
      const more = mostTokensWithin(creditWindow, paid) - boundary;
      assert.ok(more > 0, "the voucher makes room");
      assert.equal(charge.charge(more), true, "a voucher raises the allowance");
      assert.equal(charge.charge(1), false, "up to a new boundary");
      assert.deepEqual(
        charge.debt(),
        { unpaid: priceOfOutput(boundary + more) - paid, creditWindow },
        "what is owed beyond the voucher",
      );
      charge.release();
      assert.equal(charge.charge(1), false, "a released charge counts nothing more");
    });

    it("refuses a channel of another client with PaymentRequiredError", async () => {
      await assert.rejects(
        payments.admit({ channelId, client: mallory.address }),
        (error: unknown) => {
          assert.ok(error instanceof PaymentRequiredError, `expected PaymentRequiredError, got ${error}`);
          assert.equal(error.code, "payment_required", "the code");
          return true;
        },
        "another client's channel",
      );
    });

    it("waits for a voucher when a finished request left more owed than the window", async () => {
      const paid = store.latestVoucher(channelId)?.cumulativeAmount ?? 0n;
      const charge = await payments.admit({ channelId, client: client.address });
      // Below zero: the output released earlier without a receipt was paid for already.
      const base = charge.debt().unpaid;
      const price = payments.creditWindow * 3n;
      charge.complete(price);
      assert.equal(charge.charge(1), false, "a completed charge counts nothing more");
      // A voucher for less than what is owed ends the grace of finished requests: exactly the window is left
      // owed, and at the window not one token more could be served.
      await offer(channelId, paid + base + price - payments.creditWindow);
      assert.deepEqual(
        charge.debt(),
        { unpaid: payments.creditWindow, creditWindow: payments.creditWindow },
        "the window is owed",
      );
      const startedAt = Date.now();
      await assert.rejects(
        payments.admit({ channelId, client: client.address }),
        PaymentRequiredError,
        "without a voucher the request is refused",
      );
      assert.ok(Date.now() - startedAt >= 1_500, "after waiting a little for a voucher");
      const waiting = payments.admit({ channelId, client: client.address });
      // A fixed wait on purpose: admit() reads the channel, then waits up to 2 s for a voucher, and says nothing when
      // it starts waiting. The voucher is sent 100 ms into that wait, so it is the voucher that lets admit() go on.
      await sleep(100);
      await offer(channelId, paid + base + price);
      const admitted = await waiting;
      assert.deepEqual(
        admitted.debt(),
        { unpaid: 0n, creditWindow: payments.creditWindow },
        "the voucher paid everything owed",
      );
      admitted.release();
    });

    it("forgives released output, unless the client was cut off for not paying", async () => {
      const forgiven = await payments.admit({ channelId, client: client.address });
      const base = forgiven.debt().unpaid;
      assert.equal(forgiven.charge(10), true, "within the window");
      assert.equal(forgiven.debt().unpaid, base + priceOfOutput(10), "counted while it runs");
      forgiven.release();
      const cutOff = await payments.admit({ channelId, client: client.address });
      assert.equal(cutOff.debt().unpaid, base, "a released answer is not owed");
      assert.equal(cutOff.charge(10), true, "within the window");
      cutOff.markUnpaid();
      cutOff.release();
      const next = await payments.admit({ channelId, client: client.address });
      assert.equal(
        next.debt().unpaid,
        base + priceOfOutput(10),
        "what a cut-off client was served stays owed",
      );
      next.release();
    });
  });

  describe("settlement", () => {
    it("settles exactly the latest vouchers on chain, once", async () => {
      const unsettled = store.unsettledVouchers(provider.address);
      assert.ok(unsettled.length >= 2, "earlier tests left vouchers unsettled");
      const expected = unsettled.reduce(
        (sum, voucher) => sum + voucher.cumulativeAmount - voucher.settledAmount,
        0n,
      );
      const balanceBefore = await balanceOf(provider.address);
      await payments.settleAll();
      for (const voucher of unsettled) {
        assert.equal(
          await settledOnChain(voucher.channelId),
          voucher.cumulativeAmount,
          `channel ${voucher.channelId} is settled up to its latest voucher`,
        );
        assert.equal(
          store.latestVoucher(voucher.channelId)?.settledAmount,
          voucher.cumulativeAmount,
          "the store records the settlement",
        );
      }
      assert.equal(
        await balanceOf(provider.address),
        balanceBefore + expected,
        "the provider was paid the difference",
      );
      assert.deepEqual(store.unsettledVouchers(provider.address), [], "nothing is left unsettled");

      const block = await chain.deployer.publicClient.getBlockNumber();
      await payments.settleAll();
      assert.equal(
        await chain.deployer.publicClient.getBlockNumber(),
        block,
        "a second settleAll sends nothing",
      );
      assert.equal(await balanceOf(provider.address), balanceBefore + expected, "and pays nothing");
    });

    it("recovers a settlement that reached the chain but not the store", async () => {
      const channelId = await open(client, provider.address);
      const amount = deposit / 4n;
      const voucher = await offer(channelId, amount);
      await settleVoucher(provider.connection, {
        ...common(),
        channelId,
        cumulativeAmount: voucher.cumulativeAmount,
        signature: voucher.signature,
      });
      assert.equal(store.latestVoucher(channelId)?.settledAmount, 0n, "the store missed the settlement");
      const { logger, lines } = recordingLogger();
      const restarted = create({ logger });
      const balanceBefore = await balanceOf(provider.address);
      await restarted.settleAll();
      assert.equal(await settledOnChain(channelId), amount, "settled once on chain");
      assert.equal(store.latestVoucher(channelId)?.settledAmount, amount, "the store took the chain's word");
      assert.deepEqual(store.unsettledVouchers(provider.address), [], "nothing is left unsettled");
      assert.equal(await balanceOf(provider.address), balanceBefore, "nothing paid twice");
      assert.deepEqual(lines, [], "no warning or error was logged");
    });

    it("stops trying, and records the rest as forfeited, when the client withdrew first", async () => {
      const channelId = await open(client, provider.address);
      const payments = create();
      const amount = deposit / 4n;
      await offer(channelId, amount, { to: payments });
      await requestChannelClose(client.connection, { ...common(), channelId });
      await chain.increaseTime(chain.deployments.parameters.minChallengeSeconds + 1);
      await withdrawChannel(client.connection, { ...common(), channelId });
      const { logger, lines } = recordingLogger();
      const late = create({ logger });
      await late.settleAll();
      const voucher = store.latestVoucher(channelId);
      assert.equal(voucher?.forfeitedAmount, amount, "the voucher is recorded as forfeited");
      assert.equal(voucher?.unsettledSince, undefined, "and no longer unsettled");
      assert.ok(
        !store.unsettledVouchers(provider.address).some((entry) => entry.channelId === channelId),
        "so it is not tried again",
      );
      assert.equal(lines.filter((line) => line.level === "warn").length, 1, "one warning says so");
      await late.settleAll();
      assert.equal(lines.filter((line) => line.level === "warn").length, 1, "and a second round is silent");
    });

    it("settles a channel its client is closing, at the next check", async () => {
      const channelId = await open(client, provider.address);
      const { logger, lines } = recordingLogger();
      const watcher = create({ logger, checkIntervalMs: 200 });
      watcher.start();
      try {
        const amount = deposit / 5n;
        await offer(channelId, amount, { to: watcher });
        // A fixed wait on purpose: what is tested is that nothing settles while three 200 ms checks pass.
        await sleep(700);
        assert.equal(await settledOnChain(channelId), 0n, "an open channel below threshold and age waits");
        await requestChannelClose(client.connection, { ...common(), channelId });
        // Polling, within the 5 s the test allows: the chain and the store announce nothing.
        const deadline = Date.now() + 5_000;
        await waitFor(
          "the voucher to be settled on chain after the close request",
          async () => ((await settledOnChain(channelId)) === amount ? true : undefined),
          {
            timeoutMs: deadline - Date.now(),
            intervalMs: 100,
            describe: async () => `settled ${await settledOnChain(channelId)}`,
          },
        );
        assert.equal(
          await settledOnChain(channelId),
          amount,
          "settled within a few seconds of the close request",
        );
        await waitFor(
          "the settlement to be recorded in the store",
          () => (store.latestVoucher(channelId)?.settledAmount === amount ? true : undefined),
          { timeoutMs: Math.max(0, deadline - Date.now()), intervalMs: 50 },
        );
        assert.equal(store.latestVoucher(channelId)?.settledAmount, amount, "and recorded");
      } finally {
        await watcher.stop({ timeoutMs: 2_000 });
      }
      assert.deepEqual(lines, [], "no warning or error was logged");
    });
  });
});
