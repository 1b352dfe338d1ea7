/** The explorer part: the web app's JSON views, live events and static files, served by a gateway. */
export { chainViewLimits } from "./chainView.ts";
export { maxEventClients } from "./eventStream.ts";
export { type CreateExplorerParameters, createExplorer, type Explorer, maxReceiptsPage } from "./explorer.ts";
export { defaultHistoryOptions } from "./history.ts";
export { defaultExplorerDirectory, explorerContentSecurityPolicy } from "./staticFiles.ts";
export type * from "./types.ts";
