/** A token amount, formatted for reading with the exact value in its title. */
import { exactAmount, formatAmount, type Token } from "../format.ts";

/**
 * An amount in the token's smallest unit: "0.000123 MYC" (exact value on hover). `token` is null without a chain
 * (raw units) and undefined while the token is not known yet: then a placeholder, never a raw amount.
 */
export function Amount(props: { value: string | null | undefined; token: Token | null | undefined }) {
  const { value, token } = props;
  if (token === undefined)
    return (
      <span class="num muted amount-loading" title="Loading the token's symbol and decimals">
        …
      </span>
    );
  const title =
    value && token ? `${exactAmount(value, token.decimals)} ${token.symbol}` : (value ?? undefined);
  return (
    <span class="num" title={title}>
      {formatAmount(value, token)}
    </span>
  );
}
