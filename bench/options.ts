/**
 * The benchmark's command line: sizes, run counts and which cases to run,
 * declared as a flag table for the project's own parser (src/cli/flags.ts),
 * which also renders `--help`; full-size defaults, and a `--quick` preset of
 * tiny sizes for the smoke test.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { UsageError } from "../src/errors.ts";
import { type CommandSpec, flag, type FlagValues, parseFlags } from "../src/cli/flags.ts";
import { formatHelp } from "../src/cli/help.ts";
import { BYTES_PER_MB, BYTES_PER_MIB, formatSize, parseSize } from "./stats.ts";

/** Every case, in the order they run. */
export const CASE_NAMES = [
  "bulk",
  "small",
  "latency",
  "memory",
  "scale",
  "startup",
  "source",
  "attacks",
] as const;

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
  /** Bytes of the generated source tree of the source-transfer case. */
  sourceBytes: number;
  /** Timed runs of the source-transfer case, each with and without the source. */
  sourceRuns: number;
  /** How long each attack of the attacks case lasts. */
  attackSeconds: number;
  /** socat's transfer size for the baseline. */
  socatBlockBytes: number;
  /** Where results go. */
  outDir: string;
}

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
    scaleAloneRuns: 7,
    startupRuns: 10,
    sourceBytes: 500 * BYTES_PER_MB,
    sourceRuns: 3,
    attackSeconds: 30,
    socatBlockBytes: 64 * 1024,
    outDir: fileURLToPath(new URL("./results/", import.meta.url)),
  };
}

/** Tiny sizes for `--quick`: a few seconds in all. */
export function quickOptions(): BenchOptions {
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
    sourceBytes: 4 * BYTES_PER_MB,
    sourceRuns: 1,
    attackSeconds: 3,
    // Never over the committed full-size results.
    outDir: fileURLToPath(new URL("./results/quick/", import.meta.url)),
  };
}

const FULL = defaultOptions();
const QUICK = quickOptions();

/**
 * Both presets of an option for its help text. The flags have no default of
 * their own: an absent one takes the preset's value, which `--quick` chooses,
 * wherever it stands on the command line.
 */
function presets<K extends keyof BenchOptions>(
  key: K,
  show: (value: BenchOptions[K]) => string = String,
): string {
  const [full, quick] = [show(FULL[key]), show(QUICK[key])];
  return full === quick ? `[default: ${full}]` : `[default: ${full}; with --quick: ${quick}]`;
}

const sizePresets = (key: "bulkBytes" | "memorySmallBytes" | "scaleBytes"): string =>
  presets(key, formatSize);

/** The bench's command line, in the form of a phonehome command's. */
export const benchSpec = {
  name: "bench",
  usage: "bench [--quick] [options]",
  summary: "Runs phonehome's benchmarks side by side with a baseline measured in the same " +
    "run (socat, Deno alone, one build alone), prints one table, and writes JSON, Markdown " +
    "and SVG charts to the results directory. Exits 1 if any byte was lost or any process " +
    "failed, never because of a timing.",
  takesCommand: false,
  flags: {
    quick: flag({
      kind: "boolean",
      default: false,
      help: "Tiny sizes (a few seconds a case): checks that it works, measures nothing worth " +
        "quoting. Flags given beside it override its sizes.",
    }),
    cases: flag({
      kind: "string",
      valueName: "LIST",
      help: `Comma-separated cases to run (${CASE_NAMES.join(",")}); all by default.`,
    }),
    seed: flag({
      kind: "integer",
      min: 1,
      valueName: "N",
      help: `Seed of the generated corpus. ${presets("seed")}`,
    }),
    "bulk-size": flag({
      kind: "string",
      valueName: "SIZE",
      help: `Bulk corpus size, such as 1GiB or 256MiB. ${sizePresets("bulkBytes")}`,
    }),
    "bulk-runs": flag({
      kind: "integer",
      min: 1,
      valueName: "N",
      help: `Timed runs per route of the bulk case. ${presets("bulkRuns")}`,
    }),
    "small-lines": flag({
      kind: "integer",
      min: 1,
      valueName: "N",
      help: `80-byte line writes of the small-writes case. ${presets("smallLines")}`,
    }),
    "small-runs": flag({
      kind: "integer",
      min: 1,
      valueName: "N",
      help: `Timed runs per route of the small-writes case. ${presets("smallRuns")}`,
    }),
    "fast-ticks": flag({
      kind: "integer",
      min: 1,
      valueName: "N",
      help: `Lines of the latency case with a line every 1 ms. ${presets("fastTicks")}`,
    }),
    "slow-ticks": flag({
      kind: "integer",
      min: 1,
      valueName: "N",
      help: `Lines of the lone-line latency case. ${presets("slowTicks")}`,
    }),
    "memory-small-size": flag({
      kind: "string",
      valueName: "SIZE",
      help: `The smaller corpus of the full-speed memory runs. ${sizePresets("memorySmallBytes")}`,
    }),
    "throttled-sizes": flag({
      kind: "string",
      valueName: "SIZE,SIZE",
      help: "The two corpus sizes of the throttled-reader memory runs. " +
        presets("throttledBytes", (sizes) => sizes.map(formatSize).join(",")),
    }),
    "throttle-rate": flag({
      kind: "string",
      valueName: "SIZE",
      help: "The throttled reader's bytes per second. " +
        presets("throttleBytesPerSecond", formatSize),
    }),
    "scale-builds": flag({
      kind: "integer",
      min: 1,
      valueName: "N",
      help: `Concurrent builds of the scale case. ${presets("scaleBuilds")}`,
    }),
    "scale-size": flag({
      kind: "string",
      valueName: "SIZE",
      help: `Bytes each concurrent build writes. ${sizePresets("scaleBytes")}`,
    }),
    "startup-runs": flag({
      kind: "integer",
      min: 1,
      valueName: "N",
      help: `Runs of the start-up case. ${presets("startupRuns")}`,
    }),
    "source-mb": flag({
      kind: "integer",
      min: 1,
      valueName: "MB",
      help: "Size of the generated source tree of the source case, in MB (10^6 bytes). " +
        presets("sourceBytes", (bytes) => String(bytes / BYTES_PER_MB)),
    }),
    "source-runs": flag({
      kind: "integer",
      min: 1,
      valueName: "N",
      help: `Timed runs of the source case, each with and without it. ${presets("sourceRuns")}`,
    }),
    "attack-seconds": flag({
      kind: "integer",
      min: 1,
      valueName: "S",
      help: `How long each attack of the attacks case lasts. ${presets("attackSeconds")}`,
    }),
    "socat-block": flag({
      kind: "string",
      valueName: "SIZE",
      help: `socat's -b for the baseline. ${presets("socatBlockBytes", formatSize)}`,
    }),
    out: flag({
      kind: "string",
      valueName: "DIR",
      help: "Results directory. [default: bench/results; with --quick: bench/results/quick]",
    }),
  },
} as const satisfies CommandSpec;

type BenchFlags = FlagValues<typeof benchSpec.flags>;

/** The project's help and errors name phonehome; the bench is run as a task of its own. */
function asBenchTask(text: string): string {
  return text.replaceAll("phonehome bench", "deno task bench");
}

/** The `--help` text, rendered from the flag table like phonehome's. */
export function usage(): string {
  return asBenchTask(formatHelp(benchSpec));
}

function size(text: string, name: string): number {
  try {
    return parseSize(text);
  } catch (error) {
    throw new UsageError(`--${name}: ${(error as Error).message}`);
  }
}

function caseNames(text: string): CaseName[] {
  const names = text.split(",").map((name) => name.trim()).filter((name) => name.length > 0);
  for (const name of names) {
    if (!(CASE_NAMES as readonly string[]).includes(name)) {
      throw new UsageError(`Unknown case ${JSON.stringify(name)} in --cases.`);
    }
  }
  return names as CaseName[];
}

function throttledSizes(text: string): [number, number] {
  const sizes = text.split(",").map((part) => size(part, "throttled-sizes"));
  if (sizes.length !== 2) throw new UsageError("--throttled-sizes takes two sizes.");
  return [sizes[0], sizes[1]];
}

/** The preset `values.quick` chooses, with every flag given laid over it. */
function withFlags(values: BenchFlags): BenchOptions {
  const options = values.quick ? quickOptions() : defaultOptions();
  const given = <T>(value: T | undefined, apply: (value: T) => void): void => {
    if (value !== undefined) apply(value);
  };
  given(values.cases, (v) => options.cases = caseNames(v));
  given(values.seed, (v) => options.seed = v);
  given(values["bulk-size"], (v) => options.bulkBytes = size(v, "bulk-size"));
  given(values["bulk-runs"], (v) => options.bulkRuns = v);
  given(values["small-lines"], (v) => options.smallLines = v);
  given(values["small-runs"], (v) => options.smallRuns = v);
  given(values["fast-ticks"], (v) => options.fastTicks = v);
  given(values["slow-ticks"], (v) => options.slowTicks = v);
  given(
    values["memory-small-size"],
    (v) => options.memorySmallBytes = size(v, "memory-small-size"),
  );
  given(values["throttled-sizes"], (v) => options.throttledBytes = throttledSizes(v));
  given(values["throttle-rate"], (v) => options.throttleBytesPerSecond = size(v, "throttle-rate"));
  given(values["scale-builds"], (v) => options.scaleBuilds = v);
  given(values["scale-size"], (v) => options.scaleBytes = size(v, "scale-size"));
  given(values["startup-runs"], (v) => options.startupRuns = v);
  given(values["source-mb"], (v) => options.sourceBytes = v * BYTES_PER_MB);
  given(values["source-runs"], (v) => options.sourceRuns = v);
  given(values["attack-seconds"], (v) => options.attackSeconds = v);
  given(values["socat-block"], (v) => options.socatBlockBytes = size(v, "socat-block"));
  given(values.out, (v) => options.outDir = v);
  return options;
}

/**
 * Parses the command line; `--quick` chooses the preset, and every flag given
 * overrides it. Throws {@linkcode UsageError} with a one-line message.
 */
export function parseOptions(args: readonly string[]): BenchOptions | "help" {
  try {
    const flags = parseFlags(benchSpec, args, () => undefined);
    return flags.help ? "help" : withFlags(flags.values);
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError(asBenchTask(error.message));
    throw error;
  }
}
