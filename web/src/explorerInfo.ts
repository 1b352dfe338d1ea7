/** The gateway's ExplorerInfo, loaded once by the app shell and shared with the pages (token, audit, history). */
import { createContext } from "preact";
import { useContext } from "preact/hooks";
import type { ExplorerInfo } from "../../src/explorer/types.ts";
import type { Token } from "./format.ts";

/** ExplorerInfo once loaded (null before, or when it failed). */
export const ExplorerInfoContext = createContext<ExplorerInfo | null>(null);

/** The gateway's ExplorerInfo, or null while it loads. */
export function useExplorerInfo(): ExplorerInfo | null {
  return useContext(ExplorerInfoContext);
}

/** The payment token, or null without a chain (or before ExplorerInfo loaded). */
export function useToken(): Token | null {
  return useContext(ExplorerInfoContext)?.chain?.token ?? null;
}
