/** Formatting for the explorer: token amounts (exact, with BigInt), hex, times, percentages and numbers. */

/** The payment token an amount is in (from ExplorerInfo.chain.token or PaymentsView.token). */
export type Token = { symbol: string; decimals: number };

/** Shown where a value is missing or not measured yet. */
export const none = "—";

const integerPattern = /^-?\d+$/;

function groupThousands(digits: string): string {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** The exact decimal value of an amount in the smallest unit, e.g. "0.000123" for 123000000000000 at 18 decimals. */
export function exactAmount(amount: string, decimals: number): string {
  if (!integerPattern.test(amount)) return amount;
  const value = BigInt(amount);
  const negative = value < 0n;
  const digits = (negative ? -value : value).toString().padStart(decimals + 1, "0");
  const whole = digits.slice(0, digits.length - decimals);
  const fraction = decimals > 0 ? digits.slice(digits.length - decimals).replace(/0+$/, "") : "";
  return `${negative ? "-" : ""}${whole}${fraction ? `.${fraction}` : ""}`;
}

/**
 * Formats an amount in the token's smallest unit for reading: "0.000123 MYC", "1,250.5 MYC". Whole amounts keep up
 * to 4 decimals, amounts under one keep 4 significant digits; the exact value is {@link exactAmount}. Without a
 * token (no chain) the raw amount is shown in "units".
 */
export function formatAmount(amount: string | null | undefined, token: Token | null): string {
  if (amount === null || amount === undefined) return none;
  if (!integerPattern.test(amount)) return amount;
  if (!token) {
    // Without a chain there are no decimals to scale by: huge raw amounts read better in scientific notation.
    const digits = amount.replace("-", "");
    if (digits.length <= 12) return `${groupThousands(amount)} units`;
    const mantissa = `${digits[0]}.${digits.slice(1, 3)}`.replace(/\.?0+$/, "");
    return `${amount.startsWith("-") ? "-" : ""}${mantissa}e${digits.length - 1} units`;
  }
  const exact = exactAmount(amount, token.decimals);
  const [whole = "0", fraction = ""] = exact.replace("-", "").split(".");
  let shown: string;
  if (whole !== "0") shown = fraction.slice(0, 4).replace(/0+$/, "");
  else {
    const leadingZeros = fraction.length - fraction.replace(/^0+/, "").length;
    shown = fraction.slice(0, leadingZeros + 4).replace(/0+$/, "");
  }
  const sign = exact.startsWith("-") ? "-" : "";
  return `${sign}${groupThousands(whole)}${shown ? `.${shown}` : ""} ${token.symbol}`;
}

/** An amount in whole tokens as a float, for charts (precision is not needed there). */
export function amountToNumber(amount: string, token: Token | null): number {
  if (!integerPattern.test(amount)) return Number.NaN;
  return Number(token ? exactAmount(amount, token.decimals) : amount);
}

/** Sums amounts given as decimal strings, exactly. */
export function sumAmounts(amounts: readonly string[]): string {
  let total = 0n;
  for (const amount of amounts) if (integerPattern.test(amount)) total += BigInt(amount);
  return total.toString();
}

/** Shortens a hex string (address, hash, id) to its head and tail: "0x1234…abcd". */
export function shortHex(
  hex: string | null | undefined,
  parameters: { head?: number; tail?: number } = {},
): string {
  if (!hex) return none;
  const head = parameters.head ?? 6;
  const tail = parameters.tail ?? 4;
  const prefix = hex.startsWith("0x") ? 2 : 0;
  if (hex.length <= prefix + head + tail + 1) return hex;
  return `${hex.slice(0, prefix + head)}…${hex.slice(-tail)}`;
}

const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const clockFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});
const clockShortFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
});

/** A time (ms since the epoch) as a local date and time. */
export function formatTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms <= 0) return none;
  return dateTimeFormat.format(ms);
}

/** A time (ms since the epoch) as a 24-hour clock time with seconds, for chart axes. */
export function formatClock(ms: number): string {
  return clockFormat.format(ms);
}

/** A time (ms since the epoch) as hours and minutes, for chart axes over longer spans. */
export function formatClockShort(ms: number): string {
  return clockShortFormat.format(ms);
}

/** A time as an ISO string, for `<time datetime>`. */
export function isoTime(ms: number | null | undefined): string | undefined {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms <= 0) return undefined;
  return new Date(ms).toISOString();
}

/** A fraction (0..1) as a percentage: 0.953 -> "95.3%". */
export function formatPercent(fraction: number | null | undefined, digits = 1): string {
  if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) return none;
  return `${(fraction * 100).toFixed(digits)}%`;
}

/** A number with grouping and at most `digits` decimals; "—" when missing. */
export function formatNumber(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return none;
  return value.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** A compact number for chart ticks: 1200 -> "1.2k". */
export function formatCompact(value: number): string {
  if (!Number.isFinite(value)) return none;
  const magnitude = Math.abs(value);
  if (magnitude >= 1e15) return value.toExponential(1).replace("e+", "e");
  if (magnitude >= 1e12) return `${+(value / 1e12).toFixed(1)}T`;
  if (magnitude >= 1e9) return `${+(value / 1e9).toFixed(1)}G`;
  if (magnitude >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (magnitude >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
  if (magnitude >= 1 || magnitude === 0) return `${+value.toFixed(1)}`;
  // Tiny values (token prices per million) as 2.0e-6 rather than a long run of zeros that an axis would clip.
  if (magnitude < 0.001) return value.toExponential(1);
  return `${+value.toPrecision(2)}`;
}

/** A duration in ms for reading: "850 ms", "12 s", "3 min". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return none;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${+(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  return `${+(ms / 3_600_000).toFixed(1)} h`;
}
