/**
 * One channel the gateway pays a provider through: what is owed (receipted segments, and output still streaming),
 * what was signed, and the voucher in flight. Vouchers are cumulative, one in flight at a time, each written down
 * before it leaves, and a voucher lost with its stream is sent again on the next.
 */
import type { Address, Hex } from "viem";
import type { deploymentVoucherDomain } from "../chain/index.ts";
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import { priceOfTokens, signVoucher, type VoucherFrame, wireVersion } from "../protocol/index.ts";
import type { ClientChannel, PaymentStore } from "../store/index.ts";

/** How long a sent voucher waits for the provider's acknowledgement before the next one may go out. */
export const acknowledgementTimeoutMs = 3_000;

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

/** A paying channel with its stored row and the provider's credit window. */
export type ChannelEntry = PayingChannel & {
  row: ClientChannel;
  /** The provider's credit window, from its latest announcement. */
  creditWindow: bigint;
};

/** Parameters of {@link createPayingChannel}. */
export type CreatePayingChannelParameters = {
  row: ClientChannel;
  store: PaymentStore;
  /** The gateway's key: it signs vouchers. */
  privateKey: Hex;
  domain: ReturnType<typeof deploymentVoucherDomain>;
  /** Payments still running, so that the gateway can wait for them when it stops. */
  running: Set<Promise<void>>;
  logger: Logger;
};

/** Creates the paying side of one channel, starting from what was signed before (both sides restart from it). */
export function createPayingChannel(parameters: CreatePayingChannelParameters): ChannelEntry {
  const { row, store, logger } = parameters;
  let owed = row.signedAmount;
  let signed = row.signedAmount;
  const active = new Set<{ tokens: number; outputPricePerMillion: bigint }>();
  let inFlight: { amount: bigint; resolve: () => void } | undefined;
  let queue: Promise<void> = Promise.resolve();
  /** A payment waits behind the one in flight: it pays whatever is owed when its turn comes. */
  let waiting = false;
  /** The latest voucher, and whether it reached the stream (a voucher lost with its stream is sent again). */
  let latest: { frame: VoucherFrame; delivered: boolean } | undefined;
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

  /** Signs (and writes down) a voucher for what is owed, if more is owed than signed. */
  async function signOwed() {
    const amount = target();
    if (amount <= signed) return;
    const signature = await signVoucher({
      privateKey: parameters.privateKey,
      domain: parameters.domain,
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
  }

  async function payNow(send: VoucherSender) {
    await signOwed();
    if (!latest || latest.delivered) return;
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
      parameters.running.add(run);
      void run.finally(() => parameters.running.delete(run));
      return run;
    },
    acknowledge(amount) {
      store.recordAcknowledged({ channelId: row.channelId, amount });
      if (inFlight && amount >= inFlight.amount) inFlight.resolve();
    },
  };
  return entry;
}
