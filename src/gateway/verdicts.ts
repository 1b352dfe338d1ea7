/**
 * Verdicts validators hand back on this gateway's samples: kept with the receipts they judge when they are signed by
 * the validator they name, come from the validator peer the segment was sent to, and judge a segment of this gateway.
 */
import type { Hex } from "viem";
import type { Logger } from "../log/index.ts";
import { type AuditVerdictFrame, ProtocolError, recoverAuditVerdictSigner } from "../protocol/index.ts";
import type { ReceiptStore, StoredAuditVerdict } from "../store/index.ts";

/** Parameters of {@link createVerdictKeeper}. */
export type CreateVerdictKeeperParameters = {
  receipts: Pick<ReceiptStore, "getReceipts" | "sampledTo" | "saveAuditVerdict">;
  logger: Logger;
  /** Called with each verdict kept for the first time. */
  onVerdict?: (verdict: { requestId: Hex; segment: number; verdict: StoredAuditVerdict }) => void;
};

/** Checks a verdict frame from `peerId` and keeps it; throws ProtocolError (nothing kept) when it does not belong here. */
export type VerdictKeeper = (frame: AuditVerdictFrame, peerId: string) => Promise<void>;

/** Creates the function that checks and keeps verdicts. */
export function createVerdictKeeper(parameters: CreateVerdictKeeperParameters): VerdictKeeper {
  const { receipts, logger } = parameters;
  return async (frame, peerId) => {
    const signer = await recoverAuditVerdictSigner(frame).catch(() => undefined);
    if (!signer || signer.toLowerCase() !== frame.validator.toLowerCase())
      throw new ProtocolError("the verdict is not signed by the validator it names", {
        code: "bad_signature",
      });
    const requestId = frame.request_id.toLowerCase() as Hex;
    const segment = receipts
      .getReceipts(requestId)
      .find((entry) => entry.provider.toLowerCase() === frame.provider.toLowerCase())?.segment;
    // Only the validator this segment was sent to may judge it.
    if (segment === undefined || receipts.sampledTo({ requestId, segment }) !== peerId)
      throw new ProtocolError("no answer of this request was sent to this validator", {
        code: "invalid_request",
      });
    const verdict = {
      requestId,
      segment,
      provider: frame.provider as Hex,
      validator: frame.validator as Hex,
      verdict: frame.verdict,
      reasons: frame.reasons,
      metrics: frame.metrics,
      auditedAt: frame.audited_at,
      signature: frame.signature as Hex,
    };
    if (!receipts.saveAuditVerdict(verdict)) return;
    logger.info("audit verdict received", {
      requestId: requestId.slice(0, 18),
      provider: frame.provider,
      verdict: frame.verdict,
    });
    parameters.onVerdict?.({ requestId, segment, verdict: { ...verdict, receivedAt: Date.now() } });
  };
}
