/** The gateway's side of `/mycel/audit/1.0.0`: hand a validator a signed sample. */
import { type AuditSampleFrame, auditAcceptedFrameSchema } from "../../protocol/index.ts";
import { type FramedComponents, readReply, withFramedStream } from "../framed/index.ts";
import {
  type AuditSampleLimits,
  auditProtocolId,
  auditRunsOnLimitedConnection,
  defaultAuditSampleLimits,
} from "./constants.ts";

/** Parameters of {@link sendAuditSample}. */
export type SendAuditSampleParameters = {
  validatorPeerId: string;
  sample: AuditSampleFrame;
  limits?: Partial<AuditSampleLimits>;
};

/** Sends a sample; resolves once the validator took it, throws WireError when it refused it. */
export async function sendAuditSample(
  components: FramedComponents,
  parameters: SendAuditSampleParameters,
): Promise<void> {
  const limits = { ...defaultAuditSampleLimits, ...parameters.limits };
  await withFramedStream(
    components,
    {
      peerId: parameters.validatorPeerId,
      protocol: auditProtocolId,
      runOnLimitedConnection: auditRunsOnLimitedConnection,
      maxFrameBytes: limits.maxFrameBytes,
      openTimeoutMs: limits.replyTimeoutMs,
    },
    async (channel) => {
      await channel.write(parameters.sample);
      await readReply(channel, auditAcceptedFrameSchema, {
        protocol: auditProtocolId,
        timeoutMs: limits.replyTimeoutMs,
      });
    },
  );
}
