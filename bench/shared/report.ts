/** What every benchmark prints with: medians, tables, rounding toward failing, and MET/MISSED verdicts. */
import { cpus } from "node:os";

/** The median of some numbers (NaN for none). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** Rounds down (for figures that must be at least a target), so a printed figure agrees with its verdict. */
export const roundDown = (value: number, digits: number) =>
  Math.floor(value * 10 ** digits + 1e-9) / 10 ** digits;
/** Rounds up (for figures that must be at most a target), so a printed figure agrees with its verdict. */
export const roundUp = (value: number, digits: number) =>
  Math.ceil(value * 10 ** digits - 1e-9) / 10 ** digits;
/** The word a target line ends with. */
export const verdict = (met: boolean) => (met ? "MET" : "MISSED");

/** A small text table: the first column left-aligned, the others right-aligned. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]) {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) =>
        column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0),
      )
      .join("  ");
  return [line(header), widths.map((width) => "-".repeat(width)).join("  "), ...rows.map(line)].join("\n");
}

/** One timed streamed generation, as the benchmarks sample them. */
export type TimedSample = { firstTokenMs: number; totalMs: number; completionTokens: number };

/** Medians over the rounds of one path: time to first token, tokens/s, completion tokens, total time. */
export function summarizeSamples(samples: readonly TimedSample[]) {
  return {
    firstTokenMs: median(samples.map((sample) => sample.firstTokenMs)),
    tokensPerSecond: median(samples.map((sample) => sample.completionTokens / (sample.totalMs / 1000))),
    completionTokens: median(samples.map((sample) => sample.completionTokens)),
    totalMs: median(samples.map((sample) => sample.totalMs)),
  };
}

/** Milliseconds all cores of the machine have been busy since boot (for the share other processes took). */
export function machineBusyMs() {
  return cpus().reduce(
    (sum, cpu) => sum + cpu.times.user + cpu.times.nice + cpu.times.sys + cpu.times.irq,
    0,
  );
}
