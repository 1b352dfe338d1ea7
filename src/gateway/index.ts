/** The gateway role: the OpenAI-compatible API backed by providers on the network. */
export { type ActivityFeed, createActivityFeed, type GatewayActivity } from "./activity.ts";
export { type CreateGatewayBackendParameters, createGatewayBackend, mycelFieldsOf } from "./backend.ts";
export {
  busyRestMs,
  type CapacityPick,
  type CapacityQueue,
  type CreateCapacityQueueParameters,
  capacityOf,
  createCapacityQueue,
  hasRoom,
  restBusyProvider,
} from "./capacity.ts";
export { type Catalog, createCatalog } from "./catalog.ts";
export {
  type Discovery,
  type DiscoveryNode,
  defaultStakedProvidersRefreshMs,
  type StakedProviderRecord,
  type StakedProviderSource,
  type StartDiscoveryParameters,
  startDiscovery,
} from "./discovery.ts";
export {
  defaultRoutingPolicy,
  describeUnroutable,
  effectiveCeiling,
  hasCapabilities,
  isRoutable,
  type RoutableParameters,
  type RoutingPolicy,
  refuseAboveCeiling,
  type UnroutableReason,
  unroutableReason,
  whyNoneRoutable,
} from "./eligibility.ts";
export { answerEmbeddings, embedRequestOf, type GatewayEmbedAnswer } from "./embeddings.ts";
export {
  type AnsweredEvidence,
  answerWithFailover,
  type FailoverContext,
  type GatewayAnswer,
  wireRequestOf,
} from "./failover.ts";
export { classifyFailure, type FailureKind, ProviderBusyError, SegmentFailedError } from "./failures.ts";
export { defaultMaxAttempts, type Gateway, type StartGatewayParameters, startGateway } from "./gateway.ts";
export {
  decodingRate,
  minimumStreamingSpanMs,
  minimumTokensForRate,
  recordLatency,
  recordThroughput,
  type SegmentTiming,
} from "./measurements.ts";
export {
  createProviderTable,
  type KnownProvider,
  type ProviderRegistration,
  type ProviderTable,
} from "./providerTable.ts";
export {
  defaultRegistrationRefreshMs,
  type RegistrationSource,
  type RegistrationWatch,
  watchRegistrations,
} from "./registrations.ts";
export {
  defaultMinimumReputation,
  defaultReputationRefreshMs,
  type ReputationSource,
  type ReputationWatch,
  watchReputation,
} from "./reputation.ts";
export { rankProviders, reputationOf, routingWeights, scoreProvider } from "./routing.ts";
export {
  type AuditSampler,
  type CreateAuditSamplerParameters,
  createAuditSampler,
  defaultAuditRate,
  type SampleCandidate,
} from "./sampling.ts";
export {
  defaultGatewayTimeouts,
  type GatewayTimeouts,
  type RunSegmentParameters,
  runSegment,
  type SegmentCaps,
  type SegmentResult,
  segmentCapsOf,
} from "./segment.ts";
export {
  maxSnapshotPeers,
  type SnapshotOutcome,
  type Snapshots,
  type StakedLookup,
  type StartSnapshotsParameters,
  startSnapshots,
} from "./snapshots.ts";
export { type CreateStandbyParameters, createStandby, type Standby, standbyRetryMs } from "./standby.ts";
export { type CreateVerdictKeeperParameters, createVerdictKeeper, type VerdictKeeper } from "./verdicts.ts";
export { ReceiptRejectedError, type VerifyReceiptParameters, verifyReceipt } from "./verifyReceipt.ts";
