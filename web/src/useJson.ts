/** A hook that loads same-origin JSON with {@link getJson}: data, error and loading, reload, optional refresh. */
import { useCallback, useEffect, useState } from "preact/hooks";
import { getJson, messageOf } from "./api.ts";

/** What {@link useJson} returns. */
export type JsonState<T> = {
  /** The latest data; kept while a new path loads, so tables do not flash empty. */
  data: T | undefined;
  /** The server's error message for the latest load, if it failed. */
  error: string | undefined;
  loading: boolean;
  reload(): void;
  /** Changes the data in place (live updates). */
  update(change: (data: T) => T): void;
};

/** Loads `path` (null: nothing) and again whenever it changes, or every `refreshMs` when given. */
export function useJson<T>(path: string | null, parameters: { refreshMs?: number } = {}): JsonState<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [loading, setLoading] = useState(path !== null);
  const [generation, setGeneration] = useState(0);

  // Loads again when the path changes or `generation` is bumped (reload, refresh).
  useEffect(() => {
    if (path === null) {
      setLoading(false);
      return;
    }
    const current = new AbortController();
    setLoading(true);
    getJson<T>(path, { signal: current.signal }).then(
      (value) => {
        if (current.signal.aborted) return;
        setData(value);
        setError(undefined);
        setLoading(false);
      },
      (cause: unknown) => {
        if (current.signal.aborted) return;
        setError(messageOf(cause));
        setLoading(false);
      },
    );
    return () => current.abort();
  }, [path, generation]);

  useEffect(() => {
    if (!parameters.refreshMs || path === null) return;
    const timer = window.setInterval(() => {
      if (document.visibilityState === "visible") setGeneration((value) => value + 1);
    }, parameters.refreshMs);
    return () => window.clearInterval(timer);
  }, [parameters.refreshMs, path]);

  const reload = useCallback(() => setGeneration((value) => value + 1), []);
  const update = useCallback((change: (data: T) => T) => {
    setData((value) => (value === undefined ? value : change(value)));
  }, []);
  return { data, error, loading, reload, update };
}
