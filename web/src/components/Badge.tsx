/** Small coloured labels for states: provider status, audit verdicts, channel states. */
import type { ComponentChildren } from "preact";

/** The tone of a badge (its colours are in styles.css). */
export type BadgeTone = "good" | "bad" | "warn" | "neutral" | "info";

/** A label with a tone; the text itself carries the meaning (colour is only a hint). */
export function Badge(props: { tone: BadgeTone; children: ComponentChildren; title?: string }) {
  return (
    <span class={`badge badge-${props.tone}`} title={props.title}>
      {props.children}
    </span>
  );
}
