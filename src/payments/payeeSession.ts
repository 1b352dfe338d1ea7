/**
 * The payee's session on one stream (a provider paid for one answer): admits the request on its channel, lets
 * output out as far as the credit window allows and holds the rest until a voucher pays for it, takes vouchers
 * (checked and stored before they are acknowledged), and cuts the payer off when no voucher comes in time. The
 * provider only forwards frames and output to it.
 */
import type { Address, Hex } from "viem";
import { describeError, MycelError, PaymentRequiredError } from "../errors/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import { type PaidFrame, type VoucherFrame, wireVersion } from "../protocol/index.ts";
import type { ChannelCharge } from "./admission.ts";
import { VoucherRejectedError } from "./errors.ts";
import type { ProviderPayments } from "./providerPayments.ts";

/** How long output beyond the credit window waits for a voucher before the payer is cut off. */
export const paymentWaitMs = 2_000;
/** How long a payee waits, after its receipt, for the voucher that pays for it. */
export const finalVoucherWaitMs = 3_000;

/** Output waiting to go out: what matters to payments is its token count. */
export type MeteredOutput = { tokens: readonly number[] };

/** Parameters of {@link openPayeeSession}. */
export type OpenPayeeSessionParameters<Output extends MeteredOutput> = {
  /** The payee's payments; without them (or with `paid` false) the session lets everything out unmetered. */
  payments: ProviderPayments | undefined;
  /** Whether this payee charges anything (a free provider asks for no channel). */
  paid: boolean;
  /** The channel the request names, if any, and the client it claims to be. */
  channelId: Hex | undefined;
  client: Address;
  /** Sends output to the payer; `maxTokensPerRelease` tokens at most per call (one frame). */
  release: (output: Output[]) => void;
  maxTokensPerRelease: number;
  /** Sends an acknowledgement frame. */
  sendPaid: (frame: PaidFrame) => void;
  /** The payer was cut off (no voucher in time, or a voucher refused): generation should stop. */
  onStop: (reason: MycelError) => void;
  logger?: Logger;
  /** For logs: who the payer is. */
  peerId?: string;
};

/** One stream's payments, on the payee's side. */
export type PayeeSession<Output extends MeteredOutput> = {
  /** Whether output is metered (a paid request): the payee then waits for the final voucher after its receipt. */
  metered: boolean;
  /** Why the payer is no longer served, once it is not. */
  stopReason(): MycelError | undefined;
  /** Output is ready: it goes out as far as the credit window allows; the rest waits for a voucher. */
  offer(output: Output[]): void;
  /** Resolves once no output is held back (all of it went out, or the payer was cut off). */
  drained(): Promise<void>;
  /** A voucher from the payer: checked and stored, then acknowledged. False when it was refused (see stopReason). */
  handleVoucher(frame: VoucherFrame): Promise<boolean>;
  /** The answer is complete with a receipt of `price`: it is owed from now on. */
  complete(price: bigint): void;
  /** The request is over (call once, always): unreceipted output is forgiven unless the payer was cut off. */
  end(): void;
};

/** Opens the payee's session for one request: checks its channel first (throws PaymentRequiredError or VoucherRejectedError). */
export async function openPayeeSession<Output extends MeteredOutput>(
  parameters: OpenPayeeSessionParameters<Output>,
): Promise<PayeeSession<Output>> {
  const { payments } = parameters;
  const logger = parameters.logger ?? silentLogger;
  let charge: ChannelCharge | undefined;
  if (parameters.paid && payments) {
    if (!parameters.channelId)
      throw new PaymentRequiredError(
        `this provider is paid through payment channels (PaymentChannels ${payments.announcement.payment_channels} on chain ${payments.announcement.chain_id})`,
        { hint: "open a channel to this provider and name it in the request's payment.channel_id" },
      );
    charge = await payments.admit({ channelId: parameters.channelId, client: parameters.client });
  }
  let stopReason: MycelError | undefined;
  let held: Output[] = [];
  let holdTimer: NodeJS.Timeout | undefined;
  let drainedWaiters: (() => void)[] = [];
  const settleDrained = () => {
    const waiters = drainedWaiters;
    drainedWaiters = [];
    for (const resolve of waiters) resolve();
  };
  const stop = (reason: MycelError) => {
    stopReason = reason;
    parameters.onStop(reason);
    settleDrained();
  };
  const cutOff = () => {
    if (!charge || stopReason) return;
    const debt = charge.debt();
    logger.warn("client cut off: unpaid beyond the credit window", {
      peer: parameters.peerId,
      channel: charge.channelId,
      unpaid: debt.unpaid.toString(),
    });
    charge.markUnpaid();
    stop(
      new PaymentRequiredError(
        `unpaid output on channel ${charge.channelId} (${debt.unpaid} owed) would exceed this provider's credit window of ${debt.creditWindow}`,
        { hint: "pay with vouchers as tokens arrive, as docs/PROTOCOL.md describes" },
      ),
    );
  };
  /** Sends held output, one release per maxTokensPerRelease tokens, as far as the credit window allows. */
  const releaseHeld = () => {
    while (held.length > 0 && !stopReason) {
      // Item by item: exactly as much as the window allows goes out.
      let count = 0;
      let take = 0;
      for (const item of held) {
        if (take > 0 && count + item.tokens.length > parameters.maxTokensPerRelease) break;
        if (charge && !charge.charge(item.tokens.length)) break;
        count += item.tokens.length;
        take++;
      }
      if (take > 0) {
        const batch = held.slice(0, take);
        held = held.slice(take);
        parameters.release(batch);
      }
      if (held.length > 0 && (take === 0 || count < parameters.maxTokensPerRelease)) {
        holdTimer ??= setTimeout(() => {
          holdTimer = undefined;
          releaseHeld();
          if (held.length > 0) cutOff();
        }, paymentWaitMs);
        return;
      }
    }
    clearTimeout(holdTimer);
    holdTimer = undefined;
    settleDrained();
  };
  // A voucher on any stream of the channel may pay for this one's held output.
  charge?.onPayment(releaseHeld);
  let ended = false;
  return {
    metered: charge !== undefined,
    stopReason: () => stopReason,
    offer(output) {
      if (stopReason || ended) return;
      held.push(...output);
      if (held.length === output.length) releaseHeld();
    },
    drained: () =>
      held.length === 0 || stopReason
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            drainedWaiters.push(resolve);
          }),
    async handleVoucher(frame) {
      if (!payments) return true;
      try {
        const stored = await payments.acceptVoucher({
          channelId: frame.channel_id as Hex,
          cumulativeAmount: BigInt(frame.cumulative_amount),
          signature: frame.signature as Hex,
        });
        parameters.sendPaid({
          v: wireVersion,
          type: "paid",
          channel_id: frame.channel_id,
          cumulative_amount: stored.cumulativeAmount.toString(),
        });
        return true;
      } catch (error) {
        const reason = error instanceof MycelError ? error : new VoucherRejectedError(describeError(error));
        logger.warn("voucher rejected", { peer: parameters.peerId, error: reason.shortMessage });
        if (!stopReason) stop(reason);
        return false;
      }
    },
    complete(price) {
      charge?.complete(price);
    },
    end() {
      if (ended) return;
      ended = true;
      clearTimeout(holdTimer);
      holdTimer = undefined;
      charge?.release();
      settleDrained();
    },
  };
}
