/** The app shell: skip link, header (name, navigation, gateway, live state) and the page for the current route. */
import { useEffect, useRef, useState } from "preact/hooks";
import type { ExplorerInfo } from "../../src/explorer/types.ts";
import { onKeyNeeded, saveApiKey, storedApiKey, wasKeyNeeded } from "./apiKey.ts";
import { Hex } from "./components/Hex.tsx";
import { ErrorAlert } from "./components/Status.tsx";
import { type EventHub, EventHubContext, type LiveState, useLiveState } from "./events.ts";
import { ExplorerInfoContext } from "./explorerInfo.ts";
import { shortHex } from "./format.ts";
import { ModelsPage } from "./pages/ModelsPage.tsx";
import { NetworkPage } from "./pages/NetworkPage.tsx";
import { PaymentsPage } from "./pages/PaymentsPage.tsx";
import { PlaygroundPage } from "./pages/PlaygroundPage.tsx";
import { ReceiptDetailPage } from "./pages/ReceiptDetailPage.tsx";
import { ReceiptsPage } from "./pages/ReceiptsPage.tsx";
import { ValidatorsPage } from "./pages/ValidatorsPage.tsx";
import { hrefOf, pages, type Route, useRoute } from "./router.ts";
import { useJson } from "./useJson.ts";

const productName = "Mycel Explorer";

const liveLabels: Record<LiveState, string> = {
  connecting: "connecting",
  connected: "live",
  reconnecting: "reconnecting",
  unavailable: "not live",
};

/** The page title of a route: "Network · Mycel Explorer". */
export function titleOf(route: Route): string {
  if (route.page === "not-found") return `Not found · ${productName}`;
  if (route.page === "receipts" && route.requestId)
    return `Receipt ${shortHex(route.requestId)} · ${productName}`;
  const page = pages.find((entry) => entry.id === route.page);
  return `${page?.label ?? "Page"} · ${productName}`;
}

function LiveIndicator() {
  const state = useLiveState();
  return (
    <span class={`live live-${state}`} role="status" title="Live updates from the gateway (/mycel/v1/events)">
      <span class="live-dot" aria-hidden="true" />
      {liveLabels[state]}
    </span>
  );
}

/** The form that asks for an API key once the gateway refused a request for want of one. */
function ApiKeyForm() {
  const [needed, setNeeded] = useState(wasKeyNeeded());
  const [value, setValue] = useState("");
  useEffect(() => {
    setNeeded(wasKeyNeeded());
    return onKeyNeeded(() => setNeeded(true));
  }, []);
  if (!needed) return null;
  const refused = storedApiKey() !== undefined;
  return (
    <div class="banner">
      <form
        class="key-form"
        aria-labelledby="key-form-title"
        onSubmit={(event) => {
          event.preventDefault();
          saveApiKey(value);
          // Everything loads again with the key, the live feed included.
          window.location.reload();
        }}
      >
        <h2 id="key-form-title">This gateway needs an API key</h2>
        <p>
          {refused
            ? "The gateway refused the key this tab holds (wrong or revoked): enter another. "
            : "Enter the key the gateway's operator gave you (mycel_sk_...). "}
          It is kept in this tab only and sent with each request, never in a URL.
        </p>
        <label>
          API key{" "}
          <input
            type="password"
            class="key-input"
            name="api-key"
            autoComplete="off"
            spellcheck={false}
            required
            value={value}
            onInput={(event) => setValue((event.target as HTMLInputElement).value)}
          />
        </label>{" "}
        <button type="submit">Use this key</button>
      </form>
    </div>
  );
}

function PageFor(props: { route: Route }) {
  const { route } = props;
  switch (route.page) {
    case "network":
      return <NetworkPage />;
    case "models":
      return <ModelsPage />;
    case "playground":
      return <PlaygroundPage />;
    case "receipts":
      return route.requestId ? <ReceiptDetailPage requestId={route.requestId} /> : <ReceiptsPage />;
    case "payments":
      return <PaymentsPage />;
    case "validators":
      return <ValidatorsPage />;
    default:
      return (
        <section>
          <h1>Page not found</h1>
          <ErrorAlert message={`There is no page at ${route.path}.`} title="Not found" />
          <p>
            <a href="#/network">Go to the network overview</a>
          </p>
        </section>
      );
  }
}

/** The whole app. */
export function App(props: { hub: EventHub }) {
  const route = useRoute();
  const info = useJson<ExplorerInfo>("/mycel/v1/explorer");
  const main = useRef<HTMLElement>(null);
  const title = titleOf(route);
  const firstRoute = useRef(true);

  // On each new page: its title, and focus on the main region so keyboard and screen reader users start there.
  useEffect(() => {
    document.title = title;
    if (firstRoute.current) {
      firstRoute.current = false;
      return;
    }
    main.current?.focus({ preventScroll: false });
    window.scrollTo(0, 0);
  }, [title]);

  const activePage = route.page === "not-found" ? undefined : route.page;
  return (
    <EventHubContext.Provider value={props.hub}>
      <ExplorerInfoContext.Provider value={info.data}>
        <a class="skip-link" href="#content">
          Skip to content
        </a>
        <header class="site-header">
          <div class="brand">
            <a href="#/network" class="brand-name">
              {productName}
            </a>
            <span class="gateway">
              gateway{" "}
              {info.data ? <Hex value={info.data.gateway.address} /> : info.error ? "unreachable" : "…"}
              {info.data && !info.data.chain && <span class="muted"> · no chain</span>}
            </span>
            <LiveIndicator />
          </div>
          <nav aria-label="Main">
            <ul>
              {pages.map((page) => (
                <li key={page.id}>
                  <a
                    href={hrefOf({ page: page.id })}
                    aria-current={page.id === activePage ? "page" : undefined}
                  >
                    {page.label}
                  </a>
                </li>
              ))}
            </ul>
          </nav>
        </header>
        <ApiKeyForm />
        {info.error && (
          <div class="banner">
            <ErrorAlert
              title="Cannot load the gateway's details"
              message={info.error}
              onRetry={info.reload}
            />
          </div>
        )}
        <main id="content" tabIndex={-1} ref={main}>
          <PageFor route={route} />
        </main>
      </ExplorerInfoContext.Provider>
    </EventHubContext.Provider>
  );
}
