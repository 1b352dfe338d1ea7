/** Loading, error and empty states, shared by every page so a failed fetch never leaves a blank page. */
import type { ComponentChildren } from "preact";

/** "Loading…", announced politely. */
export function Loading(props: { what?: string }) {
  return (
    <p class="loading" role="status">
      Loading{props.what ? ` ${props.what}` : ""}…
    </p>
  );
}

/** An error message from the server (or the network), announced at once; optionally with a retry button. */
export function ErrorAlert(props: { message: string; title?: string; onRetry?: () => void }) {
  return (
    <div class="alert" role="alert">
      <strong>{props.title ?? "Error"}:</strong> {props.message}
      {props.onRetry && (
        <button type="button" class="link-button" onClick={props.onRetry}>
          Retry
        </button>
      )}
    </div>
  );
}

/** A short note for an empty table or a missing feature (no chain, nothing yet). */
export function EmptyNote(props: { children: ComponentChildren }) {
  return <p class="empty">{props.children}</p>;
}

/** Loading or error for a {@link useJson} state with no data yet; null once there is data to show. */
export function LoadState(props: {
  loading: boolean;
  error: string | undefined;
  what: string;
  onRetry?: () => void;
}) {
  if (props.error)
    return <ErrorAlert message={props.error} title={`Cannot load ${props.what}`} onRetry={props.onRetry} />;
  if (props.loading) return <Loading what={props.what} />;
  return null;
}
