/**
 * The payments part: payment channels as the provider and the gateway use them (vouchers, metering, settlement),
 * and the session each side runs per stream (payer: meter and pay; payee: admit, hold and release, take vouchers).
 */
export { VoucherRejectedError } from "./errors.ts";
export {
  type CreateGatewayPaymentsParameters,
  createGatewayPayments,
  type GatewayPayments,
  type PayingChannel,
  type SegmentBill,
  type VoucherSender,
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
  type ChannelCharge,
  type CreateProviderPaymentsParameters,
  createProviderPayments,
  defaultSettlementPolicy,
  type ProviderPayments,
  type SettlementPolicy,
} from "./providerPayments.ts";
