/**
 * Admitting a request on a channel, and metering its output on credit: at most the credit window may be unpaid at
 * any time, across every request on the channel; a finished request's price is owed once its receipt is out.
 */
import { type Address, type Hex, isAddressEqual } from "viem";
import { PaymentRequiredError } from "../errors/index.ts";
import type { ChannelLedger, ChannelState } from "./channelLedger.ts";

/** How long a request on a channel that owes as much as the credit window waits for a voucher before it is refused. */
export const admitWaitMs = 2_000;
/** How long a finished request's price is not counted as debt, so that its final voucher can arrive. */
export const finalVoucherGraceMs = 2_000;

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

/** Waits up to {@link admitWaitMs} for `ready()`, re-checked after each voucher on the channel. */
function waitForPayment(state: ChannelState, ready: () => boolean): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(done, admitWaitMs);
    function done() {
      clearTimeout(timer);
      state.waiters.delete(check);
      resolve();
    }
    function check() {
      if (ready()) done();
    }
    state.waiters.add(check);
  });
}

/** The metering of one request on an admitted channel. */
function chargeOn(parameters: {
  state: ChannelState;
  channelId: Hex;
  ledger: ChannelLedger;
  creditWindow: bigint;
  priceOfOutput: (tokens: number) => bigint;
}): ChannelCharge {
  const { state, ledger, creditWindow } = parameters;
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
    channelId: parameters.channelId,
    charge(tokens) {
      if (!open) return false;
      request.outputTokens += tokens;
      if (ledger.debtOf(state) > creditWindow) {
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
      if (unpaid) state.owed += parameters.priceOfOutput(request.outputTokens);
    },
    debt: () => ({ unpaid: ledger.debtOf(state), creditWindow }),
  };
}

/** Checks that a channel may pay for a new request (on chain, funded, this provider's, not too far behind). */
export async function admitRequest(parameters: {
  ledger: ChannelLedger;
  channelId: Hex;
  client: Address;
  creditWindow: bigint;
  priceOfOutput: (tokens: number) => bigint;
}): Promise<ChannelCharge> {
  const { ledger, channelId, creditWindow } = parameters;
  let state = await ledger.state(channelId, false);
  if (state.record.state !== "open") state = await ledger.state(channelId, true);
  ledger.checkPayee(state, channelId);
  if (!isAddressEqual(state.record.client, parameters.client))
    throw new PaymentRequiredError(`channel ${channelId} belongs to ${state.record.client}`, {
      hint: "name a channel your own key opened",
    });
  if (state.record.state !== "open")
    throw new PaymentRequiredError(`channel ${channelId} is ${state.record.state}`, {
      hint: "open a new channel to this provider",
    });
  // At the window, no token more could be served: refuse (after a little wait) rather than start.
  const overdue = () => creditWindow > 0n && ledger.debtOf(state) >= creditWindow;
  if (overdue()) {
    // A finished request's final voucher may be on its way on another stream: wait a little for it.
    await waitForPayment(state, () => !overdue());
    if (overdue())
      throw new PaymentRequiredError(
        `channel ${channelId} owes ${ledger.debtOf(state)}, as much as this provider's credit window of ${creditWindow} or more`,
        { hint: "send a voucher for what is owed before asking for more" },
      );
  }
  return chargeOn({ state, channelId, ledger, creditWindow, priceOfOutput: parameters.priceOfOutput });
}
