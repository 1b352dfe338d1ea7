/** Typed errors of the store part. */
import { MycelError, type MycelErrorParameters } from "../errors/index.ts";

/** A receipt already stored under the same (requestId, segment) differs from the one being saved. */
export class ReceiptConflictError extends MycelError {
  override name = "ReceiptConflictError";
  readonly requestId: string;
  readonly segment: number;
  constructor(parameters: { requestId: string; segment: number } & MycelErrorParameters) {
    const { requestId, segment, ...rest } = parameters;
    super(`a different receipt is already stored for request ${requestId} segment ${segment}`, {
      code: "receipt_conflict",
      details: "stored receipts are never replaced; the stored one was kept",
      hint: "a provider signed two different receipts for one request segment: keep both signed copies as evidence, and save any new segment under the next segment number",
      ...rest,
    });
    this.requestId = requestId;
    this.segment = segment;
  }
}

/** The database file cannot be used: created by a newer Mycel, corrupt, or not a Mycel database. */
export class DatabaseError extends MycelError {
  override name = "DatabaseError";
}

/** A voucher that is not above the latest one stored for its channel (a replay, or one that arrived late). */
export class StaleVoucherError extends MycelError {
  override name = "StaleVoucherError";
  readonly latest: bigint;
  constructor(parameters: { channelId: string; amount: bigint; latest: bigint }) {
    super(
      `a voucher for ${parameters.amount} on channel ${parameters.channelId} is not above the ${parameters.latest} already received (replayed or stale)`,
      {
        code: "voucher_stale",
        hint: "vouchers are cumulative: sign a new one for the whole amount owed so far",
      },
    );
    this.latest = parameters.latest;
  }
}
