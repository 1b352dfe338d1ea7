/** The protocol part: wire frames, announcements, EIP-712 receipts and hashing. Pure code, no I/O. */
export {
  type Announcement,
  announcementSchema,
  peerBindingMessage,
  signAnnouncement,
  type UnsignedAnnouncement,
  type VerifyAnnouncementParameters,
  verifyAnnouncement,
} from "./announcement.ts";
export { canonicalJson } from "./canonicalJson.ts";
export {
  announcementTiming,
  announcementTopic,
  inferenceProtocolId,
  streamLimits,
  wireVersion,
} from "./constants.ts";
export {
  type CancelFrame,
  type ChunkFrame,
  cancelFrameSchema,
  chunkFrameSchema,
  type EndFrame,
  type ErrorFrame,
  endFrameSchema,
  errorFrameSchema,
  type GatewayFrame,
  gatewayFrameSchema,
  type InferenceRequest,
  inferenceRequestSchema,
  type PaidFrame,
  ProtocolError,
  type ProviderFrame,
  paidFrameSchema,
  parseFrame,
  providerFrameSchema,
  type RequestFrame,
  requestFrameSchema,
  type VoucherFrame,
  voucherFrameSchema,
} from "./frames.ts";
export { encodeTokenIds, hashRequest, hashTokenIds, modelHashToBytes32 } from "./hashing.ts";
export {
  defaultReceiptChain,
  priceOfTokens,
  type ReceiptDomain,
  type ReceiptMessage,
  receiptDomain,
  receiptMessageFromJson,
  receiptTypes,
  recoverReceiptSigner,
  type SignedReceipt,
  type SignReceiptParameters,
  signedReceiptSchema,
  signReceipt,
} from "./receipt.ts";
export {
  hashVoucher,
  recoverVoucherSigner,
  signVoucher,
  type VoucherDomain,
  type VoucherMessage,
  voucherDomain,
  voucherTypes,
} from "./voucher.ts";
