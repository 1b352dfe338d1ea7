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

/** Validator -> gateway: the verdict on a sample, signed by the validator (EIP-191 over the canonical JSON). */
export const auditVerdictFrameSchema = z
  .object({
    v: version,
    type: z.literal("audit_verdict"),
    request_id: bytes32,
    /** The provider whose answer was audited (the receipt's provider). */
    provider: wireFieldSchemas.address,
    validator: wireFieldSchemas.address,
    verdict: z.enum(["pass", "fail"]),
    reasons: z
      .array(z.object({ code: z.string().min(1).max(64), message: z.string().max(2_000) }).strict())
      .max(32),
    /** The audit's measurements (token counts, worst fingerprint distance...), numbers and short strings. */
    metrics: z.record(z.string().max(64), z.union([z.number(), z.string().max(200), z.boolean(), z.null()])),
    audited_at: z.number().int().min(0),
    signature,
  })
  .strict();

export type AuditVerdictFrame = z.infer<typeof auditVerdictFrameSchema>;

/** Signs a verdict with the validator's key. */
export async function signAuditVerdict(parameters: {
  privateKey: Hex;
  verdict: Omit<AuditVerdictFrame, "signature" | "v" | "type" | "validator">;
}): Promise<AuditVerdictFrame> {
  const account = privateKeyToAccount(parameters.privateKey);
  const unsigned = {
    v: wireVersion as 1,
    type: "audit_verdict" as const,
    ...parameters.verdict,
    validator: account.address,
  };
  const signature = await account.signMessage({ message: canonicalJson(unsigned) });
  return { ...unsigned, signature };
}

/** Recovers the address that signed a verdict (a valid verdict's is its `validator`). */
export async function recoverAuditVerdictSigner(verdict: AuditVerdictFrame): Promise<Hex> {
  const { signature, ...unsigned } = verdict;
  return recoverMessageAddress({ message: canonicalJson(unsigned), signature: signature as Hex });
}
