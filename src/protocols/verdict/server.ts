/** The gateway's side of `/mycel/verdict/1.0.0`: one signed verdict in, nothing out. */
import { type AuditVerdictFrame, auditVerdictFrameSchema, parseFrame } from "../../protocol/index.ts";
import { type FramedComponents, serveFramed } from "../framed/index.ts";
import {
  defaultVerdictLimits,
  type VerdictLimits,
  verdictProtocolId,
  verdictRunsOnLimitedConnection,
} from "./constants.ts";

/** Parameters of {@link serveVerdicts}. */
export type ServeVerdictsParameters = {
  /** Checks and keeps a verdict; what it throws is logged and answered with an error frame. */
  accept: (verdict: AuditVerdictFrame, peerId: string) => Promise<void>;
  limits?: Partial<VerdictLimits>;
};

/** Takes verdicts that validators hand back. */
export async function serveVerdicts(
  components: FramedComponents,
  parameters: ServeVerdictsParameters,
): Promise<void> {
  const limits = { ...defaultVerdictLimits, ...parameters.limits };
  await serveFramed(components, {
    protocol: verdictProtocolId,
    runOnLimitedConnection: verdictRunsOnLimitedConnection,
    limits,
    serve: async (channel, peerId) => {
      const value = await channel.read({ timeoutMs: limits.verdictTimeoutMs });
      if (value === undefined) return;
      await parameters.accept(parseFrame(auditVerdictFrameSchema, value), peerId);
    },
  });
}
