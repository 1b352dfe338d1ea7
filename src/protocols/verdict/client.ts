/** The validator's side of `/mycel/verdict/1.0.0`: hand a signed verdict to the gateway that sent the sample. */
import type { AuditVerdictFrame } from "../../protocol/index.ts";
import { type FramedComponents, withFramedStream } from "../framed/index.ts";
import {
  defaultVerdictLimits,
  type VerdictLimits,
  verdictProtocolId,
  verdictRunsOnLimitedConnection,
} from "./constants.ts";

/** Parameters of {@link sendVerdict}. */
export type SendVerdictParameters = {
  gatewayPeerId: string;
  verdict: AuditVerdictFrame;
  limits?: Partial<VerdictLimits>;
};

/** Sends a verdict; resolves once it is written (the gateway answers nothing). */
export async function sendVerdict(
  components: FramedComponents,
  parameters: SendVerdictParameters,
): Promise<void> {
  const limits = { ...defaultVerdictLimits, ...parameters.limits };
  await withFramedStream(
    components,
    {
      peerId: parameters.gatewayPeerId,
      protocol: verdictProtocolId,
      runOnLimitedConnection: verdictRunsOnLimitedConnection,
      maxFrameBytes: limits.maxFrameBytes,
      openTimeoutMs: limits.openTimeoutMs,
    },
    (channel) => channel.write(parameters.verdict),
  );
}
