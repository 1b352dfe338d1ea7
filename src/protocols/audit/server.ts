/** The validator's side of `/mycel/audit/1.0.0`: one signed sample in, `audit_accepted` (or an error) out. */
import {
  type AuditSampleFrame,
  auditSampleFrameSchema,
  parseFrame,
  wireVersion,
} from "../../protocol/index.ts";
import { type FramedComponents, serveFramed } from "../framed/index.ts";
import {
  type AuditSampleLimits,
  auditProtocolId,
  auditRunsOnLimitedConnection,
  defaultAuditSampleLimits,
} from "./constants.ts";

/** Parameters of {@link serveAuditSamples}. */
export type ServeAuditSamplesParameters = {
  /**
   * Checks a sample and queues its audit; throws a MycelError with a wire code (bad_signature, busy...) to refuse
   * it. Resolves once the sample is taken: the audit runs later.
   */
  accept: (sample: AuditSampleFrame, peerId: string) => Promise<void>;
  limits?: Partial<AuditSampleLimits>;
};

/** Takes audit samples from gateways. */
export async function serveAuditSamples(
  components: FramedComponents,
  parameters: ServeAuditSamplesParameters,
): Promise<void> {
  const limits = { ...defaultAuditSampleLimits, ...parameters.limits };
  await serveFramed(components, {
    protocol: auditProtocolId,
    runOnLimitedConnection: auditRunsOnLimitedConnection,
    limits,
    serve: async (channel, peerId) => {
      const value = await channel.read({ timeoutMs: limits.sampleTimeoutMs });
      if (value === undefined) return;
      await parameters.accept(parseFrame(auditSampleFrameSchema, value), peerId);
      await channel.write({ v: wireVersion, type: "audit_accepted" });
    },
  });
}
