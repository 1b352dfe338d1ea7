/** The gateway's ExplorerInfo, loaded once by the app shell and shared with the pages (token, audit, history). */
import { createContext } from "preact";
import { useContext } from "preact/hooks";
import type { ExplorerInfo } from "../../src/explorer/types.ts";
import type { Token } from "./format.ts";

/** ExplorerInfo once loaded; undefined while it loads (or when it failed, which the app shell shows). */
export const ExplorerInfoContext = createContext<ExplorerInfo | undefined>(undefined);

/** The gateway's ExplorerInfo, or null while it loads. */
export function useExplorerInfo(): ExplorerInfo | null {
  return useContext(ExplorerInfoContext) ?? null;
}

/**
 * The payment token: null without a chain, undefined while the gateway's details are not loaded yet (amounts then
 * show a placeholder, never raw units that would turn into tokens a moment later).
 */
export function useToken(): Token | null | undefined {
  const info = useContext(ExplorerInfoContext);
  return info === undefined ? undefined : (info.chain?.token ?? null);
}
