/** What the pages show for a provider that validators have not scored on chain yet. */

/** "not scored", muted, saying how gateways treat such a provider. */
export function NotScored() {
  return (
    <span class="muted" title="gateways route to unscored providers as if at 100%">
      not scored
    </span>
  );
}
