/** The store part: SQLite persistence (receipts and untrusted providers now; vouchers and channels later). */
export { schemaVersion } from "./database.ts";
export { DatabaseError, ReceiptConflictError } from "./errors.ts";
export {
  type OpenReceiptStoreParameters,
  openReceiptStore,
  type ReceiptStore,
  type SaveReceiptParameters,
  type SaveReceiptReturnType,
  type StoredReceipt,
  type UntrustedProvider,
} from "./receipts.ts";
