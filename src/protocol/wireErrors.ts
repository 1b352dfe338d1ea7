/**
 * Wire error codes: every code a Mycel peer may put in an error frame, with what it tells the side that asked.
 * Both sides use this one table: a server sends only these codes, a client decides what to do from the kind.
 * Pure: no I/O.
 */

/** What an error frame tells the side that asked. */
export type WireErrorKind =
  /** The request itself is wrong (the asker's fault): asking another peer would fail the same way. */
  | "client_input"
  /** The peer will not serve it unpaid: the asker must pay (or top up) first; asking another peer does not help. */
  | "payment"
  /** The peer is full now: ask again after `retry_after_ms`, or ask another peer. */
  | "busy"
  /** The peer failed to serve it (or has nothing to give): ask another peer. */
  | "failure";

/** Every wire error code and its kind. */
export const wireErrorKinds = {
  // The request is wrong.
  invalid_request: "client_input",
  invalid_value: "client_input",
  context_length_exceeded: "client_input",
  prompt_too_long: "client_input",
  bad_signature: "client_input",
  unknown_provider: "client_input",
  client_not_peer: "client_input",
  // Payment.
  payment_required: "payment",
  // Capacity.
  busy: "busy",
  too_many_streams: "busy",
  queue_full: "busy",
  // The serving peer cannot or did not serve it.
  model_not_found: "failure",
  evidence_not_found: "failure",
  time_limit: "failure",
  voucher_rejected: "failure",
  voucher_stale: "failure",
  voucher_forged: "failure",
  voucher_underfunded: "failure",
  unknown_channel: "failure",
  wrong_channel: "failure",
  chain_unavailable: "failure",
  malformed_frame: "failure",
  frame_decode_failed: "failure",
  frame_too_large: "failure",
  frame_timeout: "failure",
  stream_closed: "failure",
  engine_error: "failure",
  engine_unavailable: "failure",
  engine_out_of_memory: "failure",
  internal_error: "failure",
} as const satisfies Record<string, WireErrorKind>;

/** A code a Mycel peer may send in an error frame. */
export type WireErrorCode = keyof typeof wireErrorKinds;

/** Whether `code` is one of the {@link WireErrorCode}s. */
export function isWireErrorCode(code: string): code is WireErrorCode {
  return Object.hasOwn(wireErrorKinds, code);
}

/** The kind of a received code; a code this version does not know counts as the peer's failure. */
export function wireErrorKindOf(code: string): WireErrorKind {
  return isWireErrorCode(code) ? wireErrorKinds[code] : "failure";
}

/** The code to send for an error with `code` (e.g. a MycelError's): itself when it is a wire code, else internal_error. */
export function toWireErrorCode(code: string | undefined): WireErrorCode {
  return code !== undefined && isWireErrorCode(code) ? code : "internal_error";
}
