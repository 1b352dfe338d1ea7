/** Which audit samples a validator takes: signed by the receipt's client, about a provider it knows, queue not full. */
import { getAddress } from "viem";
import { MycelError } from "../errors/index.ts";
import {
  type AuditSampleFrame,
  recoverAuditSampleSigner,
  recoverReceiptSigner,
  type SignedReceipt,
} from "../protocol/index.ts";

/** Checks a sample from a gateway; throws a MycelError with the wire code to refuse it with. */
export async function checkSample(
  sample: AuditSampleFrame,
  parameters: {
    providerAddress: (peerId: string) => string | undefined;
    queueFull: () => boolean;
    waiting: number;
  },
): Promise<void> {
  const signer = await recoverAuditSampleSigner(sample).catch(() => undefined);
  if (!signer || getAddress(signer) !== getAddress(sample.receipt.message.client))
    throw new MycelError("the sample is not signed by the receipt's client", { code: "bad_signature" });
  if (sample.receipt.message.requestId !== sample.request_id)
    throw new MycelError("the receipt belongs to another request", { code: "invalid_request" });
  // Only what the named provider signed, fetched from that provider's own peer, can count against it.
  const receiptSigner = await recoverReceiptSigner(sample.receipt as SignedReceipt).catch(() => undefined);
  if (!receiptSigner || getAddress(receiptSigner) !== getAddress(sample.receipt.message.provider))
    throw new MycelError("the receipt is not signed by the provider it names", { code: "bad_signature" });
  const known = parameters.providerAddress(sample.provider_peer_id);
  if (!known || getAddress(known) !== getAddress(sample.receipt.message.provider))
    throw new MycelError(
      "provider_peer_id is not a provider this validator has heard announce itself as the receipt's provider",
      { code: "unknown_provider" },
    );
  if (parameters.queueFull())
    throw new MycelError(`this validator has ${parameters.waiting} audits waiting`, { code: "busy" });
}
