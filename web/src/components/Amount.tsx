/** A token amount, formatted for reading with the exact value in its title. */
import { exactAmount, formatAmount, type Token } from "../format.ts";

/** An amount in the token's smallest unit: "0.000123 MYC" (exact value on hover). */
export function Amount(props: { value: string | null | undefined; token: Token | null }) {
  const { value, token } = props;
  const title =
    value && token ? `${exactAmount(value, token.decimals)} ${token.symbol}` : (value ?? undefined);
  return (
    <span class="num" title={title}>
      {formatAmount(value, token)}
    </span>
  );
}
