/**
 * Mycel's wire protocols as services, the js-libp2p way: one folder per protocol with its name and limits
 * (`constants.ts`), a server and a client, all on one frame-stream skeleton (`framed/`) and one table of wire
 * error codes (protocol/wireErrors.ts) that both sides use.
 */
export * from "./announcement/index.ts";
export * from "./audit/index.ts";
export * from "./evidence/index.ts";
export * from "./framed/index.ts";
export * from "./infer/index.ts";
export * from "./verdict/index.ts";
