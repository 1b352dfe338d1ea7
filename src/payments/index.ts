/** The payments part: payment channels as the provider and the gateway use them (vouchers, metering, settlement). */
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
  type ChannelCharge,
  type CreateProviderPaymentsParameters,
  createProviderPayments,
  defaultSettlementPolicy,
  type ProviderPayments,
  type SettlementPolicy,
} from "./providerPayments.ts";
