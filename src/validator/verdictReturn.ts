/** Hands a sample's verdict, signed, back to the gateway that sent it (best effort: the validator keeps it anyway). */
import { getAddress, type Hex } from "viem";
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import { type SignedReceipt, signAuditVerdict } from "../protocol/index.ts";
import { type FramedComponents, sendVerdict } from "../protocols/index.ts";
import type { AuditVerdict } from "../verify/index.ts";

/** Audit metrics as a flat record of JSON primitives (nested objects as dotted keys), as verdict frames carry them. */
export function flatMetrics(metrics: object, prefix = ""): Record<string, number | string | boolean | null> {
  const flat: Record<string, number | string | boolean | null> = {};
  for (const [key, value] of Object.entries(metrics)) {
    const name = `${prefix}${key}`;
    if (value !== null && typeof value === "object") Object.assign(flat, flatMetrics(value, `${name}.`));
    else if (typeof value === "number") flat[name] = Number.isFinite(value) ? value : null;
    else if (typeof value === "string") flat[name] = value.slice(0, 200);
    else if (typeof value === "boolean" || value === null) flat[name] = value;
  }
  return flat;
}

/** Signs the verdict on a sample and sends it to `gatewayPeerId`; failures are logged, never thrown. */
export async function returnVerdict(
  components: FramedComponents & { logger: Logger },
  parameters: {
    privateKey: Hex;
    gatewayPeerId: string;
    requestId: Hex;
    receipt: SignedReceipt;
    verdict: AuditVerdict;
  },
): Promise<void> {
  const { verdict } = parameters;
  try {
    const frame = await signAuditVerdict({
      privateKey: parameters.privateKey,
      verdict: {
        request_id: parameters.requestId,
        provider: getAddress(parameters.receipt.message.provider),
        verdict: verdict.verdict,
        reasons: verdict.reasons
          .slice(0, 32)
          .map((reason) => ({ code: reason.code, message: reason.message.slice(0, 2_000) })),
        metrics: flatMetrics(verdict.metrics),
        audited_at: Date.now(),
      },
    });
    await sendVerdict(components, { gatewayPeerId: parameters.gatewayPeerId, verdict: frame });
  } catch (error) {
    components.logger.debug("verdict not handed back", {
      peer: parameters.gatewayPeerId,
      error: describeError(error),
    });
  }
}
