/**
 * The provider's side of payment channels: admits requests on funded channels, checks and stores vouchers
 * (durably, before acknowledging them), meters unpaid output against a credit window, and settles on chain.
 */
import { type Address, getAddress, type Hex, hexToBigInt, isAddressEqual, zeroAddress } from "viem";
import {
  type ChainConnection,
  type ChannelRecord,
  ContractRevertError,
  type Deployments,
  deploymentVoucherDomain,
  getChannel,
  settleVoucher,
} from "../chain/index.ts";
import { roleDefaults } from "../config/index.ts";
import { describeError, PaymentRequiredError } from "../errors/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import { priceOfTokens, recoverVoucherSigner } from "../protocol/index.ts";
import { type PaymentStore, type ReceivedVoucher, StaleVoucherError } from "../store/index.ts";
import { VoucherRejectedError } from "./errors.ts";

/** Half the secp256k1 group order: signatures above it (high s) are refused by PaymentChannels. */
const halfCurveOrder = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;

/** When and how a provider settles. */
export type SettlementPolicy = {
  /** Settle a channel as soon as this much of its latest voucher is unsettled (smallest units). */
  thresholdAmount: bigint;
  /** Settle whatever has been unsettled for this long. */
  maxAgeMs: number;
  /** How often unsettled channels are checked on chain (a client closing one) and old ones settled. */
  checkIntervalMs: number;
  /** Settle a closing channel at the latest this long before its challenge period ends. */
  closingMarginMs: number;
};

/** Defaults: settle at 1 token (10^18 units), after 10 minutes, checking every 10 s. */
export const defaultSettlementPolicy: SettlementPolicy = {
  thresholdAmount: 10n ** 18n,
  maxAgeMs: roleDefaults.settleIntervalSeconds * 1000,
  checkIntervalMs: roleDefaults.settleCheckSeconds * 1000,
  closingMarginMs: 30_000,
};

/** How long a request on a channel that owes more than the credit window waits for a voucher before it is refused. */
const admitWaitMs = 2_000;
/** How long a finished request's price is not counted as debt, so that its final voucher can arrive. */
const finalVoucherGraceMs = 2_000;

/** Parameters of {@link createProviderPayments}. */
export type CreateProviderPaymentsParameters = {
  /** A connection that signs with the provider's key (it pays the gas of settlements). */
  connection: ChainConnection;
  deployments: Deployments;
  store: PaymentStore;
  /** The provider's address: the payee of the channels it accepts. */
  provider: Address;
  /** Output price per 1M tokens: unpaid output is metered with it. */
  outputPricePerMillion: bigint;
  /** Unpaid output, in tokens, served before a client must pay. */
  creditWindowTokens: number;
  settlement?: Partial<SettlementPolicy>;
  logger?: Logger;
};

/** One request's metering on a channel. */
export type ChannelCharge = {
  channelId: Hex;
  /**
   * Counts `tokens` more output if the channel stays within its credit window, and returns true; returns false
   * (counting nothing) when serving them would leave more unpaid than the window allows.
   */
  charge(tokens: number): boolean;
  /** The request finished with a receipt: its price (prompt and output) is owed from now on. */
  complete(price: bigint): void;
  /** The client was cut off for not paying: what it was served stays owed once the request ends. */
  markUnpaid(): void;
  /** Calls `listener` after each voucher accepted on the channel (on any stream), until the request ends. */
  onPayment(listener: () => void): void;
  /**
   * The request ended without a receipt: its output is no longer counted (a cancelled answer is forgiven),
   * unless the client was cut off for not paying.
   */
  release(): void;
  /** What the channel owes beyond its vouchers, and the window, for messages. */
  debt(): { unpaid: bigint; creditWindow: bigint };
};

/** The provider's payments (see {@link createProviderPayments}). */
export type ProviderPayments = {
  /** What the provider's announcements say about how it is paid. */
  announcement: { chain_id: number; payment_channels: Address; credit_window: string };
  /** The credit window in smallest units. */
  creditWindow: bigint;
  /** Checks that a channel may pay for a new request (on chain, funded, this provider's, not too far behind). */
  admit(parameters: { channelId: Hex; client: Address }): Promise<ChannelCharge>;
  /** Checks a voucher and stores it durably; returns the stored voucher. Throws {@link VoucherRejectedError}. */
  acceptVoucher(parameters: {
    channelId: Hex;
    cumulativeAmount: bigint;
    signature: Hex;
  }): Promise<ReceivedVoucher>;
  /** Settles every unsettled voucher now (what start and shutdown do); resolves when each was tried. */
  settleAll(): Promise<void>;
  /** Vouchers held, with what is settled. */
  vouchers(): ReceivedVoucher[];
  /** Starts the settlement timer and settles what a previous run left unsettled. */
  start(): void;
  /** Stops the timer and settles everything unsettled (bounded by `timeoutMs`). */
  stop(parameters?: { timeoutMs?: number }): Promise<void>;
};

type ChannelState = {
  record: ChannelRecord;
  /** Prices of finished requests (plus what earlier runs were paid), in smallest units. */
  owed: bigint;
  /** The latest stored voucher. */
  paid: bigint;
  active: Set<{ outputTokens: number }>;
  /** Finished requests whose final voucher may still be on its way. */
  grace: { amount: bigint; until: number }[];
  waiters: Set<() => void>;
};

/** Parses a 65-byte signature's s and v, for the checks PaymentChannels makes. */
function signatureParts(signature: Hex): { s: bigint; v: number } {
  if (!/^0x[0-9a-fA-F]{130}$/.test(signature)) return { s: 2n ** 256n, v: 0 };
  return {
    s: hexToBigInt(`0x${signature.slice(66, 130)}`),
    v: Number.parseInt(signature.slice(130, 132), 16),
  };
}

/** Creates the provider's payment side. Call `start()` once serving begins. */
export function createProviderPayments(parameters: CreateProviderPaymentsParameters): ProviderPayments {
  const { connection, deployments, store } = parameters;
  const logger = parameters.logger ?? silentLogger;
  const provider = getAddress(parameters.provider);
  const policy = { ...defaultSettlementPolicy, ...parameters.settlement };
  const domain = deploymentVoucherDomain(deployments);
  const priceOfOutput = (tokens: number) =>
    priceOfTokens({
      promptTokens: 0,
      completionTokens: tokens,
      pricePerMillion: { input: 0n, output: parameters.outputPricePerMillion },
    });
  const creditWindow = priceOfOutput(parameters.creditWindowTokens);
  const channels = new Map<string, ChannelState>();
  const loading = new Map<string, Promise<ChannelState>>();

  function debtOf(state: ChannelState): bigint {
    const now = Date.now();
    state.grace = state.grace.filter((entry) => entry.until > now);
    let active = 0n;
    for (const request of state.active) active += priceOfOutput(request.outputTokens);
    const inGrace = state.grace.reduce((sum, entry) => sum + entry.amount, 0n);
    return state.owed + active - inGrace - state.paid;
  }

  /** The channel as the chain holds it (cached; read again when `refresh` or not known yet). */
  async function channelState(channelId: Hex, refresh: boolean): Promise<ChannelState> {
    const key = channelId.toLowerCase();
    const known = channels.get(key);
    if (known && !refresh) return known;
    const pending = loading.get(key);
    if (pending) return pending;
    const load = (async () => {
      let record: ChannelRecord;
      try {
        record = await getChannel(connection, { deployments, channelId });
      } catch (cause) {
        if (cause instanceof ContractRevertError && cause.errorName === "UnknownChannel")
          throw new VoucherRejectedError(
            `channel ${channelId} does not exist on chain ${deployments.chainId}`,
            {
              code: "unknown_channel",
              hint: "open a channel to this provider with `mycel channel open`",
            },
          );
        // The chain is unreachable: a channel seen before is trusted as last read (serving goes on within it).
        if (known) return known;
        throw new VoucherRejectedError(`cannot read channel ${channelId} from the chain`, {
          code: "chain_unavailable",
          details: describeError(cause),
          hint: "the provider's chain RPC is unreachable; retry shortly",
          retryAfterMs: 2_000,
        });
      }
      // Owed and paid both start from the latest stored voucher (an earlier run's debts are not known).
      const stored = known ? 0n : (store.latestVoucher(channelId)?.cumulativeAmount ?? 0n);
      const state = known ?? {
        record,
        owed: stored,
        paid: stored,
        active: new Set(),
        grace: [],
        waiters: new Set(),
      };
      state.record = record;
      channels.set(key, state);
      return state;
    })();
    loading.set(key, load);
    try {
      return await load;
    } finally {
      loading.delete(key);
    }
  }

  function checkPayee(state: ChannelState, channelId: Hex) {
    if (isAddressEqual(state.record.client, zeroAddress))
      throw new VoucherRejectedError(`channel ${channelId} does not exist on chain ${deployments.chainId}`, {
        code: "unknown_channel",
        hint: "open a channel to this provider with `mycel channel open`",
      });
    if (!isAddressEqual(state.record.provider, provider))
      throw new VoucherRejectedError(
        `channel ${channelId} pays ${state.record.provider}, not this provider`,
        {
          code: "wrong_channel",
          hint: `open a channel to ${provider}`,
        },
      );
    if (!isAddressEqual(state.record.token, deployments.contracts.token))
      throw new VoucherRejectedError(`channel ${channelId} is in a token this provider does not take`, {
        code: "wrong_channel",
        details: `channel token ${state.record.token}, accepted ${deployments.contracts.token}`,
      });
  }

  async function admit(input: { channelId: Hex; client: Address }): Promise<ChannelCharge> {
    let state = await channelState(input.channelId, false);
    if (state.record.state !== "open") state = await channelState(input.channelId, true);
    checkPayee(state, input.channelId);
    if (!isAddressEqual(state.record.client, input.client))
      throw new PaymentRequiredError(`channel ${input.channelId} belongs to ${state.record.client}`, {
        hint: "name a channel your own key opened",
      });
    if (state.record.state !== "open")
      throw new PaymentRequiredError(`channel ${input.channelId} is ${state.record.state}`, {
        hint: "open a new channel to this provider",
      });
    // At the window, no token more could be served: refuse (after a little wait) rather than start.
    const overdue = () => creditWindow > 0n && debtOf(state) >= creditWindow;
    if (overdue()) {
      // A finished request's final voucher may be on its way on another stream: wait a little for it.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, admitWaitMs);
        function done() {
          clearTimeout(timer);
          state.waiters.delete(check);
          resolve();
        }
        function check() {
          if (!overdue()) done();
        }
        state.waiters.add(check);
      });
      if (overdue())
        throw new PaymentRequiredError(
          `channel ${input.channelId} owes ${debtOf(state)}, as much as this provider's credit window of ${creditWindow} or more`,
          { hint: "send a voucher for what is owed before asking for more" },
        );
    }
    const request = { outputTokens: 0 };
    state.active.add(request);
    let open = true;
    let unpaid = false;
    const listeners = new Set<() => void>();
    const close = () => {
      open = false;
      state.active.delete(request);
      for (const listener of listeners) state.waiters.delete(listener);
    };
    return {
      channelId: input.channelId,
      charge(tokens) {
        if (!open) return false;
        request.outputTokens += tokens;
        if (debtOf(state) > creditWindow) {
          request.outputTokens -= tokens;
          return false;
        }
        return true;
      },
      complete(price) {
        if (!open) return;
        close();
        state.owed += price;
        state.grace.push({ amount: price, until: Date.now() + finalVoucherGraceMs });
      },
      markUnpaid() {
        unpaid = true;
      },
      onPayment(listener) {
        if (!open) return;
        listeners.add(listener);
        state.waiters.add(listener);
      },
      release: () => {
        if (!open) return;
        close();
        if (unpaid) state.owed += priceOfOutput(request.outputTokens);
      },
      debt: () => ({ unpaid: debtOf(state), creditWindow }),
    };
  }

  async function acceptVoucher(input: {
    channelId: Hex;
    cumulativeAmount: bigint;
    signature: Hex;
  }): Promise<ReceivedVoucher> {
    const { channelId, cumulativeAmount, signature } = input;
    const latest = store.latestVoucher(channelId)?.cumulativeAmount ?? 0n;
    if (cumulativeAmount <= latest)
      throw new VoucherRejectedError(
        `a voucher for ${cumulativeAmount} is not above the ${latest} already received on channel ${channelId} (replayed or stale)`,
        { code: "voucher_stale", hint: "vouchers are cumulative: sign one for everything owed so far" },
      );
    let state = await channelState(channelId, false);
    if (cumulativeAmount > state.record.deposit) state = await channelState(channelId, true);
    checkPayee(state, channelId);
    if (cumulativeAmount > state.record.deposit)
      throw new VoucherRejectedError(
        `a voucher for ${cumulativeAmount} exceeds channel ${channelId}'s deposit of ${state.record.deposit} (underfunded)`,
        { code: "voucher_underfunded", hint: "top up the channel before paying more than its deposit" },
      );
    const { s, v } = signatureParts(signature);
    if (s > halfCurveOrder || (v !== 27 && v !== 28))
      throw new VoucherRejectedError("the voucher's signature is not in the form PaymentChannels accepts", {
        code: "voucher_forged",
        details: "signatures must have low s and v of 27 or 28",
      });
    let signer: Address;
    try {
      signer = await recoverVoucherSigner({
        domain,
        message: { channelId, cumulativeAmount },
        signature,
      });
    } catch (cause) {
      throw new VoucherRejectedError("the voucher's signature cannot be recovered", {
        code: "voucher_forged",
        details: describeError(cause),
      });
    }
    if (!isAddressEqual(signer, state.record.client))
      throw new VoucherRejectedError(
        `the voucher is signed by ${signer}, but channel ${channelId} belongs to ${state.record.client} (forged)`,
        { code: "voucher_forged", hint: "sign vouchers with the key that opened the channel" },
      );
    let stored: ReceivedVoucher;
    try {
      stored = store.saveVoucher({ channelId, provider, client: signer, cumulativeAmount, signature });
    } catch (error) {
      if (error instanceof StaleVoucherError)
        throw new VoucherRejectedError(error.shortMessage, { code: "voucher_stale", hint: error.hint });
      throw error;
    }
    if (cumulativeAmount > state.paid) state.paid = cumulativeAmount;
    // Everything finished before this voucher was signed is covered by it (vouchers are cumulative).
    state.grace = [];
    for (const waiter of [...state.waiters]) waiter();
    if (stored.cumulativeAmount - stored.settledAmount >= policy.thresholdAmount) queueSettlement(channelId);
    return stored;
  }

  // Settlements go out one at a time: they are sent from one key, and each needs the nonce after the last.
  let settling: Promise<void> = Promise.resolve();
  const queued = new Set<string>();

  function queueSettlement(channelId: Hex): Promise<void> {
    const key = channelId.toLowerCase();
    if (queued.has(key)) return settling;
    queued.add(key);
    settling = settling.then(async () => {
      queued.delete(key);
      await settleChannel(channelId);
    });
    return settling;
  }

  async function settleChannel(channelId: Hex) {
    const voucher = store.latestVoucher(channelId);
    if (!voucher || voucher.cumulativeAmount <= voucher.settledAmount) return;
    try {
      const sent = await settleVoucher(connection, {
        deployments,
        channelId,
        cumulativeAmount: voucher.cumulativeAmount,
        signature: voucher.signature,
      });
      store.recordSettled({ channelId, settledAmount: voucher.cumulativeAmount });
      logger.info("settled", {
        channel: channelId,
        paid: sent.paid.toString(),
        cumulative: voucher.cumulativeAmount.toString(),
        tx: sent.hash,
      });
    } catch (error) {
      if (error instanceof ContractRevertError && error.errorName === "VoucherNotAboveSettled") {
        // Settled before (a crash after the transaction, before it was recorded): take the chain's word.
        const record = await getChannel(connection, { deployments, channelId }).catch(() => undefined);
        if (record) store.recordSettled({ channelId, settledAmount: record.settled });
        return;
      }
      if (
        error instanceof ContractRevertError &&
        (error.errorName === "ChannelFinalized" || error.errorName === "DepositExhausted")
      ) {
        // The client withdrew (or the deposit is paid out): the rest can never be settled. Stop trying.
        const record = await getChannel(connection, { deployments, channelId }).catch(() => undefined);
        const closed = store.recordForfeited({
          channelId,
          settledAmount: record?.settled ?? voucher.settledAmount,
        });
        logger.warn("a voucher can no longer be settled: its channel was closed first", {
          channel: channelId,
          reason: error.errorName,
          lost: closed?.forfeitedAmount.toString(),
        });
        return;
      }
      logger.warn("settlement failed: retried at the next check", {
        channel: channelId,
        error: describeError(error).split("\n")[0],
      });
    }
  }

  async function settleAll() {
    for (const voucher of store.unsettledVouchers(provider)) await queueSettlement(voucher.channelId);
  }

  /** Settles what is old, over the threshold, or on a channel its client is closing. */
  async function check() {
    const now = Date.now();
    for (const voucher of store.unsettledVouchers(provider)) {
      const old = voucher.unsettledSince !== undefined && now - voucher.unsettledSince >= policy.maxAgeMs;
      const large = voucher.cumulativeAmount - voucher.settledAmount >= policy.thresholdAmount;
      let closing = false;
      try {
        const state = await channelState(voucher.channelId, true);
        closing = state.record.state !== "open";
        if (closing && state.record.closesAt)
          logger.info("a client is closing a channel: settling before its challenge period ends", {
            channel: voucher.channelId,
            closesAt: state.record.closesAt.toISOString(),
          });
      } catch {
        // Unreachable chain: the settlement below fails too and is retried at the next check.
      }
      if (old || large || closing) await queueSettlement(voucher.channelId);
    }
  }

  let timer: NodeJS.Timeout | undefined;
  let checking: Promise<void> | undefined;
  return {
    announcement: {
      chain_id: deployments.chainId,
      payment_channels: deployments.contracts.paymentChannels,
      credit_window: creditWindow.toString(),
    },
    creditWindow,
    admit,
    acceptVoucher,
    settleAll,
    vouchers: () => store.vouchersOf(provider),
    start() {
      settleAll().catch((error) => logger.warn("settling at start failed", { error: describeError(error) }));
      timer = setInterval(
        () => {
          if (checking) return;
          checking = check()
            .catch((error) => logger.warn("settlement check failed", { error: describeError(error) }))
            .finally(() => {
              checking = undefined;
            });
        },
        Math.min(policy.checkIntervalMs, policy.closingMarginMs),
      );
      timer.unref();
    },
    async stop(input = {}) {
      clearInterval(timer);
      const unsettled = store.unsettledVouchers(provider).length;
      if (unsettled === 0) return;
      logger.info("settling before shutdown", { channels: unsettled });
      let deadline: NodeJS.Timeout | undefined;
      await Promise.race([
        settleAll(),
        new Promise<void>((resolve) => {
          deadline = setTimeout(resolve, input.timeoutMs ?? 10_000);
        }),
      ]);
      clearTimeout(deadline);
      const left = store.unsettledVouchers(provider).length;
      if (left > 0)
        logger.warn("some vouchers are still unsettled: they are settled at the next start", {
          channels: left,
        });
    },
  };
}
