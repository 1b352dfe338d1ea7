/** A progress bar for long copies and downloads: redrawn in place on a terminal, a line per 10% otherwise. */
import type { TransferProgress } from "../model/index.ts";

function formatBytes(bytes: number) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** Renders {@link TransferProgress} on a stream (stderr by default). */
export function createProgressBar(parameters: { label: string; stream?: NodeJS.WriteStream }) {
  const stream = parameters.stream ?? process.stderr;
  const interactive = stream.isTTY === true;
  const started = performance.now();
  let lastDraw = 0;
  let lastDecile = -1;
  let drawn = false;

  const describe = (progress: TransferProgress) => {
    const seconds = Math.max((performance.now() - started) / 1000, 0.001);
    const rate = (progress.received - progress.resumedFrom) / seconds;
    const resumed = progress.resumedFrom > 0 ? ` (resumed at ${formatBytes(progress.resumedFrom)})` : "";
    if (progress.total === undefined)
      return `${parameters.label} ${formatBytes(progress.received)} ${formatBytes(rate)}/s${resumed}`;
    const fraction = Math.min(1, progress.received / progress.total);
    const width = 24;
    const filled = Math.round(fraction * width);
    const eta = rate > 0 ? Math.ceil((progress.total - progress.received) / rate) : 0;
    return `${parameters.label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(progress.received)}/${formatBytes(progress.total)} ${formatBytes(rate)}/s ETA ${eta}s${resumed}`;
  };

  return {
    update(progress: TransferProgress) {
      const now = performance.now();
      if (interactive) {
        if (now - lastDraw < 100 && progress.received !== progress.total) return;
        lastDraw = now;
        stream.write(`\r${describe(progress)}\u001b[K`);
        drawn = true;
        return;
      }
      const decile = progress.total
        ? Math.floor((progress.received / progress.total) * 10)
        : Math.floor(progress.received / (64 << 20));
      if (decile !== lastDecile) {
        lastDecile = decile;
        stream.write(`${describe(progress)}\n`);
      }
    },
    done() {
      if (interactive && drawn) stream.write("\n");
    },
  };
}
