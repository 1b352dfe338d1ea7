/**
 * The gateway's control frames during an answer: a cancel (or the stream going away) stops the work, vouchers pay
 * for it as it goes, and once the end frame is out the voucher for the receipt is waited for.
 */
import { finalVoucherWaitMs, type PayeeSession } from "../payments/index.ts";
import { errorFrameOf, type InferenceExchange } from "../protocols/index.ts";

/** Starts reading the gateway's control frames of `exchange`; `stopWork` is called when the gateway cancels or leaves. */
export function watchGatewayControl(parameters: {
  exchange: InferenceExchange;
  session: Pick<PayeeSession<never>, "handleVoucher" | "stopReason">;
  stopWork: () => void;
}) {
  const { exchange, session } = parameters;
  /** Set once the end frame is out: a voucher refused later is told at once. */
  let answered = false;
  const reading = new AbortController();
  const done = (async () => {
    try {
      for (;;) {
        const next = await exchange.nextGatewayFrame(reading.signal);
        if (next === undefined || next.type === "cancel") break;
        if (await session.handleVoucher(next)) continue;
        if (answered) exchange.send(errorFrameOf(session.stopReason()));
        break;
      }
    } catch {
      // A malformed control frame or a broken stream ends the request like a cancel.
    }
    parameters.stopWork();
  })();
  return {
    /** The end frame is out. */
    markAnswered() {
      answered = true;
    },
    /** Waits (at most {@link finalVoucherWaitMs}) for the voucher that pays the receipt, then for its acknowledgement to go out. */
    async awaitFinalVoucher() {
      let wait: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise((resolve) => (wait = setTimeout(resolve, finalVoucherWaitMs)))]);
      clearTimeout(wait);
      await exchange.flushed();
    },
    /** Stops reading and waits for the reader to end. */
    async stop() {
      reading.abort(new Error("request finished"));
      await done;
    },
  };
}
