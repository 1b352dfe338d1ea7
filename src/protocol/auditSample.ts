/**
 * Audit samples: a gateway hands a validator an answer to audit on `/mycel/audit/1.0.0`. The sample is signed by
 * the gateway (the receipt's client), so a validator audits only answers their clients vouch for. Pure code.
 */
import { type Hex, recoverMessageAddress } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { z } from "zod";
import { canonicalJson } from "./canonicalJson.ts";
import { wireVersion } from "./constants.ts";
import { inferenceRequestSchema, wireFieldSchemas } from "./frames.ts";
import { signedReceiptSchema } from "./receipt.ts";

const { bytes32, signature, version } = wireFieldSchemas;

/** Gateway -> validator: one answer to audit. The validator fetches the evidence from the provider. */
export const auditSampleFrameSchema = z
  .object({
    v: version,
    type: z.literal("audit_sample"),
    request_id: bytes32,
    /** The provider's libp2p peer id, to fetch the evidence from. */
    provider_peer_id: z.string().min(1).max(128),
    request: inferenceRequestSchema,
    receipt: signedReceiptSchema,
    /** EIP-191 signature by the receipt's client over the canonical JSON of the other fields. */
    signature,
  })
  .strict();

/** Validator -> gateway: the sample was taken (audited later) or refused (an error frame). */
export const auditAcceptedFrameSchema = z.object({ v: version, type: z.literal("audit_accepted") }).strict();

export type AuditSampleFrame = z.infer<typeof auditSampleFrameSchema>;

/** Signs a sample with the gateway's key (the receipt's client). */
export async function signAuditSample(parameters: {
  privateKey: Hex;
  sample: Omit<AuditSampleFrame, "signature" | "v" | "type">;
}): Promise<AuditSampleFrame> {
  const unsigned = { v: wireVersion as 1, type: "audit_sample" as const, ...parameters.sample };
  const signature = await privateKeyToAccount(parameters.privateKey).signMessage({
    message: canonicalJson(unsigned),
  });
  return { ...unsigned, signature };
}

/** Recovers the address that signed a sample. */
export async function recoverAuditSampleSigner(sample: AuditSampleFrame): Promise<Hex> {
  const { signature, ...unsigned } = sample;
  return recoverMessageAddress({ message: canonicalJson(unsigned), signature: signature as Hex });
}
