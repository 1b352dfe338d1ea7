import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import {
  type Address,
  concat,
  createTestClient,
  decodeErrorResult,
  encodeAbiParameters,
  encodeFunctionData,
  getAddress,
  type Hex,
  hexToBigInt,
  http,
  keccak256,
  numberToHex,
  parseEventLogs,
  recoverAddress,
  slice,
  stringToBytes,
  type TransactionReceipt,
  toFunctionSelector,
} from "viem";
import {
  ContractRevertError,
  deployContract,
  getChannel,
  getTokenBalance,
  listChannels,
  openChannel,
  paymentChannelsAbi,
  paymentChannelsBytecode,
  requestChannelClose,
  sendContractTransaction,
  settleVoucher,
  topUpChannel,
  withdrawChannel,
} from "../../src/chain/index.ts";
import {
  hashVoucher,
  recoverVoucherSigner,
  signVoucher,
  type VoucherDomain,
  voucherDomain,
  voucherTypes,
} from "../../src/protocol/index.ts";
import { type LocalChain, startLocalChain, type TestAccount } from "../fixtures/chain/localChain.ts";
import {
  attackerAbi,
  attackerBytecode,
  reentrantTokenAbi,
  reentrantTokenBytecode,
} from "../fixtures/chain/testContracts.generated.ts";

const myc = 10n ** 18n;
/** The order of secp256k1: a signature (r, s) is also valid as (r, n - s) with the other parity. */
const secp256k1Order = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
/** The devnet's minimum challenge period (devnetDeployParameters.minChallengeSeconds). */
const challengeSeconds = 60;

let chain: LocalChain;
let alice: TestAccount;
let bob: TestAccount;
let carol: TestAccount;
let mallory: TestAccount;
let domain: VoucherDomain;

const paymentChannels = () => chain.deployments.contracts.paymentChannels;
const token = () => chain.deployments.contracts.token;
const common = () => ({ deployments: chain.deployments });

function balanceOf(owner: Address, tokenAddress: Address = token()) {
  return getTokenBalance(chain.deployer, { token: tokenAddress, owner });
}

function readChannel(channelId: Hex) {
  return getChannel(chain.deployer, { ...common(), channelId });
}

async function open(
  client: TestAccount,
  provider: Address,
  amount: bigint,
  challengePeriodSeconds = challengeSeconds,
) {
  const { channelId } = await openChannel(client.connection, {
    ...common(),
    provider,
    amount,
    challengePeriodSeconds,
  });
  return channelId;
}

function sign(client: TestAccount, channelId: Hex, cumulativeAmount: bigint, signingDomain = domain) {
  return signVoucher({
    privateKey: client.privateKey,
    domain: signingDomain,
    message: { channelId, cumulativeAmount },
  });
}

function settle(provider: TestAccount, channelId: Hex, cumulativeAmount: bigint, signature: Hex) {
  return settleVoucher(provider.connection, { ...common(), channelId, cumulativeAmount, signature });
}

/** Requests the close, waits out the challenge period and withdraws. */
async function closeAndWithdraw(client: TestAccount, channelId: Hex) {
  await requestChannelClose(client.connection, { ...common(), channelId });
  const channel = await readChannel(channelId);
  await chain.increaseTime(channel.challengePeriodSeconds);
  return withdrawChannel(client.connection, { ...common(), channelId });
}

function voucherDigestOnChain(
  channelId: Hex,
  cumulativeAmount: bigint,
  address: Address = paymentChannels(),
) {
  return chain.deployer.publicClient.readContract({
    address,
    abi: paymentChannelsAbi,
    functionName: "voucherDigest",
    args: [channelId, cumulativeAmount],
  });
}

/** The address PaymentChannels recovers from a signature over the voucher `{channelId, cumulativeAmount}`. */
async function signerSeenByContract(channelId: Hex, cumulativeAmount: bigint, signature: Hex) {
  return recoverAddress({ hash: await voucherDigestOnChain(channelId, cumulativeAmount), signature });
}

/** The decoded PaymentChannels events of one kind in a receipt. */
function events<
  const name extends
    | "ChannelOpened"
    | "ChannelToppedUp"
    | "ChannelSettled"
    | "CloseRequested"
    | "ChannelWithdrawn",
>(receipt: TransactionReceipt, eventName: name) {
  return parseEventLogs({ abi: paymentChannelsAbi, logs: receipt.logs, eventName }).filter(
    (log) => log.address.toLowerCase() === paymentChannels().toLowerCase(),
  );
}

/** The smaller of two bigints (Math.min takes numbers only). */
function smaller(a: bigint, b: bigint): bigint {
  if (a < b) return a;
  return b;
}

/** Awaits an action that the contract must refuse and returns the refusal (any other outcome fails). */
async function refusal(action: Promise<unknown>): Promise<ContractRevertError> {
  try {
    await action;
  } catch (error) {
    if (error instanceof ContractRevertError) return error;
    throw error;
  }
  assert.fail("the contract accepted what it should have refused");
}

function channelCount() {
  return chain.deployer.publicClient.readContract({
    address: paymentChannels(),
    abi: paymentChannelsAbi,
    functionName: "channelCount",
  });
}

/** A channel (if given), the number of channels and the token balances of the contract and the given accounts. */
async function observe(channelId: Hex | undefined, accounts: Address[]) {
  const [channel, count, ...balances] = await Promise.all([
    channelId ? readChannel(channelId) : undefined,
    channelCount(),
    ...[paymentChannels(), ...accounts].map((account) => balanceOf(account)),
  ]);
  return { channel, count, balances };
}

/** Asserts that `action` is refused with `errorName` (and `args`) and changed neither the channel nor the balances. */
async function assertRefused(parameters: {
  channelId: Hex | undefined;
  watch: TestAccount[];
  action: () => Promise<unknown>;
  errorName: string;
  args?: readonly unknown[];
}) {
  const accounts = parameters.watch.map((account) => account.address);
  const before = await observe(parameters.channelId, accounts);
  const error = await refusal(parameters.action());
  assert.equal(error.errorName, parameters.errorName, error.message);
  if (parameters.args) assert.deepEqual(error.args, parameters.args);
  assert.deepEqual(await observe(parameters.channelId, accounts), before, "a refused call changed state");
  return error;
}

describe("PaymentChannels on a local chain", () => {
  before(async () => {
    chain = await startLocalChain();
    alice = await chain.account("alice");
    bob = await chain.account("bob");
    carol = await chain.account("carol");
    mallory = await chain.account("mallory");
    domain = voucherDomain({ chainId: chain.deployments.chainId, paymentChannels: paymentChannels() });
  });
  after(() => chain?.stop());

  it("opens, tops up, settles vouchers by difference, closes and refunds the rest", async () => {
    const deposit = 100n * myc;
    const contractStart = await balanceOf(paymentChannels());
    const aliceStart = await balanceOf(alice.address);
    const bobStart = await balanceOf(bob.address);
    const count = await channelCount();

    const opened = await openChannel(alice.connection, {
      ...common(),
      provider: bob.address,
      amount: deposit,
      challengePeriodSeconds: 90,
    });
    const channelId = opened.channelId;
    assert.equal(
      channelId,
      keccak256(
        encodeAbiParameters(
          [{ type: "uint256" }, { type: "address" }, { type: "uint256" }],
          [BigInt(chain.deployments.chainId), paymentChannels(), count],
        ),
      ),
      "the channel id binds the chain, the contract and the channel's index",
    );
    const openReceipt = await chain.deployer.publicClient.getTransactionReceipt({ hash: opened.hash });
    assert.deepEqual(
      events(openReceipt, "ChannelOpened").map((log) => log.args),
      [
        {
          channelId,
          client: alice.address,
          provider: bob.address,
          token: token(),
          deposit,
          challengePeriod: 90n,
        },
      ],
    );
    assert.deepEqual(await readChannel(channelId), {
      channelId,
      client: alice.address,
      provider: bob.address,
      token: token(),
      deposit,
      settled: 0n,
      challengePeriodSeconds: 90,
      closesAt: undefined,
      state: "open",
    });
    assert.equal(
      await balanceOf(alice.address),
      aliceStart - deposit,
      "the deposit is pulled from the client",
    );
    assert.equal(await balanceOf(paymentChannels()), contractStart + deposit);
    assert.equal(await balanceOf(bob.address), bobStart);
    const listed = await listChannels(chain.deployer, { ...common(), account: alice.address });
    assert.ok(listed.asClient.some((channel) => channel.channelId === channelId));
    const listedForBob = await listChannels(chain.deployer, { ...common(), account: bob.address });
    assert.ok(listedForBob.asProvider.some((channel) => channel.channelId === channelId));

    const toppedUp = await topUpChannel(alice.connection, { ...common(), channelId, amount: 50n * myc });
    assert.deepEqual(
      events(toppedUp.receipt, "ChannelToppedUp").map((log) => log.args),
      [{ channelId, amount: 50n * myc, deposit: 150n * myc }],
    );
    assert.equal((await readChannel(channelId)).deposit, 150n * myc);
    assert.equal(await balanceOf(alice.address), aliceStart - 150n * myc);
    assert.equal(await balanceOf(paymentChannels()), contractStart + 150n * myc);

    const first = await settle(bob, channelId, 30n * myc, await sign(alice, channelId, 30n * myc));
    assert.equal(first.paid, 30n * myc);
    assert.deepEqual(
      events(first.receipt, "ChannelSettled").map((log) => log.args),
      [{ channelId, cumulativeAmount: 30n * myc, paid: 30n * myc }],
    );
    assert.equal(await balanceOf(bob.address), bobStart + 30n * myc);
    assert.equal(await balanceOf(paymentChannels()), contractStart + 120n * myc);
    assert.equal((await readChannel(channelId)).settled, 30n * myc);

    const second = await settle(bob, channelId, 70n * myc, await sign(alice, channelId, 70n * myc));
    assert.equal(second.paid, 40n * myc, "a higher voucher pays only the difference");
    assert.equal(await balanceOf(bob.address), bobStart + 70n * myc);
    assert.equal(await balanceOf(paymentChannels()), contractStart + 80n * myc);
    assert.equal((await readChannel(channelId)).settled, 70n * myc);

    const closing = await requestChannelClose(alice.connection, { ...common(), channelId });
    const closeBlock = await chain.deployer.publicClient.getBlock({ blockNumber: closing.blockNumber });
    const closesAt = closeBlock.timestamp + 90n;
    assert.deepEqual(
      events(closing.receipt, "CloseRequested").map((log) => log.args),
      [{ channelId, closesAt }],
    );
    const closingChannel = await readChannel(channelId);
    assert.equal(closingChannel.state, "closing");
    assert.equal(closingChannel.closesAt?.getTime(), Number(closesAt) * 1000);

    // The provider may still settle during the challenge period.
    const during = await settle(bob, channelId, 90n * myc, await sign(alice, channelId, 90n * myc));
    assert.equal(during.paid, 20n * myc);
    assert.equal(await balanceOf(bob.address), bobStart + 90n * myc);

    await chain.increaseTime(90);
    const withdrawn = await withdrawChannel(alice.connection, { ...common(), channelId });
    assert.equal(withdrawn.refunded, 60n * myc, "the refund is deposit - settled");
    assert.deepEqual(
      events(withdrawn.receipt, "ChannelWithdrawn").map((log) => log.args),
      [{ channelId, refunded: 60n * myc }],
    );
    assert.equal(await balanceOf(alice.address), aliceStart - 90n * myc);
    assert.equal(await balanceOf(bob.address), bobStart + 90n * myc);
    assert.equal(await balanceOf(paymentChannels()), contractStart, "the contract keeps nothing");
    const closed = await readChannel(channelId);
    assert.equal(closed.state, "closed");
    assert.equal(closed.settled, 90n * myc);
    assert.equal(closed.deposit, 150n * myc);
  });

  it("computes the same voucher digest as src/protocol", async () => {
    const typeString = `Voucher(${voucherTypes.Voucher.map((field) => `${field.type} ${field.name}`).join(",")})`;
    assert.equal(
      await chain.deployer.publicClient.readContract({
        address: paymentChannels(),
        abi: paymentChannelsAbi,
        functionName: "VOUCHER_TYPEHASH",
      }),
      keccak256(stringToBytes(typeString)),
    );
    const channelId = await open(alice, bob.address, 10n * myc);
    const fixed: [Hex, bigint][] = [
      [channelId, 0n],
      [channelId, 1n],
      [channelId, 10n * myc],
      [channelId, 2n ** 256n - 1n],
      [`0x${"00".repeat(32)}`, 0n],
    ];
    for (const [id, amount] of fixed)
      assert.equal(
        await voucherDigestOnChain(id, amount),
        hashVoucher({ domain, message: { channelId: id, cumulativeAmount: amount } }),
      );
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.bigInt({ min: 0n, max: 2n ** 256n - 1n }),
        async (bytes, amount) => {
          const id = numberToHex(hexToBigInt(`0x${Buffer.from(bytes).toString("hex")}`), { size: 32 });
          assert.equal(
            await voucherDigestOnChain(id, amount),
            hashVoucher({ domain, message: { channelId: id, cumulativeAmount: amount } }),
          );
        },
      ),
      { numRuns: 40 },
    );
    // And a signature from src/protocol recovers to the client on both sides.
    const signature = await sign(alice, channelId, 5n);
    assert.equal(await signerSeenByContract(channelId, 5n, signature), alice.address);
    assert.equal(
      await recoverVoucherSigner({ domain, message: { channelId, cumulativeAmount: 5n }, signature }),
      alice.address,
    );
  });

  describe("refuses attacks without moving tokens", () => {
    it("refuses to open or top up with a bad provider, challenge period or amount", async () => {
      const openWith =
        (parameters: { provider?: Address; amount?: bigint; challengePeriodSeconds?: number }) => () =>
          openChannel(alice.connection, {
            ...common(),
            provider: parameters.provider ?? bob.address,
            amount: parameters.amount ?? 10n * myc,
            challengePeriodSeconds: parameters.challengePeriodSeconds ?? challengeSeconds,
          });
      const zero = "0x0000000000000000000000000000000000000000";
      const { minChallengeSeconds, maxChallengeSeconds } = chain.deployments.parameters;
      const cases: [string, () => Promise<unknown>, string, readonly unknown[]][] = [
        ["to itself", openWith({ provider: alice.address }), "InvalidProvider", [alice.address]],
        ["to nobody", openWith({ provider: zero }), "InvalidProvider", [zero]],
        [
          "too short a challenge",
          openWith({ challengePeriodSeconds: minChallengeSeconds - 1 }),
          "InvalidChallengePeriod",
          [BigInt(minChallengeSeconds - 1), BigInt(minChallengeSeconds), BigInt(maxChallengeSeconds)],
        ],
        [
          "too long a challenge",
          openWith({ challengePeriodSeconds: maxChallengeSeconds + 1 }),
          "InvalidChallengePeriod",
          [BigInt(maxChallengeSeconds + 1), BigInt(minChallengeSeconds), BigInt(maxChallengeSeconds)],
        ],
        ["nothing", openWith({ amount: 0n }), "InvalidAmount", [0n]],
        ["more than 128 bits", openWith({ amount: 2n ** 128n }), "InvalidAmount", [2n ** 128n]],
      ];
      for (const [label, action, errorName, args] of cases) {
        const error = await assertRefused({ channelId: undefined, watch: [alice, bob], action, errorName });
        assert.deepEqual(error.args, args, label);
      }
      const channelId = await open(alice, bob.address, 10n * myc);
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: () => topUpChannel(alice.connection, { ...common(), channelId, amount: 0n }),
        errorName: "InvalidAmount",
        args: [0n],
      });
    });

    it("refuses a replayed voucher and a lower cumulative amount", async () => {
      const channelId = await open(alice, bob.address, 100n * myc);
      const signature = await sign(alice, channelId, 40n * myc);
      assert.equal((await settle(bob, channelId, 40n * myc, signature)).paid, 40n * myc);
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: () => settle(bob, channelId, 40n * myc, signature),
        errorName: "VoucherNotAboveSettled",
        args: [channelId, 40n * myc, 40n * myc],
      });
      const lower = await sign(alice, channelId, 39n * myc);
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: () => settle(bob, channelId, 39n * myc, lower),
        errorName: "VoucherNotAboveSettled",
        args: [channelId, 39n * myc, 40n * myc],
      });
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: async () => settle(bob, channelId, 0n, await sign(alice, channelId, 0n)),
        errorName: "VoucherNotAboveSettled",
        args: [channelId, 0n, 40n * myc],
      });
    });

    it("refuses a voucher signed for another channel", async () => {
      const channelA = await open(alice, bob.address, 100n * myc);
      const channelB = await open(alice, bob.address, 100n * myc);
      const forA = await sign(alice, channelA, 50n * myc);
      const signer = await signerSeenByContract(channelB, 50n * myc, forA);
      assert.notEqual(signer, alice.address);
      await assertRefused({
        channelId: channelB,
        watch: [alice, bob],
        action: () => settle(bob, channelB, 50n * myc, forA),
        errorName: "InvalidVoucherSignature",
        args: [channelB, signer],
      });
      // The voucher itself is good: on its own channel it pays.
      assert.equal((await settle(bob, channelA, 50n * myc, forA)).paid, 50n * myc);
      assert.equal((await readChannel(channelB)).settled, 0n);
    });

    it("refuses a voucher signed for another PaymentChannels contract or another chain", async () => {
      const channelId = await open(alice, bob.address, 100n * myc);
      const other = await deployContract(chain.deployer, {
        abi: paymentChannelsAbi,
        bytecode: paymentChannelsBytecode,
        args: [BigInt(challengeSeconds), 86_400n],
        action: "deploy a second PaymentChannels",
      });
      const otherDomain = voucherDomain({
        chainId: chain.deployments.chainId,
        paymentChannels: other.address,
      });
      const forOtherContract = await sign(alice, channelId, 50n * myc, otherDomain);
      // It is a correct voucher for the other contract...
      assert.equal(
        await voucherDigestOnChain(channelId, 50n * myc, other.address),
        hashVoucher({ domain: otherDomain, message: { channelId, cumulativeAmount: 50n * myc } }),
      );
      assert.equal(
        await recoverAddress({
          hash: await voucherDigestOnChain(channelId, 50n * myc, other.address),
          signature: forOtherContract,
        }),
        alice.address,
      );
      // ...and worthless on this one.
      const signer = await signerSeenByContract(channelId, 50n * myc, forOtherContract);
      assert.notEqual(signer, alice.address);
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: () => settle(bob, channelId, 50n * myc, forOtherContract),
        errorName: "InvalidVoucherSignature",
        args: [channelId, signer],
      });

      assert.notEqual(chain.deployments.chainId, 1);
      const mainnetDomain = voucherDomain({ chainId: 1, paymentChannels: paymentChannels() });
      const forMainnet = await sign(alice, channelId, 50n * myc, mainnetDomain);
      assert.equal(
        await recoverVoucherSigner({
          domain: mainnetDomain,
          message: { channelId, cumulativeAmount: 50n * myc },
          signature: forMainnet,
        }),
        alice.address,
      );
      const mainnetSigner = await signerSeenByContract(channelId, 50n * myc, forMainnet);
      assert.notEqual(mainnetSigner, alice.address);
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: () => settle(bob, channelId, 50n * myc, forMainnet),
        errorName: "InvalidVoucherSignature",
        args: [channelId, mainnetSigner],
      });
      assert.equal(
        (await settle(bob, channelId, 50n * myc, await sign(alice, channelId, 50n * myc))).paid,
        50n * myc,
      );
    });

    it("refuses a voucher signed by someone other than the client", async () => {
      const channelId = await open(alice, bob.address, 100n * myc);
      for (const impostor of [mallory, bob, carol])
        await assertRefused({
          channelId,
          watch: [alice, bob],
          action: async () => settle(bob, channelId, 10n * myc, await sign(impostor, channelId, 10n * myc)),
          errorName: "InvalidVoucherSignature",
          args: [channelId, impostor.address],
        });
      assert.equal(
        (await settle(bob, channelId, 10n * myc, await sign(alice, channelId, 10n * myc))).paid,
        10n * myc,
      );
    });

    it("refuses a settle by anyone but the provider", async () => {
      const channelId = await open(alice, bob.address, 100n * myc);
      const signature = await sign(alice, channelId, 10n * myc);
      for (const sender of [mallory, alice])
        await assertRefused({
          channelId,
          watch: [alice, bob, mallory],
          action: () => settle(sender, channelId, 10n * myc, signature),
          errorName: "NotProvider",
          args: [channelId, bob.address],
        });
      const unknown = keccak256(stringToBytes("no such channel"));
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: () =>
          settleVoucher(mallory.connection, {
            ...common(),
            channelId: unknown,
            cumulativeAmount: 1n,
            signature,
          }),
        errorName: "UnknownChannel",
        args: [unknown],
      });
      // The voucher was good all along: its provider is paid.
      assert.equal((await settle(bob, channelId, 10n * myc, signature)).paid, 10n * myc);
    });

    it("refuses everything on a channel after the client withdrew", async () => {
      const channelId = await open(alice, bob.address, 100n * myc);
      await settle(bob, channelId, 10n * myc, await sign(alice, channelId, 10n * myc));
      assert.equal((await closeAndWithdraw(alice, channelId)).refunded, 90n * myc);
      const late = await sign(alice, channelId, 60n * myc);
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: () => settle(bob, channelId, 60n * myc, late),
        errorName: "ChannelFinalized",
        args: [channelId],
      });
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: () => withdrawChannel(alice.connection, { ...common(), channelId }),
        errorName: "ChannelFinalized",
        args: [channelId],
      });
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: () => requestChannelClose(alice.connection, { ...common(), channelId }),
        errorName: "ChannelFinalized",
        args: [channelId],
      });
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: () => topUpChannel(alice.connection, { ...common(), channelId, amount: 1n }),
        errorName: "ChannelFinalized",
        args: [channelId],
      });
    });

    it("refuses to withdraw without a close request or before the challenge period ends", async () => {
      const testClient = createTestClient({
        mode: "anvil",
        chain: chain.deployer.chain,
        transport: http(chain.anvil.rpcUrl),
      });
      const channelId = await open(alice, bob.address, 100n * myc);
      const withdraw = (account: TestAccount) => () =>
        withdrawChannel(account.connection, { ...common(), channelId });
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: withdraw(alice),
        errorName: "CloseNotRequested",
        args: [channelId],
      });
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: () => requestChannelClose(bob.connection, { ...common(), channelId }),
        errorName: "NotClient",
        args: [channelId, alice.address],
      });
      const closing = await requestChannelClose(alice.connection, { ...common(), channelId });
      const closesAt =
        (await chain.deployer.publicClient.getBlock({ blockNumber: closing.blockNumber })).timestamp +
        BigInt(challengeSeconds);
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: withdraw(alice),
        errorName: "ChallengePeriodActive",
        args: [channelId, closesAt],
      });
      await chain.increaseTime(challengeSeconds / 2);
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: withdraw(alice),
        errorName: "ChallengePeriodActive",
        args: [channelId, closesAt],
      });
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: () => requestChannelClose(alice.connection, { ...common(), channelId }),
        errorName: "CloseAlreadyRequested",
        args: [channelId, closesAt],
      });
      // The boundary: one second before closesAt is too early, closesAt itself is not.
      await testClient.setNextBlockTimestamp({ timestamp: closesAt - 1n });
      await testClient.mine({ blocks: 1 });
      assert.equal(await chain.now(), closesAt - 1n);
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: withdraw(alice),
        errorName: "ChallengePeriodActive",
        args: [channelId, closesAt],
      });
      await testClient.setNextBlockTimestamp({ timestamp: closesAt });
      await testClient.mine({ blocks: 1 });
      await assertRefused({
        channelId,
        watch: [alice, mallory],
        action: withdraw(mallory),
        errorName: "NotClient",
        args: [channelId, alice.address],
      });
      const aliceBefore = await balanceOf(alice.address);
      assert.equal((await withdraw(alice)()).refunded, 100n * myc);
      assert.equal(await balanceOf(alice.address), aliceBefore + 100n * myc);
    });

    it("refuses a top-up while the channel is closing", async () => {
      const channelId = await open(alice, bob.address, 100n * myc);
      await assertRefused({
        channelId,
        watch: [alice, bob, mallory],
        action: () => topUpChannel(mallory.connection, { ...common(), channelId, amount: 1n * myc }),
        errorName: "NotClient",
        args: [channelId, alice.address],
      });
      const closing = await requestChannelClose(alice.connection, { ...common(), channelId });
      const closesAt =
        (await chain.deployer.publicClient.getBlock({ blockNumber: closing.blockNumber })).timestamp +
        BigInt(challengeSeconds);
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: () => topUpChannel(alice.connection, { ...common(), channelId, amount: 10n * myc }),
        errorName: "ChannelClosing",
        args: [channelId, closesAt],
      });
    });

    it("pays at most the deposit for a voucher above it, then refuses with DepositExhausted", async () => {
      const channelId = await open(alice, bob.address, 100n * myc);
      const bobStart = await balanceOf(bob.address);
      await settle(bob, channelId, 40n * myc, await sign(alice, channelId, 40n * myc));
      const big = await sign(alice, channelId, 1000n * myc);
      const capped = await settle(bob, channelId, 1000n * myc, big);
      assert.equal(capped.paid, 60n * myc, "only what is left of the deposit is paid");
      assert.deepEqual(
        events(capped.receipt, "ChannelSettled").map((log) => log.args),
        [{ channelId, cumulativeAmount: 1000n * myc, paid: 60n * myc }],
      );
      assert.equal(await balanceOf(bob.address), bobStart + 100n * myc);
      assert.equal((await readChannel(channelId)).settled, 100n * myc);
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: async () => settle(bob, channelId, 2000n * myc, await sign(alice, channelId, 2000n * myc)),
        errorName: "DepositExhausted",
        args: [channelId, 100n * myc],
      });
      // Checked before the signature: even a forged voucher only learns the deposit is exhausted.
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: async () => settle(bob, channelId, 2000n * myc, await sign(mallory, channelId, 2000n * myc)),
        errorName: "DepositExhausted",
        args: [channelId, 100n * myc],
      });
      const aliceBefore = await balanceOf(alice.address);
      const withdrawn = await closeAndWithdraw(alice, channelId);
      assert.equal(withdrawn.refunded, 0n);
      assert.equal(await balanceOf(alice.address), aliceBefore);
      assert.equal(await balanceOf(bob.address), bobStart + 100n * myc);
    });

    it("refuses malformed signatures: high s, wrong length, bad v, no signer", async () => {
      const channelId = await open(alice, bob.address, 100n * myc);
      const amount = 10n * myc;
      const signature = await sign(alice, channelId, amount);
      const r = slice(signature, 0, 32);
      const s = hexToBigInt(slice(signature, 32, 64));
      const v = hexToBigInt(slice(signature, 64, 65));
      assert.ok(v === 27n || v === 28n);
      // (r, n - s, other v) is the same signer's signature under plain ecrecover: a malleable twin.
      const highS = concat([
        r,
        numberToHex(secp256k1Order - s, { size: 32 }),
        numberToHex(55n - v, { size: 1 }),
      ]);
      const digest = await voucherDigestOnChain(channelId, amount);
      const ecrecovered = await chain.deployer.publicClient.call({
        to: "0x0000000000000000000000000000000000000001",
        data: concat([
          digest,
          numberToHex(55n - v, { size: 32 }),
          r,
          numberToHex(secp256k1Order - s, { size: 32 }),
        ]),
      });
      assert.equal(
        ecrecovered.data?.toLowerCase(),
        `0x${"00".repeat(12)}${alice.address.slice(2).toLowerCase()}`,
        "the high-s twin recovers to the client with bare ecrecover",
      );
      const malformed: [string, Hex][] = [
        ["high s", highS],
        ["64 bytes", slice(signature, 0, 64)],
        ["66 bytes", concat([signature, "0x00"])],
        ["empty", "0x"],
        ["v = 29", concat([slice(signature, 0, 64), "0x1d"])],
        ["v = 2", concat([slice(signature, 0, 64), "0x02"])],
        ["all zero", `0x${"00".repeat(65)}`],
      ];
      for (const [label, bad] of malformed) {
        const error = await assertRefused({
          channelId,
          watch: [alice, bob],
          action: () => settle(bob, channelId, amount, bad),
          errorName: "MalformedSignature",
        });
        assert.deepEqual(error.args, [], label);
      }
      // v written as 0/1 is the same signature and accepted; afterwards the voucher is spent.
      const zeroOneV = concat([slice(signature, 0, 64), numberToHex(v - 27n, { size: 1 })]);
      assert.equal((await settle(bob, channelId, amount, zeroOneV)).paid, amount);
      await assertRefused({
        channelId,
        watch: [alice, bob],
        action: () => settle(bob, channelId, amount, signature),
        errorName: "VoucherNotAboveSettled",
      });
    });
  });

  describe("reentrancy through a malicious token", () => {
    async function deployAttack() {
      const reentrantToken = await deployContract(chain.deployer, {
        abi: reentrantTokenAbi,
        bytecode: reentrantTokenBytecode,
        action: "deploy ReentrantToken",
      });
      const attacker = await deployContract(chain.deployer, {
        abi: attackerAbi,
        bytecode: attackerBytecode,
        action: "deploy Attacker",
      });
      // deployContract returns the receipt's lower-case address; the contracts report checksummed ones.
      return { token: getAddress(reentrantToken.address), attacker: getAddress(attacker.address) };
    }

    const execute = (attacker: Address, target: Address, data: Hex, action: string) =>
      sendContractTransaction(chain.deployer, {
        address: attacker,
        abi: attackerAbi,
        functionName: "execute",
        args: [target, data],
        action,
      });

    const callTo = (
      functionName: "withdraw" | "requestClose" | "settle" | "open",
      args: readonly unknown[],
    ): Hex =>
      // biome-ignore lint/suspicious/noExplicitAny: the arguments are checked by the contract's ABI at encoding time
      encodeFunctionData({ abi: paymentChannelsAbi, functionName, args } as any);

    const attackRecord = async (tokenAddress: Address) => {
      const read = (
        functionName: "attackAttempted" | "attackSucceeded" | "attackRevertData" | "attackArmed",
      ) =>
        chain.deployer.publicClient.readContract({
          address: tokenAddress,
          abi: reentrantTokenAbi,
          functionName,
        });
      const [attempted, succeeded, revertData, armed] = await Promise.all([
        read("attackAttempted"),
        read("attackSucceeded"),
        read("attackRevertData"),
        read("attackArmed"),
      ]);
      return { attempted, succeeded, revertData: revertData as Hex, armed };
    };

    const tokenBalance = (tokenAddress: Address, owner: Address) => balanceOf(owner, tokenAddress);

    function transfersOut(receipt: TransactionReceipt, tokenAddress: Address) {
      return parseEventLogs({ abi: reentrantTokenAbi, logs: receipt.logs, eventName: "Transfer" }).filter(
        (log) =>
          log.address.toLowerCase() === tokenAddress.toLowerCase() &&
          log.args.from.toLowerCase() === paymentChannels().toLowerCase(),
      );
    }

    it("blocks a client re-entering withdraw from the refund transfer", async () => {
      const { token: evil, attacker } = await deployAttack();
      const deposit = 1000n;
      await sendContractTransaction(chain.deployer, {
        address: evil,
        abi: reentrantTokenAbi,
        functionName: "mint",
        args: [attacker, deposit],
        action: "mint to the attacker",
      });
      await execute(
        attacker,
        evil,
        encodeFunctionData({
          abi: reentrantTokenAbi,
          functionName: "approve",
          args: [paymentChannels(), deposit],
        }),
        "approve PaymentChannels",
      );
      const opened = await execute(
        attacker,
        paymentChannels(),
        callTo("open", [bob.address, evil, deposit, BigInt(challengeSeconds)]),
        "open a channel as the attacker",
      );
      const [openedEvent] = events(opened.receipt, "ChannelOpened");
      assert.ok(openedEvent);
      const channelId = openedEvent.args.channelId;
      assert.equal((await readChannel(channelId)).client, attacker);
      assert.equal(await tokenBalance(evil, attacker), 0n);
      assert.equal(await tokenBalance(evil, paymentChannels()), deposit);

      await execute(attacker, paymentChannels(), callTo("requestClose", [channelId]), "request close");
      await chain.increaseTime(challengeSeconds);
      const withdrawCall = callTo("withdraw", [channelId]);
      await sendContractTransaction(chain.deployer, {
        address: evil,
        abi: reentrantTokenAbi,
        functionName: "arm",
        args: [
          attacker,
          encodeFunctionData({
            abi: attackerAbi,
            functionName: "execute",
            args: [paymentChannels(), withdrawCall],
          }),
        ],
        action: "arm the token",
      });
      assert.deepEqual(await attackRecord(evil), {
        attempted: false,
        succeeded: false,
        revertData: "0x",
        armed: true,
      });

      const outer = await execute(attacker, paymentChannels(), withdrawCall, "withdraw (attacked)");
      assert.equal(outer.receipt.status, "success");
      const record = await attackRecord(evil);
      assert.equal(record.attempted, true, "the token called back into withdraw");
      assert.equal(record.succeeded, false, "the reentrant withdraw must fail");
      assert.equal(slice(record.revertData, 0, 4), toFunctionSelector("ReentrantCall()"));
      assert.equal(
        decodeErrorResult({ abi: paymentChannelsAbi, data: record.revertData }).errorName,
        "ReentrantCall",
      );
      assert.equal(record.armed, false);

      assert.deepEqual(
        events(outer.receipt, "ChannelWithdrawn").map((log) => log.args),
        [{ channelId, refunded: deposit }],
      );
      assert.equal(transfersOut(outer.receipt, evil).length, 1, "exactly one payout");
      assert.equal(await tokenBalance(evil, attacker), deposit, "the client got its deposit back once");
      assert.equal(await tokenBalance(evil, paymentChannels()), 0n);
      assert.equal((await readChannel(channelId)).state, "closed");
    });

    it("blocks a provider re-entering settle from the payout transfer", async () => {
      const { token: evil, attacker } = await deployAttack();
      const deposit = 1000n;
      await sendContractTransaction(chain.deployer, {
        address: evil,
        abi: reentrantTokenAbi,
        functionName: "mint",
        args: [alice.address, deposit],
        action: "mint to alice",
      });
      const { channelId } = await openChannel(alice.connection, {
        ...common(),
        provider: attacker,
        amount: deposit,
        token: evil,
        challengePeriodSeconds: challengeSeconds,
      });
      const channel = await readChannel(channelId);
      assert.equal(channel.provider, attacker);
      assert.equal(channel.token, evil);
      const first = await sign(alice, channelId, 300n);
      const second = await sign(alice, channelId, 500n);
      await sendContractTransaction(chain.deployer, {
        address: evil,
        abi: reentrantTokenAbi,
        functionName: "arm",
        args: [
          attacker,
          encodeFunctionData({
            abi: attackerAbi,
            functionName: "execute",
            args: [paymentChannels(), callTo("settle", [channelId, 500n, second])],
          }),
        ],
        action: "arm the token",
      });

      const outer = await execute(
        attacker,
        paymentChannels(),
        callTo("settle", [channelId, 300n, first]),
        "settle (attacked)",
      );
      assert.equal(outer.receipt.status, "success");
      const record = await attackRecord(evil);
      assert.equal(record.attempted, true, "the token called back into settle");
      assert.equal(record.succeeded, false, "the reentrant settle must fail");
      assert.equal(slice(record.revertData, 0, 4), toFunctionSelector("ReentrantCall()"));
      assert.equal(
        decodeErrorResult({ abi: paymentChannelsAbi, data: record.revertData }).errorName,
        "ReentrantCall",
      );

      assert.deepEqual(
        events(outer.receipt, "ChannelSettled").map((log) => log.args),
        [{ channelId, cumulativeAmount: 300n, paid: 300n }],
      );
      assert.equal(transfersOut(outer.receipt, evil).length, 1, "exactly one payout");
      assert.equal(await tokenBalance(evil, attacker), 300n);
      assert.equal(await tokenBalance(evil, paymentChannels()), deposit - 300n);
      assert.equal((await readChannel(channelId)).settled, 300n);

      // The voucher the attack tried was valid: outside the transfer it pays the difference once.
      const later = await execute(
        attacker,
        paymentChannels(),
        callTo("settle", [channelId, 500n, second]),
        "settle the second voucher",
      );
      assert.deepEqual(
        events(later.receipt, "ChannelSettled").map((log) => log.args),
        [{ channelId, cumulativeAmount: 500n, paid: 200n }],
      );
      assert.equal(await tokenBalance(evil, attacker), 500n);
      assert.equal(await tokenBalance(evil, paymentChannels()), deposit - 500n);
    });
  });

  describe("random operation sequences (fast-check)", () => {
    /** A channel as the model predicts it, with what its events reported. */
    type ModelChannel = {
      id: Hex;
      client: number;
      provider: number;
      deposit: bigint;
      settled: bigint;
      /** The number of long waits when the close was requested. */
      closeRequestedAfterLongWaits: number | undefined;
      finalized: boolean;
      /** Summed from ChannelOpened and ChannelToppedUp. */
      depositedByEvents: bigint;
      /** From ChannelWithdrawn. */
      refundedByEvents: bigint;
      /** The last voucher that settled, for replays. */
      spent: { cumulativeAmount: bigint; signature: Hex } | undefined;
    };
    type VoucherKind =
      | "fresh"
      | "aboveDeposit"
      | "replay"
      | "lower"
      | "wrongSigner"
      | "otherChannel"
      | "byClient";
    type Operation =
      | { kind: "open"; client: number; provider: number; amount: bigint; longChallenge: boolean }
      | { kind: "topUp"; channel: number; amount: bigint }
      | { kind: "settle"; channel: number; voucher: VoucherKind; amount: bigint }
      | { kind: "requestClose"; channel: number; byProvider: boolean }
      | { kind: "wait"; seconds: number }
      | { kind: "withdraw"; channel: number };

    // Challenge periods of 1 or 2 hours; short waits add up to at most 24 minutes in a run, a long
    // wait ends every challenge period, so the model knows when a withdrawal is allowed.
    const shortChallenge = 3_600;
    const longChallenge = 7_200;
    const longWait = longChallenge + 100;
    const maxChannels = 3;

    const deposit = fc.bigInt({ min: 100n, max: 1_000n });
    const increment = fc.bigInt({ min: 1n, max: 400n });
    const channel = fc.nat({ max: 5 });
    const openOperation = fc.record({
      kind: fc.constant("open" as const),
      client: fc.nat({ max: 1 }),
      provider: fc.nat({ max: 1 }),
      amount: deposit,
      longChallenge: fc.boolean(),
    });
    const operation: fc.Arbitrary<Operation> = fc.oneof(
      { arbitrary: openOperation, weight: 2 },
      { arbitrary: fc.record({ kind: fc.constant("topUp" as const), channel, amount: deposit }), weight: 2 },
      {
        arbitrary: fc.record({
          kind: fc.constant("settle" as const),
          channel,
          voucher: fc.constantFrom<VoucherKind>(
            "fresh",
            "fresh",
            "aboveDeposit",
            "replay",
            "lower",
            "wrongSigner",
            "otherChannel",
            "byClient",
          ),
          amount: increment,
        }),
        weight: 6,
      },
      {
        arbitrary: fc.record({
          kind: fc.constant("requestClose" as const),
          channel,
          byProvider: fc.nat({ max: 4 }).map((n) => n === 0),
        }),
        weight: 3,
      },
      {
        arbitrary: fc.record({
          kind: fc.constant("wait" as const),
          seconds: fc.oneof(fc.integer({ min: 1, max: 60 }), fc.constant(longWait)),
        }),
        weight: 3,
      },
      { arbitrary: fc.record({ kind: fc.constant("withdraw" as const), channel }), weight: 3 },
    );
    const scenario = fc
      .tuple(openOperation, fc.array(operation, { minLength: 9, maxLength: 24 }))
      .map(([first, rest]): Operation[] => [first, ...rest]);

    /** Runs `action`; the model's expected refusal (or success, undefined) must be what happened. */
    async function expectOutcome<T>(
      context: string,
      expected: string | undefined,
      action: () => Promise<T>,
    ): Promise<T | undefined> {
      let value: T;
      try {
        value = await action();
      } catch (error) {
        if (!(error instanceof ContractRevertError)) throw error;
        assert.equal(error.errorName, expected ?? "(success)", `${context}: ${error.message}`);
        return undefined;
      }
      assert.equal(expected, undefined, `${context} succeeded, the model expected ${expected}`);
      return value;
    }

    it("keeps settled + withdrawn <= deposited and the contract's balance equal to what it owes", async () => {
      const clients = [await chain.account("property-client-0"), await chain.account("property-client-1")];
      const providers = [
        await chain.account("property-provider-0"),
        await chain.account("property-provider-1"),
      ];
      const participants = [...clients, ...providers];
      let runs = 0;
      let steps = 0;
      const outcomes = new Map<string, number>();
      const count = (name: string) => outcomes.set(name, (outcomes.get(name) ?? 0) + 1);

      await fc.assert(
        fc.asyncProperty(scenario, async (operations) => {
          runs++;
          const channels: ModelChannel[] = [];
          let longWaits = 0;
          const [contractStart, ...participantStart] = await Promise.all(
            [paymentChannels(), ...participants.map((account) => account.address)].map((owner) =>
              balanceOf(owner),
            ),
          );
          const pick = (index: number) => channels[index % channels.length];

          const apply = async (op: Operation, context: string) => {
            if (op.kind === "wait") {
              await chain.increaseTime(op.seconds);
              if (op.seconds === longWait) longWaits++;
              return count("wait");
            }
            if (op.kind === "open") {
              if (channels.length >= maxChannels) return count("open skipped");
              const client = clients[op.client] as TestAccount;
              const provider = providers[op.provider] as TestAccount;
              const opened = await expectOutcome(context, undefined, () =>
                openChannel(client.connection, {
                  ...common(),
                  provider: provider.address,
                  amount: op.amount,
                  challengePeriodSeconds: op.longChallenge ? longChallenge : shortChallenge,
                }),
              );
              assert.ok(opened);
              const receipt = await chain.deployer.publicClient.getTransactionReceipt({ hash: opened.hash });
              const [event] = events(receipt, "ChannelOpened");
              assert.ok(event, `${context}: no ChannelOpened`);
              channels.push({
                id: opened.channelId,
                client: op.client,
                provider: op.provider,
                deposit: op.amount,
                settled: 0n,
                closeRequestedAfterLongWaits: undefined,
                finalized: false,
                depositedByEvents: event.args.deposit,
                refundedByEvents: 0n,
                spent: undefined,
              });
              return count("open");
            }
            const ch = pick(op.channel);
            if (!ch) return count("no channel");
            const client = clients[ch.client] as TestAccount;
            const provider = providers[ch.provider] as TestAccount;
            const closing = ch.closeRequestedAfterLongWaits !== undefined;

            if (op.kind === "topUp") {
              const expected = ch.finalized ? "ChannelFinalized" : closing ? "ChannelClosing" : undefined;
              const sent = await expectOutcome(context, expected, () =>
                topUpChannel(client.connection, { ...common(), channelId: ch.id, amount: op.amount }),
              );
              count(`topUp ${expected ?? "ok"}`);
              if (!sent) return;
              const [event] = events(sent.receipt, "ChannelToppedUp");
              assert.ok(event, `${context}: no ChannelToppedUp`);
              ch.depositedByEvents += event.args.amount;
              ch.deposit += op.amount;
              assert.equal(event.args.deposit, ch.deposit, context);
              return;
            }

            if (op.kind === "requestClose") {
              const sender = op.byProvider ? provider : client;
              const expected = op.byProvider
                ? "NotClient"
                : ch.finalized
                  ? "ChannelFinalized"
                  : closing
                    ? "CloseAlreadyRequested"
                    : undefined;
              const sent = await expectOutcome(context, expected, () =>
                requestChannelClose(sender.connection, { ...common(), channelId: ch.id }),
              );
              count(`requestClose ${expected ?? "ok"}`);
              if (sent) ch.closeRequestedAfterLongWaits = longWaits;
              return;
            }

            if (op.kind === "withdraw") {
              const expected = ch.finalized
                ? "ChannelFinalized"
                : !closing
                  ? "CloseNotRequested"
                  : ch.closeRequestedAfterLongWaits === longWaits
                    ? "ChallengePeriodActive"
                    : undefined;
              const sent = await expectOutcome(context, expected, () =>
                withdrawChannel(client.connection, { ...common(), channelId: ch.id }),
              );
              count(`withdraw ${expected ?? "ok"}`);
              if (!sent) return;
              const [event] = events(sent.receipt, "ChannelWithdrawn");
              assert.ok(event, `${context}: no ChannelWithdrawn`);
              assert.equal(event.args.refunded, ch.deposit - ch.settled, context);
              assert.equal(sent.refunded, event.args.refunded, context);
              ch.refundedByEvents += event.args.refunded;
              ch.finalized = true;
              return;
            }

            // settle
            let sender = provider;
            let cumulativeAmount = ch.settled + op.amount;
            let signature: Hex;
            let validSignature = true;
            switch (op.voucher) {
              case "fresh":
                signature = await sign(client, ch.id, cumulativeAmount);
                break;
              case "aboveDeposit":
                cumulativeAmount = ch.deposit + op.amount;
                signature = await sign(client, ch.id, cumulativeAmount);
                break;
              case "replay":
                if (ch.spent) {
                  cumulativeAmount = ch.spent.cumulativeAmount;
                  signature = ch.spent.signature;
                } else {
                  cumulativeAmount = ch.settled;
                  signature = await sign(client, ch.id, cumulativeAmount);
                }
                break;
              case "lower":
                cumulativeAmount = ch.settled - (op.amount % (ch.settled + 1n));
                signature = await sign(client, ch.id, cumulativeAmount);
                break;
              case "wrongSigner":
                signature = await sign(clients[1 - ch.client] as TestAccount, ch.id, cumulativeAmount);
                validSignature = false;
                break;
              case "otherChannel": {
                const other = channels.find((candidate) => candidate.id !== ch.id)?.id ?? keccak256(ch.id);
                signature = await sign(client, other, cumulativeAmount);
                validSignature = false;
                break;
              }
              case "byClient":
                sender = client;
                signature = await sign(client, ch.id, cumulativeAmount);
                break;
            }
            const expected =
              sender !== provider
                ? "NotProvider"
                : ch.finalized
                  ? "ChannelFinalized"
                  : cumulativeAmount <= ch.settled
                    ? "VoucherNotAboveSettled"
                    : ch.settled === ch.deposit
                      ? "DepositExhausted"
                      : !validSignature
                        ? "InvalidVoucherSignature"
                        : undefined;
            const newSettled = smaller(cumulativeAmount, ch.deposit);
            const providerBefore = await balanceOf(provider.address);
            const sent = await expectOutcome(`${context} (${op.voucher})`, expected, () =>
              settle(sender, ch.id, cumulativeAmount, signature),
            );
            count(`settle ${op.voucher} ${expected ?? "ok"}`);
            if (!sent) return;
            assert.equal(sent.paid, newSettled - ch.settled, context);
            assert.deepEqual(
              events(sent.receipt, "ChannelSettled").map((log) => log.args),
              [{ channelId: ch.id, cumulativeAmount, paid: sent.paid }],
              context,
            );
            assert.equal(await balanceOf(provider.address), providerBefore + sent.paid, context);
            ch.settled = newSettled;
            ch.spent = { cumulativeAmount, signature };
          };

          const checkInvariants = async (context: string) => {
            const [onChain, [contractBalance, ...participantBalances]] = await Promise.all([
              Promise.all(channels.map((ch) => readChannel(ch.id))),
              Promise.all(
                [paymentChannels(), ...participants.map((account) => account.address)].map((owner) =>
                  balanceOf(owner),
                ),
              ),
            ]);
            let owed = 0n;
            const expectedBalances = [...participantStart];
            channels.forEach((ch, index) => {
              const actual = onChain[index];
              assert.ok(actual);
              const where = `${context}, channel ${index}`;
              assert.ok(
                actual.settled + ch.refundedByEvents <= ch.depositedByEvents,
                `${where}: settled ${actual.settled} + withdrawn ${ch.refundedByEvents} > deposited ${ch.depositedByEvents}`,
              );
              if (actual.state === "closed")
                assert.equal(actual.settled + ch.refundedByEvents, ch.depositedByEvents, `${where}: closed`);
              assert.equal(actual.deposit, ch.depositedByEvents, `${where}: deposit vs events`);
              assert.deepEqual(
                { deposit: actual.deposit, settled: actual.settled, state: actual.state },
                {
                  deposit: ch.deposit,
                  settled: ch.settled,
                  state: ch.finalized
                    ? "closed"
                    : ch.closeRequestedAfterLongWaits !== undefined
                      ? "closing"
                      : "open",
                },
                `${where}: model`,
              );
              owed += ch.depositedByEvents - actual.settled - ch.refundedByEvents;
              expectedBalances[ch.client] =
                (expectedBalances[ch.client] as bigint) - ch.depositedByEvents + ch.refundedByEvents;
              expectedBalances[clients.length + ch.provider] =
                (expectedBalances[clients.length + ch.provider] as bigint) + actual.settled;
            });
            assert.equal(contractBalance, (contractStart as bigint) + owed, `${context}: contract balance`);
            assert.deepEqual(participantBalances, expectedBalances, `${context}: participant balances`);
          };

          const step = async (op: Operation, label: string) => {
            steps++;
            const context = `${label} ${JSON.stringify(op, (_, value) => (typeof value === "bigint" ? `${value}` : value))}`;
            await apply(op, context);
            await checkInvariants(context);
          };
          for (const [index, op] of operations.entries()) await step(op, `step ${index}`);
          // Then every client closes out: afterwards the contract holds nothing of this run, and each
          // client paid exactly what its providers received.
          for (const [index, ch] of channels.entries())
            if (!ch.finalized && ch.closeRequestedAfterLongWaits === undefined)
              await step({ kind: "requestClose", channel: index, byProvider: false }, "close out");
          await step({ kind: "wait", seconds: longWait }, "close out");
          for (const [index, ch] of channels.entries())
            if (!ch.finalized) await step({ kind: "withdraw", channel: index }, "close out");
          assert.ok(channels.every((ch) => ch.finalized));
          assert.equal(await balanceOf(paymentChannels()), contractStart);
        }),
        // A failure on a live chain is not shrunk (each try replays a whole run); the seed and path replay it.
        { numRuns: 25, endOnFailure: true },
      );
      assert.equal(runs, 25);
      // The generator must reach the interesting branches, or the property proves little.
      for (const outcome of [
        "settle fresh ok",
        "settle replay VoucherNotAboveSettled",
        "settle wrongSigner InvalidVoucherSignature",
        "settle byClient NotProvider",
        "withdraw ChallengePeriodActive",
        "withdraw CloseNotRequested",
        "topUp ChannelClosing",
      ])
        assert.ok((outcomes.get(outcome) ?? 0) > 0, `no "${outcome}" in ${steps} steps`);
    });
  });

  // Last: it audits every channel the tests above opened on this contract.
  it("holds exactly what its channels still owe, per token, by storage and by events", async () => {
    const publicClient = chain.deployer.publicClient;
    const address = paymentChannels();
    const ids = Array.from({ length: Number(await channelCount()) }, (_, index) =>
      keccak256(
        encodeAbiParameters(
          [{ type: "uint256" }, { type: "address" }, { type: "uint256" }],
          [BigInt(chain.deployments.chainId), address, BigInt(index)],
        ),
      ),
    );
    const range = { address, abi: paymentChannelsAbi, fromBlock: 0n, strict: true } as const;
    const [opened, toppedUp, settled, withdrawn] = await Promise.all([
      publicClient.getContractEvents({ ...range, eventName: "ChannelOpened" }),
      publicClient.getContractEvents({ ...range, eventName: "ChannelToppedUp" }),
      publicClient.getContractEvents({ ...range, eventName: "ChannelSettled" }),
      publicClient.getContractEvents({ ...range, eventName: "ChannelWithdrawn" }),
    ]);
    assert.ok(ids.length > 50, `only ${ids.length} channels were opened`);
    assert.deepEqual(opened.map((log) => log.args.channelId).sort(), [...ids].sort());
    const sum = (values: bigint[]) => values.reduce((total, value) => total + value, 0n);
    const owed = new Map<Address, bigint>();
    for (const channelId of ids) {
      const channel = await readChannel(channelId);
      const of = <T extends { args: { channelId: Hex } }>(logs: T[]) =>
        logs.filter((log) => log.args.channelId === channelId);
      const deposited =
        sum(of(opened).map((log) => log.args.deposit)) + sum(of(toppedUp).map((log) => log.args.amount));
      const paid = sum(of(settled).map((log) => log.args.paid));
      const refunds = of(withdrawn);
      const refunded = sum(refunds.map((log) => log.args.refunded));
      assert.equal(channel.deposit, deposited, channelId);
      assert.equal(channel.settled, paid, channelId);
      assert.ok(paid + refunded <= deposited, channelId);
      assert.equal(refunds.length, channel.state === "closed" ? 1 : 0, channelId);
      if (channel.state === "closed") assert.equal(paid + refunded, deposited, channelId);
      owed.set(channel.token, (owed.get(channel.token) ?? 0n) + deposited - paid - refunded);
    }
    assert.ok(owed.size >= 3, "MYC and the two reentrant tokens");
    for (const [tokenAddress, amount] of owed)
      assert.equal(await balanceOf(address, tokenAddress), amount, `balance of ${tokenAddress}`);
  });
});
