/** Hash routing: #/network, #/models, #/playground, #/receipts, #/receipts/<request id>, #/payments, #/validators. */
import { useEffect, useState } from "preact/hooks";

/** The app's pages, in navigation order. */
export const pages = [
  { id: "network", label: "Network" },
  { id: "models", label: "Models" },
  { id: "playground", label: "Playground" },
  { id: "receipts", label: "Receipts" },
  { id: "payments", label: "Payments" },
  { id: "validators", label: "Validators" },
] as const;

/** One page's id. */
export type PageId = (typeof pages)[number]["id"];

/** Where the app is: a page, a receipt's detail, or an unknown address. */
export type Route =
  | { page: Exclude<PageId, "receipts"> }
  | { page: "receipts"; requestId?: string }
  | { page: "not-found"; path: string };

/** The default page, for an empty hash. */
export const defaultHash = "#/network";

/** Parses a location hash ("#/receipts/0xabc") into a route. */
export function parseHash(hash: string): Route {
  const path = hash.replace(/^#\/?/, "");
  const [first = "", second, ...rest] = path.split("/");
  if (first === "") return { page: "network" };
  if (first === "receipts" && second && rest.length === 0) {
    return { page: "receipts", requestId: decodeURIComponent(second) };
  }
  if (second === undefined || second === "") {
    const page = pages.find((entry) => entry.id === first);
    if (page) return { page: page.id } as Route;
  }
  return { page: "not-found", path: `/${path}` };
}

/** The href of a page or a receipt. */
export function hrefOf(route: { page: PageId; requestId?: string }): string {
  return route.requestId ? `#/receipts/${encodeURIComponent(route.requestId)}` : `#/${route.page}`;
}

/** The current route, following hash changes. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(window.location.hash));
  useEffect(() => {
    let routeHash = window.location.hash.startsWith("#/") ? window.location.hash : defaultHash;
    const onChange = () => {
      const hash = window.location.hash;
      if (hash.length > 1 && !hash.startsWith("#/")) {
        // An in-page link such as "Skip to content" (#content): focus its target and stay on this page.
        history.replaceState(null, "", routeHash);
        document.getElementById(decodeURIComponent(hash.slice(1)))?.focus();
        return;
      }
      routeHash = hash || defaultHash;
      setRoute(parseHash(hash));
    };
    if (window.location.hash !== routeHash) {
      history.replaceState(null, "", routeHash);
      setRoute(parseHash(routeHash));
    }
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}
