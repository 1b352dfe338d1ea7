/**
 * The payer's session on one stream (a gateway paying a provider for one segment): meters the output as it
 * arrives, sends a voucher whenever one is due, takes the provider's acknowledgements, and settles the receipt's
 * price with a final voucher. The gateway only forwards frames to it.
 */
import type { PaidFrame, VoucherFrame } from "../protocol/index.ts";
import type { PayingChannel, SegmentBill } from "./payingChannel.ts";

/** How long the payer reads acknowledgements after its final voucher before it lets the stream go. */
export const finalAcknowledgementWaitMs = 5_000;

/** A frame the provider may still send after its receipt (only `paid` frames matter then). */
export type FrameAfterReceipt = { type: string; cumulative_amount?: string };

/** Parameters of {@link openPayerSession}. */
export type OpenPayerSessionParameters = {
  channel: PayingChannel;
  /** The provider's output price per 1M tokens, from its announcement: what its output is metered at. */
  outputPricePerMillion: bigint;
  /** The most output tokens this segment may be paid for (the request's max_tokens): never metered beyond. */
  maxOutputTokens?: number;
  /** Sends a voucher frame on the stream. */
  sendVoucher: (frame: VoucherFrame) => Promise<void>;
};

/** One stream's payments, on the payer's side. */
export type PayerSession = {
  channelId: PayingChannel["channelId"];
  /** The request went out: anything still owed (a voucher lost with an earlier stream) is paid now. */
  begin(): void;
  /** Output tokens arrived: metered (never beyond `maxOutputTokens`), and a voucher goes out if one is due. */
  outputReceived(tokens: number): void;
  /** The provider stored a voucher. */
  acknowledged(frame: PaidFrame): void;
  /**
   * The receipt verified: its price is owed. Pays it with a voucher and reads the provider's acknowledgements from
   * `stream` (bounded) while this side closes. Never rejects.
   */
  settle(parameters: {
    price: bigint;
    stream: {
      next(parameters: { timeoutMs: number }): Promise<FrameAfterReceipt | undefined>;
      close(): Promise<void>;
    };
  }): Promise<void>;
  /** The segment ended without a verified receipt: its unreceipted output is not owed beyond what was paid. */
  abandon(): void;
};

/** Opens the payer's session for one segment on a funded channel. */
export function openPayerSession(parameters: OpenPayerSessionParameters): PayerSession {
  const { channel, sendVoucher } = parameters;
  const bill: SegmentBill = channel.startSegment({ outputPricePerMillion: parameters.outputPricePerMillion });
  let metered = 0;
  const cap = parameters.maxOutputTokens ?? Number.POSITIVE_INFINITY;
  const payIfDue = () => {
    if (channel.due()) void channel.pay(sendVoucher);
  };
  return {
    channelId: channel.channelId,
    begin: payIfDue,
    outputReceived(tokens) {
      const counted = Math.max(0, Math.min(tokens, cap - metered));
      metered += counted;
      if (counted > 0) bill.addOutput(counted);
      payIfDue();
    },
    acknowledged(frame) {
      channel.acknowledge(BigInt(frame.cumulative_amount));
    },
    async settle({ price, stream }) {
      bill.complete(price);
      const acknowledgements = (async () => {
        try {
          for (;;) {
            const frame = await stream.next({ timeoutMs: finalAcknowledgementWaitMs });
            if (frame === undefined) return;
            if (frame.type === "paid" && frame.cumulative_amount !== undefined)
              channel.acknowledge(BigInt(frame.cumulative_amount));
          }
        } catch {
          // A provider that goes away after its receipt loses nothing: the next voucher covers this one.
        }
      })();
      await channel.pay(sendVoucher); // never rejects
      // The provider ends the stream once this side is closed; its last `paid` may still be on the way.
      await stream.close().catch(() => undefined);
      await acknowledgements;
    },
    abandon: () => bill.abandon(),
  };
}
