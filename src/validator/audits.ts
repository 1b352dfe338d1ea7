/**
 * Auditing one answer: fetch the provider's evidence (a few tries; none counts as a failed audit), re-evaluate it
 * with the claimed model against the receipt the client holds, store the verdict, and report a provable cheat.
 */
import { getAddress, type Hex } from "viem";
import { describeError, InvalidInputError, ModelNotFoundError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type {
  AuditInput,
  AuditSampleFrame,
  EvidenceFrame,
  InferenceRequest,
  SignedReceipt,
} from "../protocol/index.ts";
import { type FramedComponents, fetchEvidence } from "../protocols/index.ts";
import type { AuditStore } from "../store/index.ts";
import type { Auditor, AuditVerdict } from "../verify/index.ts";
import { isSlashable } from "./scores.ts";

/** An answer to audit: sampled by a gateway, or the answer to a challenge of the validator's own. */
export type AuditSample = {
  requestId: Hex;
  providerPeerId: string;
  /** The request as the gateway sent it (challenges take it from the evidence). */
  request?: InferenceRequest;
  receipt: SignedReceipt;
  /** The sample signed by the receipt's client, shown to the provider to be handed the evidence. */
  signedSample: AuditSampleFrame;
  source: "sample" | "challenge";
  /** The gateway peer that sent the sample: the verdict goes back to it. */
  fromPeer?: string;
};

/** Parameters of {@link createSampleAuditor}. */
export type CreateSampleAuditorParameters = {
  components: FramedComponents;
  auditor: Pick<Auditor, "audit">;
  store: Pick<AuditStore, "saveAudit">;
  /** How often a provider is asked for evidence before it counts as withheld. */
  evidenceAttempts: number;
  /** Called with each provable cheat stored for the first time. */
  onSlashable: (parameters: { provider: Hex; input: AuditInput }) => Promise<void>;
  logger: Logger;
};

/** Audits one sample; undefined when the answer cannot be audited here (a model this validator lacks). */
export type SampleAuditor = (sample: AuditSample) => Promise<AuditVerdict | undefined>;

/** Creates the function that audits samples. */
export function createSampleAuditor(parameters: CreateSampleAuditorParameters): SampleAuditor {
  const { store, logger } = parameters;

  /** The provider's evidence of a sample (a few tries), or why there is none. */
  async function evidenceOf(sample: AuditSample): Promise<EvidenceFrame | string> {
    let lastError = "";
    for (let attempt = 0; attempt < parameters.evidenceAttempts; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 1_000 * attempt));
      try {
        return await fetchEvidence(parameters.components, {
          providerPeerId: sample.providerPeerId,
          requestId: sample.requestId,
          sample: sample.signedSample,
        });
      } catch (error) {
        lastError = describeError(error);
      }
    }
    return lastError;
  }

  function withheld(sample: AuditSample, provider: Hex, why: string): AuditVerdict {
    logger.warn("evidence unavailable: recorded as a failed audit", { provider, error: why });
    const verdict: AuditVerdict = {
      verdict: "fail",
      reasons: [{ code: "evidence_unavailable", message: `the provider did not hand over evidence: ${why}` }],
      metrics: {} as AuditVerdict["metrics"],
    };
    store.saveAudit({
      requestId: sample.requestId,
      provider,
      modelHash: sample.receipt.message.modelHash as Hex,
      verdict: "fail",
      reasons: verdict.reasons,
      metrics: {},
      source: sample.source,
      input: { request: sample.request, receipt: sample.receipt },
    });
    return verdict;
  }

  return async (sample) => {
    const provider = getAddress(sample.receipt.message.provider);
    const fetched = await evidenceOf(sample);
    if (typeof fetched === "string") return withheld(sample, provider, fetched);
    // The receipt the client holds is what is audited: evidence that does not match it fails on the commitment.
    const input: AuditInput = {
      modelHash: sample.receipt.message.modelHash,
      request: sample.request ?? fetched.request,
      promptTokens: fetched.evidence.promptTokens,
      outputTokens: fetched.evidence.outputTokens,
      fingerprints: fetched.evidence.fingerprints,
      finishReason: fetched.evidence.finishReason,
      ...(fetched.evidence.textHash === undefined ? {} : { textHash: fetched.evidence.textHash }),
      ...(fetched.evidence.decoding === undefined ? {} : { decoding: fetched.evidence.decoding }),
      receipt: sample.receipt,
    };
    let verdict: AuditVerdict;
    try {
      verdict = await parameters.auditor.audit(input);
    } catch (error) {
      if (error instanceof ModelNotFoundError || error instanceof InvalidInputError) {
        logger.warn("cannot audit this answer", { provider, error: error.shortMessage });
        return undefined;
      }
      throw error;
    }
    const saved = store.saveAudit({
      requestId: sample.requestId,
      provider,
      modelHash: input.modelHash as Hex,
      verdict: verdict.verdict,
      reasons: verdict.reasons,
      metrics: verdict.metrics,
      source: sample.source,
      input,
    });
    logger.info("audited", {
      provider,
      source: sample.source,
      verdict: verdict.verdict,
      reasons: verdict.reasons.map((reason) => reason.code).join(",") || undefined,
      outputTokens: verdict.metrics.outputTokens,
      worstChunkGapError: verdict.metrics.worstChunkGapError,
    });
    if (saved && verdict.verdict === "fail" && isSlashable(verdict.reasons))
      await parameters
        .onSlashable({ provider, input })
        .catch((error) => logger.warn("slashing proposal failed", { provider, error: describeError(error) }));
    return verdict;
  };
}
