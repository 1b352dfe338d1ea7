/**
 * The explorer's live feed: one stream of server-sent events on /mycel/v1/events for the whole app, which pages
 * subscribe to by event type. It is read with fetch, not EventSource, so that it carries the API key as an
 * Authorization header (EventSource sends no headers, and a key in the URL would end up in logs). When the stream
 * ends or fails, the hub opens a new one after a pause. The connection state is shown in the header.
 */
import { createContext } from "preact";
import { useContext, useEffect, useRef, useState } from "preact/hooks";
import type { ExplorerEvent } from "../../src/explorer/types.ts";
import { announceKeyNeeded, authHeaders } from "./apiKey.ts";

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

/** One event of a server-sent event stream: its type, data, and any `retry:` the server asked for. */
function parseEventBlock(block: string): { event: string; data: string; retryMs?: number } {
  let event = "message";
  const data: string[] = [];
  let retryMs: number | undefined;
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) retryMs = Number(value);
  }
  return { event, data: data.join("\n"), retryMs };
}

/** Opens the live feed at `url` (default /mycel/v1/events). */
export function createEventHub(parameters: { url?: string; retryMs?: number } = {}): EventHub {
  const url = parameters.url ?? "/mycel/v1/events";
  let retryMs = parameters.retryMs ?? 5000;
  const listeners = new Map<ExplorerEventType, Set<(data: never) => void>>();
  const stateListeners = new Set<(state: LiveState) => void>();
  let state: LiveState = "connecting";
  let controller: AbortController | undefined;
  let retry: number | undefined;
  let closed = false;

  const setState = (next: LiveState) => {
    if (next === state) return;
    state = next;
    for (const listener of stateListeners) listener(next);
  };

  const dispatch = (block: string) => {
    const event = parseEventBlock(block);
    if (event.retryMs !== undefined) retryMs = event.retryMs;
    const type = event.event as ExplorerEventType;
    if (!eventTypes.includes(type) || !event.data) return;
    let data: unknown;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    for (const listener of listeners.get(type) ?? []) (listener as (data: unknown) => void)(data);
  };

  const read = async (current: AbortController) => {
    const response = await fetch(url, {
      headers: { accept: "text/event-stream", ...authHeaders() },
      cache: "no-store",
      signal: current.signal,
    });
    if (response.status === 401) announceKeyNeeded();
    if (!response.ok || !response.body) throw new Error(`the live feed answered ${response.status}`);
    setState("connected");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffered += value;
      for (let end = buffered.search(/\r?\n\r?\n/); end >= 0; end = buffered.search(/\r?\n\r?\n/)) {
        const separator = /\r?\n\r?\n/.exec(buffered.slice(end))?.[0].length ?? 2;
        dispatch(buffered.slice(0, end));
        buffered = buffered.slice(end + separator);
      }
    }
  };

  const open = () => {
    if (closed) return;
    if (typeof fetch === "undefined" || typeof TextDecoderStream === "undefined") {
      setState("unavailable");
      return;
    }
    const current = new AbortController();
    controller = current;
    read(current)
      .catch(() => undefined)
      .then(() => {
        if (closed || current.signal.aborted) return;
        setState("reconnecting");
        retry = window.setTimeout(open, retryMs);
      });
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
      controller?.abort();
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
