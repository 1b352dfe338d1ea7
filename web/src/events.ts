/**
 * The explorer's live feed: one EventSource on /mycel/v1/events for the whole app, which pages subscribe to by
 * event type. EventSource reconnects by itself; when the browser gives up (the server answered with an error) the
 * hub opens a new one after a pause. The connection state is shown in the header.
 */
import { createContext } from "preact";
import { useContext, useEffect, useRef, useState } from "preact/hooks";
import type { ExplorerEvent } from "../../src/explorer/types.ts";

/** The type names of the explorer's events. */
export type ExplorerEventType = ExplorerEvent["type"];
/** The data of one event type. */
export type ExplorerEventData<K extends ExplorerEventType> = Extract<ExplorerEvent, { type: K }>["data"];
/** Where the live feed stands. */
export type LiveState = "connecting" | "connected" | "reconnecting" | "unavailable";

/** The shared live feed. */
export type EventHub = {
  /** Calls `listener` with each event of `type`; returns the unsubscribe function. */
  subscribe<K extends ExplorerEventType>(type: K, listener: (data: ExplorerEventData<K>) => void): () => void;
  /** Calls `listener` on each state change; returns the unsubscribe function. */
  onState(listener: (state: LiveState) => void): () => void;
  state(): LiveState;
  close(): void;
};

const eventTypes: readonly ExplorerEventType[] = ["providers", "history", "receipt", "audit"];

/** Opens the live feed at `url` (default /mycel/v1/events). */
export function createEventHub(parameters: { url?: string; retryMs?: number } = {}): EventHub {
  const url = parameters.url ?? "/mycel/v1/events";
  const retryMs = parameters.retryMs ?? 5000;
  const listeners = new Map<ExplorerEventType, Set<(data: never) => void>>();
  const stateListeners = new Set<(state: LiveState) => void>();
  let state: LiveState = "connecting";
  let source: EventSource | undefined;
  let retry: number | undefined;
  let closed = false;

  const setState = (next: LiveState) => {
    if (next === state) return;
    state = next;
    for (const listener of stateListeners) listener(next);
  };

  const dispatch = (type: ExplorerEventType, event: MessageEvent<string>) => {
    let data: unknown;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    for (const listener of listeners.get(type) ?? []) (listener as (data: unknown) => void)(data);
  };

  const open = () => {
    if (closed) return;
    if (typeof EventSource === "undefined") {
      setState("unavailable");
      return;
    }
    const current = new EventSource(url);
    source = current;
    current.onopen = () => setState("connected");
    current.onerror = () => {
      if (current.readyState === EventSource.CLOSED) {
        // The browser does not retry after an HTTP error: try again later with a fresh EventSource.
        current.close();
        setState("reconnecting");
        retry = window.setTimeout(open, retryMs);
      } else setState("reconnecting");
    };
    for (const type of eventTypes)
      current.addEventListener(type, (event) => dispatch(type, event as MessageEvent<string>));
  };
  open();

  return {
    subscribe(type, listener) {
      let set = listeners.get(type);
      if (!set) {
        set = new Set();
        listeners.set(type, set);
      }
      const entry = listener as (data: never) => void;
      set.add(entry);
      return () => set.delete(entry);
    },
    onState(listener) {
      stateListeners.add(listener);
      return () => stateListeners.delete(listener);
    },
    state: () => state,
    close() {
      closed = true;
      window.clearTimeout(retry);
      source?.close();
    },
  };
}

/** The app's live feed (provided once by the app shell). */
export const EventHubContext = createContext<EventHub | null>(null);

/** Calls `listener` for each live event of `type` while the component is mounted (latest listener wins). */
export function useExplorerEvent<K extends ExplorerEventType>(
  type: K,
  listener: (data: ExplorerEventData<K>) => void,
): void {
  const hub = useContext(EventHubContext);
  const latest = useRef(listener);
  latest.current = listener;
  useEffect(() => hub?.subscribe(type, (data) => latest.current(data)), [hub, type]);
}

/** The live feed's state, updated as it changes. */
export function useLiveState(): LiveState {
  const hub = useContext(EventHubContext);
  const [state, setState] = useState<LiveState>(hub?.state() ?? "unavailable");
  useEffect(() => {
    if (!hub) return;
    setState(hub.state());
    return hub.onState(setState);
  }, [hub]);
  return state;
}
