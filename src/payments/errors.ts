/** Typed errors of the payments part. */
import { MycelError, type MycelErrorParameters } from "../errors/index.ts";

/** A voucher a provider will not accept (forged, replayed, underfunded, unknown channel); nothing was stored. */
export class VoucherRejectedError extends MycelError {
  override name = "VoucherRejectedError";
  /** When it is worth sending again (the provider's chain was unreachable), if ever. */
  readonly retryAfterMs: number | undefined;
  constructor(shortMessage: string, parameters: MycelErrorParameters & { retryAfterMs?: number } = {}) {
    super(shortMessage, { code: "voucher_rejected", ...parameters });
    this.retryAfterMs = parameters.retryAfterMs;
  }
}
