/**
 * Human-readable sizes and durations for messages.
 *
 * @module
 */

/** `1536` as `1.5 KiB`; exact bytes below 1 KiB. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** `90000` as `1m30s`; `1500` as `1.5s`; `250` as `250ms`; fractions of a millisecond rounded. */
export function formatDuration(ms: number): string {
  const wholeMs = Math.round(ms);
  if (wholeMs < 1000) return `${wholeMs}ms`;
  const inSeconds = Number((ms / 1000).toFixed(1));
  if (inSeconds < 60) return `${inSeconds}s`;
  const totalSeconds = Math.round(ms / 1000);
  const hours = Math.floor(totalSeconds / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = totalSeconds % 60;
  return (hours > 0 ? `${hours}h` : "") + (minutes > 0 ? `${minutes}m` : "") +
    (seconds > 0 ? `${seconds}s` : "");
}
