/**
 * Why a request's attempt at a provider failed, and whose fault it was: the client's input, the payment, the
 * provider (failed or cheated), or this gateway itself. Only the provider's own faults count against it.
 */
import {
  InvalidInputError,
  MycelError,
  type MycelErrorParameters,
  PaymentRequiredError,
} from "../errors/index.ts";
import { ProtocolError } from "../protocol/index.ts";
import { ReceiptRejectedError } from "./verifyReceipt.ts";

/** A provider segment failed (died, stalled, refused): the request fails over. */
export class SegmentFailedError extends MycelError {
  override name = "SegmentFailedError";
  /** How long the provider asked to be left alone (a busy provider), if it said. */
  readonly retryAfterMs: number | undefined;
  constructor(shortMessage: string, parameters: MycelErrorParameters & { retryAfterMs?: number } = {}) {
    super(shortMessage, { code: "provider_failed", ...parameters });
    this.retryAfterMs = parameters.retryAfterMs;
  }
}

/** A provider refused for being full (wire kind `busy`): not a failure, it rests until `retryAfterMs`. */
export class ProviderBusyError extends SegmentFailedError {
  override name = "ProviderBusyError";
}

/** Whose fault a failed attempt was, and so what the gateway does next. */
export type FailureKind =
  /** The client's request is wrong: answer 400, blame nobody. */
  | "client_input"
  /** Payment is refused or the budget is spent: answer 402, blame nobody. */
  | "payment"
  /** The provider is full: not its fault; leave it alone until its retry-after and ask another (or wait). */
  | "provider_busy"
  /** The provider died, stalled or refused: sit it out for a while and fail over. */
  | "provider_failed"
  /** The provider broke the protocol or its receipt: never route to it again, and fail over. */
  | "provider_cheated"
  /** Anything else (a bug, a store that fails) is this gateway's own failure: answer 500, blame nobody. */
  | "gateway_failed";

/** Classifies what an attempt threw. */
export function classifyFailure(error: unknown): FailureKind {
  if (error instanceof InvalidInputError) return "client_input";
  if (error instanceof PaymentRequiredError) return "payment";
  if (error instanceof ReceiptRejectedError || error instanceof ProtocolError) return "provider_cheated";
  if (error instanceof ProviderBusyError) return "provider_busy";
  if (error instanceof SegmentFailedError) return "provider_failed";
  return "gateway_failed";
}
