/** The store part: SQLite persistence (receipts now; vouchers, channels and peers later). */
export { schemaVersion } from "./database.ts";
export { DatabaseError, ReceiptConflictError } from "./errors.ts";
export {
  type OpenReceiptStoreParameters,
  openReceiptStore,
  type ReceiptStore,
  type SaveReceiptParameters,
  type SaveReceiptReturnType,
  type StoredReceipt,
} from "./receipts.ts";
