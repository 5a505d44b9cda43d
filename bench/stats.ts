/**
 * Small statistics for the benchmarks: medians, percentiles and unit
 * formatting, so every figure is computed and printed the same way.
 *
 * @module
 */

/** Bytes in a decimal megabyte; throughput and memory are reported in MB (10^6 bytes). */
export const BYTES_PER_MB = 1_000_000;

/** Bytes in a decimal gigabyte, for CPU time per GB. */
export const BYTES_PER_GB = 1000 * BYTES_PER_MB;

/** Bytes in a mebibyte, for sizes given on the command line. */
export const BYTES_PER_MIB = 1024 * 1024;

/** The median of `values` (the mean of the middle two for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The `fraction` quantile (0.99 for p99) by the nearest-rank method; NaN when empty. */
export function percentile(values: readonly number[], fraction: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(fraction * sorted.length)));
  return sorted[rank - 1];
}

/** p50, p99 and max of a set of latencies. */
export interface LatencySummary {
  /** How many lines were timed. */
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Summarises latencies in milliseconds. */
export function summarizeLatencies(latenciesMs: readonly number[]): LatencySummary {
  return {
    count: latenciesMs.length,
    p50Ms: percentile(latenciesMs, 0.5),
    p99Ms: percentile(latenciesMs, 0.99),
    maxMs: latenciesMs.length === 0 ? Number.NaN : Math.max(...latenciesMs),
  };
}

/** Formats a number with `digits` decimals, or "n/a" when it is not finite. */
export function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "n/a";
}

/** Formats bytes as decimal megabytes with one decimal. */
export function mb(bytes: number): string {
  return `${fixed(bytes / BYTES_PER_MB, 1)} MB`;
}

/** Formats a size for reading: `1 GiB`, `128 MiB`, or decimal megabytes when neither is exact. */
export function sizeText(bytes: number): string {
  if (bytes >= 1024 ** 3 && bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3} GiB`;
  if (bytes >= BYTES_PER_MIB && bytes % BYTES_PER_MIB === 0) return `${bytes / BYTES_PER_MIB} MiB`;
  return mb(bytes);
}

/** Parses a size such as `1GiB`, `256MiB`, `20MB`, `64k` or `1048576` into bytes. */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)$/i.exec(text.trim());
  if (match === null) throw new RangeError(`Not a size: ${JSON.stringify(text)}.`);
  const units: Record<string, number> = {
    "": 1,
    b: 1,
    k: 1024,
    kib: 1024,
    kb: 1000,
    m: BYTES_PER_MIB,
    mib: BYTES_PER_MIB,
    mb: BYTES_PER_MB,
    g: 1024 * BYTES_PER_MIB,
    gib: 1024 * BYTES_PER_MIB,
    gb: 1000 * BYTES_PER_MB,
  };
  return Math.round(Number(match[1]) * units[match[2].toLowerCase()]);
}

/** Units {@linkcode formatSize} tries, largest first: binary ones where the size is exact. */
const SIZE_UNITS: ReadonlyArray<[string, number]> = [
  ["GiB", 1024 * BYTES_PER_MIB],
  ["GB", 1000 * BYTES_PER_MB],
  ["MiB", BYTES_PER_MIB],
  ["MB", BYTES_PER_MB],
  ["KiB", 1024],
  ["kB", 1000],
];

/** Writes bytes as a size {@linkcode parseSize} reads back: `1GiB`, `8MB`, `64KiB`, `100`. */
export function formatSize(bytes: number): string {
  const unit = SIZE_UNITS.find(([, unitBytes]) => bytes >= unitBytes && bytes % unitBytes === 0);
  return unit === undefined ? String(bytes) : `${bytes / unit[1]}${unit[0]}`;
}
