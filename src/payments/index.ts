/**
 * The payments part: payment channels as the provider and the gateway use them (vouchers, metering, settlement),
 * and the session each side runs per stream (payer: meter and pay; payee: admit, hold and release, take vouchers).
 */

export { admitWaitMs, type ChannelCharge, finalVoucherGraceMs } from "./admission.ts";
export { type ChannelLedger, type ChannelState, createChannelLedger } from "./channelLedger.ts";
export { VoucherRejectedError } from "./errors.ts";
export {
  type CreateGatewayPaymentsParameters,
  createGatewayPayments,
  type GatewayPayments,
} from "./gatewayPayments.ts";
export {
  finalVoucherWaitMs,
  type MeteredOutput,
  type OpenPayeeSessionParameters,
  openPayeeSession,
  type PayeeSession,
  paymentWaitMs,
} from "./payeeSession.ts";
export {
  type FrameAfterReceipt,
  finalAcknowledgementWaitMs,
  type OpenPayerSessionParameters,
  openPayerSession,
  type PayerSession,
} from "./payerSession.ts";
export {
  acknowledgementTimeoutMs,
  type ChannelEntry,
  type CreatePayingChannelParameters,
  createPayingChannel,
  type PayingChannel,
  type SegmentBill,
  type VoucherSender,
} from "./payingChannel.ts";
export {
  type CreateProviderPaymentsParameters,
  createProviderPayments,
  type ProviderPayments,
} from "./providerPayments.ts";
export { createSettler, defaultSettlementPolicy, type SettlementPolicy, type Settler } from "./settlement.ts";
