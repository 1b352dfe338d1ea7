/** The gateway role: the OpenAI-compatible API backed by providers on the network. */

export { EvidenceUnavailableError, fetchEvidence } from "./evidence.ts";
export {
  defaultAuditRate,
  defaultGatewayTimeouts,
  defaultMinimumReputation,
  type Gateway,
  type GatewayActivity,
  type GatewayTimeouts,
  type StartGatewayParameters,
  startGateway,
} from "./gateway.ts";
export { createProviderTable, type KnownProvider, type ProviderTable } from "./providerTable.ts";
export { rankProviders, reputationOf, routingWeights, scoreProvider } from "./routing.ts";
export { ReceiptRejectedError, type VerifyReceiptParameters, verifyReceipt } from "./verifyReceipt.ts";
