/**
 * `/mycel/verdict/1.0.0`: after auditing a sample, a validator hands its signed verdict back to the gateway that
 * sent it. One frame, no answer.
 *
 * @example
 * ```ts
 * await serveVerdicts({ node }, { accept: async (verdict, peerId) => keep(verdict, peerId) });
 * await sendVerdict({ node }, { gatewayPeerId, verdict: await signAuditVerdict({ privateKey, verdict }) });
 * ```
 */
export { type SendVerdictParameters, sendVerdict } from "./client.ts";
export { defaultVerdictLimits, type VerdictLimits, verdictProtocolId } from "./constants.ts";
export { type ServeVerdictsParameters, serveVerdicts } from "./server.ts";
