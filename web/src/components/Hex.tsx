/** Addresses, hashes and ids: shortened, monospace, the full value in the title (and for screen readers). */
import { shortHex } from "../format.ts";

/** A hex value shortened to its head and tail, with the full value in `title`. */
export function Hex(props: { value: string | null | undefined; head?: number; tail?: number }) {
  if (!props.value) return <span class="muted">—</span>;
  return (
    <span class="mono" title={props.value}>
      {shortHex(props.value, { head: props.head, tail: props.tail })}
    </span>
  );
}
