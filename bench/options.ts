/**
 * The benchmark's command line: sizes, run counts and which cases to run,
 * with full-size defaults and a `--quick` preset of tiny sizes for the smoke
 * test.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { BYTES_PER_MB, BYTES_PER_MIB, parseSize } from "./stats.ts";

/** Every case, in the order they run. */
export const CASE_NAMES = ["bulk", "small", "latency", "memory", "scale", "startup"] as const;

/** One of the benchmark's cases. */
export type CaseName = typeof CASE_NAMES[number];

/** Everything a bench run is told. */
export interface BenchOptions {
  /** Tiny sizes: checks that everything works, measures nothing worth quoting. */
  quick: boolean;
  /** Cases to run. */
  cases: CaseName[];
  /** Seed of the generated corpus. */
  seed: number;
  /** Bytes of the bulk corpus. */
  bulkBytes: number;
  /** Runs per route of the bulk case (the median is reported). */
  bulkRuns: number;
  /** Lines of the small-writes case. */
  smallLines: number;
  /** Runs per route of the small-writes case. */
  smallRuns: number;
  /** Lines of the 1000-lines-a-second latency case. */
  fastTicks: number;
  /** Milliseconds between lines of the fast latency case. */
  fastTickIntervalMs: number;
  /** Lines of the lone-line latency case. */
  slowTicks: number;
  /** Milliseconds between lines of the lone-line latency case. */
  slowTickIntervalMs: number;
  /** The smaller corpus of the full-speed memory runs (the larger is the bulk corpus). */
  memorySmallBytes: number;
  /** The two corpus sizes of the throttled-reader memory runs. */
  throttledBytes: [number, number];
  /** The throttled reader's speed in bytes per second. */
  throttleBytesPerSecond: number;
  /** Concurrent builds of the scale case. */
  scaleBuilds: number;
  /** Bytes each concurrent build writes. */
  scaleBytes: number;
  /** Runs of a single build alone, to compare the scale case with. */
  scaleAloneRuns: number;
  /** Runs of the start-up case. */
  startupRuns: number;
  /** socat's transfer size for the baseline. */
  socatBlockBytes: number;
  /** Where results go. */
  outDir: string;
}

const DEFAULT_OUT_DIR = fileURLToPath(new URL("./results/", import.meta.url));

/** Full-size defaults, as the issue asks for. */
export function defaultOptions(): BenchOptions {
  return {
    quick: false,
    cases: [...CASE_NAMES],
    seed: 42,
    bulkBytes: 1024 * BYTES_PER_MIB,
    bulkRuns: 5,
    smallLines: 10_000_000,
    smallRuns: 3,
    fastTicks: 10_000,
    fastTickIntervalMs: 1,
    slowTicks: 20,
    slowTickIntervalMs: 1000,
    memorySmallBytes: 128 * BYTES_PER_MIB,
    throttledBytes: [8 * BYTES_PER_MB, 32 * BYTES_PER_MB],
    throttleBytesPerSecond: BYTES_PER_MB,
    scaleBuilds: 50,
    scaleBytes: 20 * BYTES_PER_MB,
    scaleAloneRuns: 3,
    startupRuns: 10,
    socatBlockBytes: 64 * 1024,
    outDir: DEFAULT_OUT_DIR,
  };
}

/** Tiny sizes for `--quick`: a few seconds in all. */
function quickOptions(): BenchOptions {
  return {
    ...defaultOptions(),
    quick: true,
    bulkBytes: 4 * BYTES_PER_MIB,
    bulkRuns: 1,
    smallLines: 20_000,
    smallRuns: 1,
    fastTicks: 200,
    slowTicks: 3,
    slowTickIntervalMs: 100,
    memorySmallBytes: 2 * BYTES_PER_MIB,
    throttledBytes: [200_000, 400_000],
    throttleBytesPerSecond: 2 * BYTES_PER_MB,
    scaleBuilds: 3,
    scaleBytes: 2 * BYTES_PER_MB,
    scaleAloneRuns: 1,
    startupRuns: 2,
    // Never over the committed full-size results.
    outDir: fileURLToPath(new URL("./results/quick/", import.meta.url)),
  };
}

/** The flags, their meaning, and how each sets an option. */
const FLAGS: ReadonlyArray<{
  name: string;
  help: string;
  apply: (options: BenchOptions, value: string) => void;
}> = [
  {
    name: "cases",
    help: `comma-separated cases to run (${CASE_NAMES.join(",")}); default all`,
    apply: (o, v) => {
      const names = v.split(",").map((name) => name.trim()).filter((name) => name.length > 0);
      for (const name of names) {
        if (!(CASE_NAMES as readonly string[]).includes(name)) {
          throw new RangeError(`Unknown case ${JSON.stringify(name)}.`);
        }
      }
      o.cases = names as CaseName[];
    },
  },
  { name: "seed", help: "seed of the generated corpus (42)", apply: (o, v) => o.seed = count(v) },
  {
    name: "bulk-size",
    help: "bulk corpus size, e.g. 1GiB, 256MiB (1GiB)",
    apply: (o, v) => o.bulkBytes = parseSize(v),
  },
  { name: "bulk-runs", help: "runs per route, bulk (5)", apply: (o, v) => o.bulkRuns = count(v) },
  {
    name: "small-lines",
    help: "80-byte line writes (10000000)",
    apply: (o, v) => o.smallLines = count(v),
  },
  {
    name: "small-runs",
    help: "runs per route, small writes (3)",
    apply: (o, v) => o.smallRuns = count(v),
  },
  {
    name: "fast-ticks",
    help: "lines of the 1 ms latency case (10000)",
    apply: (o, v) => o.fastTicks = count(v),
  },
  {
    name: "slow-ticks",
    help: "lines of the lone-line latency case, one a second (20)",
    apply: (o, v) => o.slowTicks = count(v),
  },
  {
    name: "memory-small-size",
    help: "smaller full-speed memory corpus (128MiB)",
    apply: (o, v) => o.memorySmallBytes = parseSize(v),
  },
  {
    name: "throttled-sizes",
    help: "two corpus sizes for the throttled reader (8MB,32MB)",
    apply: (o, v) => {
      const [small, large] = v.split(",").map(parseSize);
      if (large === undefined) throw new RangeError("--throttled-sizes takes two sizes.");
      o.throttledBytes = [small, large];
    },
  },
  {
    name: "throttle-rate",
    help: "throttled reader's bytes per second (1MB)",
    apply: (o, v) => o.throttleBytesPerSecond = parseSize(v),
  },
  {
    name: "scale-builds",
    help: "concurrent builds (50)",
    apply: (o, v) => o.scaleBuilds = count(v),
  },
  {
    name: "scale-size",
    help: "bytes per concurrent build (20MB)",
    apply: (o, v) => o.scaleBytes = parseSize(v),
  },
  {
    name: "startup-runs",
    help: "start-up runs (10)",
    apply: (o, v) => o.startupRuns = count(v),
  },
  {
    name: "socat-block",
    help: "socat -b for the baseline (64KiB)",
    apply: (o, v) => o.socatBlockBytes = parseSize(v),
  },
  { name: "out", help: "results directory (bench/results)", apply: (o, v) => o.outDir = v },
];

function count(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`Not a positive whole number: ${JSON.stringify(text)}.`);
  }
  return value;
}

/** The `--help` text. */
export function usage(): string {
  const lines = FLAGS.map((flag) => `  --${flag.name.padEnd(20)}${flag.help}`);
  return [
    "Usage: deno task bench [--quick] [--flag=value ...]",
    "",
    "Runs phonehome's benchmarks side by side with a socat baseline measured in the same run,",
    "prints one table, and writes JSON, Markdown and SVG charts to the results directory.",
    "",
    "  --quick               tiny sizes (a few seconds): checks that it works, nothing more",
    ...lines,
    "",
  ].join("\n");
}

/** Parses the command line; `--quick` sets the preset, and later flags override it. */
export function parseOptions(args: readonly string[]): BenchOptions | "help" {
  const options = args.includes("--quick") ? quickOptions() : defaultOptions();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--quick") continue;
    if (arg === "--help" || arg === "-h") return "help";
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    const flag = match === null ? undefined : FLAGS.find((f) => f.name === match[1]);
    if (match === null || flag === undefined) {
      throw new RangeError(`Unknown argument ${JSON.stringify(arg)}; see --help.`);
    }
    const value = match[2] ?? args[++i];
    if (value === undefined) throw new RangeError(`--${flag.name} needs a value.`);
    flag.apply(options, value);
  }
  return options;
}
