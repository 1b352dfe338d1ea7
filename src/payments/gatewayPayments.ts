/**
 * The gateway's side of payment channels: opens and funds a channel per provider within a budget, meters what
 * it receives, and pays with cumulative vouchers (one in flight per channel, each written down before it is sent).
 */
import { type Address, getAddress, type Hex, isAddressEqual } from "viem";
import {
  type ChainConnection,
  type Deployments,
  deploymentVoucherDomain,
  getChannel,
  openChannel,
  topUpChannel,
} from "../chain/index.ts";
import { describeError, PaymentRequiredError } from "../errors/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import {
  type Announcement,
  priceOfTokens,
  signVoucher,
  type VoucherFrame,
  wireVersion,
} from "../protocol/index.ts";
import type { ClientChannel, PaymentStore } from "../store/index.ts";

/** How long a sent voucher waits for the provider's acknowledgement before the next one may go out. */
const acknowledgementTimeoutMs = 3_000;

/** Parameters of {@link createGatewayPayments}. */
export type CreateGatewayPaymentsParameters = {
  /** A connection that signs with the gateway's key (it opens and funds channels). */
  connection: ChainConnection;
  deployments: Deployments;
  store: PaymentStore;
  /** The gateway's key: it signs vouchers. */
  privateKey: Hex;
  /** Deposited into each new channel, and added at each top-up (smallest units). */
  depositPerProvider: bigint;
  /** The most the gateway keeps deposited across all its channels (smallest units). */
  budget: bigint;
  logger?: Logger;
};

/** One provider segment's metering on a channel. */
export type SegmentBill = {
  /** Counts output tokens received. */
  addOutput(tokens: number): void;
  /** The segment's receipt verified: its price is owed. */
  complete(price: bigint): void;
  /** The segment failed: its unreceipted output is not owed beyond what was already paid. */
  abandon(): void;
};

/** Sends a voucher frame on the stream the payment travels on. */
export type VoucherSender = (frame: VoucherFrame) => Promise<void>;

/** A funded channel to one provider. */
export type PayingChannel = {
  channelId: Hex;
  provider: Address;
  /** Starts metering a segment served at `outputPricePerMillion`. */
  startSegment(parameters: { outputPricePerMillion: bigint }): SegmentBill;
  /** Whether enough is owed that a voucher should go out now (half the provider's credit window). */
  due(): boolean;
  /**
   * Pays everything owed so far with one voucher sent through `send`, after any voucher still in flight;
   * resolves once the provider acknowledged it (or it timed out). Does nothing when nothing more is owed.
   */
  pay(send: VoucherSender): Promise<void>;
  /** The provider says it stored a voucher for `amount`. */
  acknowledge(amount: bigint): void;
};

/** The gateway's payments (see {@link createGatewayPayments}). */
export type GatewayPayments = {
  /** Whether this gateway can pay a provider whose announcement says how it is paid. */
  canPay(payment: Announcement["payment"]): boolean;
  /** The provider's channel, opened or topped up first if needed (within the budget). */
  channelFor(parameters: { provider: Address; creditWindow: bigint }): Promise<PayingChannel>;
  /** Every channel of this gateway's key, newest first. */
  channels(): ClientChannel[];
  budget: { limit: bigint; depositPerProvider: bigint; committed(): bigint };
  /** Waits (bounded) for vouchers in flight. */
  stop(): Promise<void>;
};

type ChannelEntry = PayingChannel & {
  row: ClientChannel;
  /** The provider's credit window, from its latest announcement. */
  creditWindow: bigint;
};

/** Creates the gateway's payment side. */
export function createGatewayPayments(parameters: CreateGatewayPaymentsParameters): GatewayPayments {
  const { connection, deployments, store } = parameters;
  const logger = parameters.logger ?? silentLogger;
  const client = getAddress(connection.account?.address ?? "0x");
  const domain = deploymentVoucherDomain(deployments);
  const byProvider = new Map<string, ChannelEntry>();
  const preparing = new Map<string, Promise<ChannelEntry>>();
  const checkedOnChain = new Set<string>();
  // Chain actions go out one at a time: they are sent from one key (nonces, the token allowance), and the
  // budget is checked against deposits recorded by the actions before.
  let chainActions: Promise<unknown> = Promise.resolve();
  function serialized<T>(action: () => Promise<T>): Promise<T> {
    const run = chainActions.then(action);
    chainActions = run.catch(() => undefined);
    return run;
  }
  const queues = new Set<Promise<void>>();

  function committed(): bigint {
    return store
      .channelsOf(client)
      .filter((row) => row.state !== "closed")
      .reduce((sum, row) => sum + row.deposit, 0n);
  }

  function entryOf(row: ClientChannel): ChannelEntry {
    // What is owed starts at what was signed before: both sides restart from the latest voucher.
    let owed = row.signedAmount;
    let signed = row.signedAmount;
    const active = new Set<{ tokens: number; outputPricePerMillion: bigint }>();
    let inFlight: { amount: bigint; resolve: () => void } | undefined;
    let queue: Promise<void> = Promise.resolve();
    /** A payment waits behind the one in flight: it pays whatever is owed when its turn comes. */
    let waiting = false;
    const target = () => {
      let total = owed;
      for (const segment of active)
        total += priceOfTokens({
          promptTokens: 0,
          completionTokens: segment.tokens,
          pricePerMillion: { input: 0n, output: segment.outputPricePerMillion },
        });
      return total < entry.row.deposit ? total : entry.row.deposit;
    };
    /** The latest voucher, and whether it reached the stream (a voucher lost with its stream is sent again). */
    let latest: { frame: VoucherFrame; delivered: boolean } | undefined;
    async function payNow(send: VoucherSender) {
      const amount = target();
      if (amount > signed) {
        const signature = await signVoucher({
          privateKey: parameters.privateKey,
          domain,
          message: { channelId: row.channelId, cumulativeAmount: amount },
        });
        // Written down before it leaves: a restart never signs a lower voucher the provider would refuse.
        store.recordSigned({ channelId: row.channelId, amount });
        signed = amount;
        row.signedAmount = amount;
        latest = {
          frame: {
            v: wireVersion,
            type: "voucher",
            channel_id: row.channelId,
            cumulative_amount: amount.toString(),
            signature,
          },
          delivered: false,
        };
      } else if (!latest || latest.delivered) return;
      const voucher = latest;
      let timer: NodeJS.Timeout | undefined;
      const acknowledged = new Promise<void>((resolve) => {
        inFlight = { amount: BigInt(voucher.frame.cumulative_amount), resolve };
        timer = setTimeout(resolve, acknowledgementTimeoutMs);
      });
      try {
        await send(voucher.frame);
        voucher.delivered = true;
        await acknowledged;
      } catch (error) {
        logger.debug("a voucher could not be sent: it goes out again on the next stream", {
          error: describeError(error),
        });
      } finally {
        clearTimeout(timer);
        inFlight = undefined;
      }
    }
    const entry: ChannelEntry = {
      row,
      creditWindow: 0n,
      channelId: row.channelId,
      provider: row.provider,
      startSegment(input) {
        const segment = { tokens: 0, outputPricePerMillion: input.outputPricePerMillion };
        active.add(segment);
        return {
          addOutput(tokens) {
            segment.tokens += tokens;
          },
          complete(price) {
            if (!active.delete(segment)) return;
            owed += price;
          },
          abandon() {
            if (!active.delete(segment)) return;
            // What was paid for its tokens stays paid; nothing more is owed for them.
            if (signed > owed) owed = signed;
          },
        };
      },
      due() {
        const unpaid = target() - signed;
        const window = entry.creditWindow;
        const undelivered = latest !== undefined && !latest.delivered;
        return !waiting && (undelivered || (window > 1n ? unpaid * 2n >= window : unpaid > 0n));
      },
      pay(send) {
        waiting = true;
        // Never rejects: a payment that fails (a store error) is logged, and the next one pays what is owed.
        const run = queue
          .then(() => {
            waiting = false;
            return payNow(send);
          })
          .catch((error) => {
            waiting = false;
            logger.warn("a payment failed: the next voucher covers it", { error: describeError(error) });
          });
        queue = run;
        queues.add(run);
        void run.finally(() => queues.delete(run));
        return run;
      },
      acknowledge(amount) {
        store.recordAcknowledged({ channelId: row.channelId, amount });
        if (inFlight && amount >= inFlight.amount) inFlight.resolve();
      },
    };
    return entry;
  }

  // Channels opened in earlier runs are used again.
  for (const row of store.channelsOf(client)) {
    const key = row.provider.toLowerCase();
    if (row.state === "open" && !byProvider.has(key)) byProvider.set(key, entryOf(row));
  }

  async function ensureFunded(entry: ChannelEntry | undefined, provider: Address, creditWindow: bigint) {
    const amount = parameters.depositPerProvider;
    if (entry && !checkedOnChain.has(entry.channelId)) {
      // Once per run: the channel may have been closed from the command line meanwhile.
      const record = await getChannel(connection, { deployments, channelId: entry.channelId }).catch(
        () => undefined,
      );
      checkedOnChain.add(entry.channelId);
      if (record && record.state !== "open") {
        store.updateChannel({ channelId: entry.channelId, state: record.state });
        byProvider.delete(provider.toLowerCase());
        entry = undefined;
      } else if (record && record.deposit !== entry.row.deposit) {
        store.updateChannel({ channelId: entry.channelId, deposit: record.deposit });
        entry.row.deposit = record.deposit;
      }
    }
    const headroom = creditWindow * 4n > amount / 4n ? creditWindow * 4n : amount / 4n;
    if (entry && entry.row.deposit - entry.row.signedAmount >= headroom) return entry;
    return serialized(() => fund(entry, provider, headroom));
  }

  /** Tops up or opens a channel: one at a time (see `serialized`). */
  async function fund(entry: ChannelEntry | undefined, provider: Address, headroom: bigint) {
    const limit = parameters.budget;
    const amount = parameters.depositPerProvider;
    if (entry) {
      const remaining = entry.row.deposit - entry.row.signedAmount;
      if (remaining >= headroom) return entry;
      if (committed() + amount > limit) {
        if (remaining > 0n) return entry;
        throw budgetExhausted(limit);
      }
      logger.info("topping up a payment channel", {
        provider,
        channel: entry.channelId,
        amount: amount.toString(),
      });
      await topUpChannel(connection, { deployments, channelId: entry.channelId, amount });
      entry.row.deposit += amount;
      store.updateChannel({ channelId: entry.channelId, deposit: entry.row.deposit });
      return entry;
    }
    if (committed() + amount > limit) throw budgetExhausted(limit);
    logger.info("opening a payment channel", { provider, deposit: amount.toString() });
    const opened = await openChannel(connection, { deployments, provider, amount });
    const row = store.addChannel({
      channelId: opened.channelId,
      client,
      provider,
      deposit: amount,
      state: "open",
    });
    checkedOnChain.add(opened.channelId);
    const created = entryOf(row);
    byProvider.set(provider.toLowerCase(), created);
    logger.info("payment channel open", { provider, channel: opened.channelId });
    return created;
  }

  function budgetExhausted(limit: bigint) {
    return new PaymentRequiredError(`the gateway's payment budget of ${limit} is spent`, {
      details: `${committed()} is deposited in channels`,
      hint: "raise --budget, or close channels you no longer use with `mycel channel close`",
    });
  }

  return {
    canPay(payment) {
      return (
        payment !== undefined &&
        payment.chain_id === deployments.chainId &&
        isAddressEqual(payment.payment_channels as Address, deployments.contracts.paymentChannels)
      );
    },
    async channelFor(input) {
      const key = input.provider.toLowerCase();
      const pending = preparing.get(key);
      if (pending) await pending.catch(() => undefined);
      const current = byProvider.get(key);
      const prepare = ensureFunded(current, getAddress(input.provider), input.creditWindow).then((entry) => {
        // The window is the provider's latest word (its announcement), not what it was when the channel opened.
        entry.creditWindow = input.creditWindow;
        return entry;
      });
      preparing.set(key, prepare);
      try {
        return await prepare;
      } finally {
        if (preparing.get(key) === prepare) preparing.delete(key);
      }
    },
    channels: () => store.channelsOf(client),
    budget: { limit: parameters.budget, depositPerProvider: parameters.depositPerProvider, committed },
    async stop() {
      await Promise.race([
        Promise.allSettled([...queues]),
        new Promise((resolve) => setTimeout(resolve, acknowledgementTimeoutMs + 1_000).unref()),
      ]);
    },
  };
}
