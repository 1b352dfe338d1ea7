/** The store part: SQLite persistence (receipts, untrusted providers, vouchers and channels, evidence, audits). */
export { type ApiKeyStore, apiKeyStorePath, openApiKeyStore, type StoredApiKey } from "./apiKeys.ts";
export {
  type AuditStore,
  openAuditStore,
  type StoredAudit,
  type StoredCommitment,
  validatorStorePath,
} from "./audits.ts";
export { schemaVersion } from "./database.ts";
export { DatabaseError, ReceiptConflictError, StaleVoucherError } from "./errors.ts";
export {
  type EvidenceStore,
  openEvidenceStore,
  providerEvidenceStorePath,
  type StoredEvidence,
} from "./evidence.ts";
export {
  type ClientChannel,
  gatewayPaymentStorePath,
  openPaymentStore,
  type PaymentStore,
  providerPaymentStorePath,
  type ReceivedVoucher,
} from "./payments.ts";
export {
  type OpenReceiptStoreParameters,
  openReceiptStore,
  type ReceiptSpending,
  type ReceiptStore,
  type SaveReceiptParameters,
  type SaveReceiptReturnType,
  type SearchedReceipt,
  type SearchReceiptsParameters,
  type StoredAuditVerdict,
  type StoredReceipt,
  type UntrustedProvider,
} from "./receipts.ts";
