/** The explorer part: the web app's JSON views, live events and static files, served by a gateway. */
export { chainViewLimits } from "./chainView.ts";
export { maxEventClients } from "./eventStream.ts";
export { type CreateExplorerParameters, createExplorer, type Explorer } from "./explorer.ts";
export {
  describeProvider,
  describeProviders,
  describeUsage,
  summarizeGatewayPayments,
} from "./gatewayViews.ts";
export {
  createNetworkHistory,
  defaultHistoryOptions,
  type HistorySource,
} from "./history.ts";
export { createNetworkViews, type ExplorerChain } from "./networkViews.ts";
export { createReceiptViews, maxReceiptsPage, toAuditSummary } from "./receiptViews.ts";
export { defaultExplorerDirectory, explorerContentSecurityPolicy } from "./staticFiles.ts";
export type * from "./types.ts";
