/**
 * Cases 1 and 2: bulk throughput and many small writes, each against the
 * socat baseline run in between, so both see the same machine. The bulk case
 * also runs phonehome with the build's stdout and stderr on one pipe
 * (`--merge`), beside the usual two, and over wss (`--tls`), and reports the
 * CPU time each process in the middle spends per GB.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import type { BenchContext } from "./context.ts";
import type { CorpusDigest } from "./corpus.ts";
import type { ReadOptions } from "./reader.ts";
import { DENO, type Route, type RouteRun, runRoute } from "./routes.ts";
import { SMALL_LINE_BYTES, smallLinesDigest } from "./small_lines.ts";
import { clockTicksPerSecond } from "../tests/support/proc_status.ts";
import { BYTES_PER_GB, BYTES_PER_MB, fixed, median, sizeText } from "./stats.ts";

const SMALL_WRITER = fileURLToPath(new URL("./small_writer.ts", import.meta.url));

/** Targets from the issue. */
const BULK_TARGET_RATIO = 0.6;
const SMALL_TARGET_RATIO = 0.5;
/** What wss may cost against plain ws on the same route: at most a tenth of the throughput. */
const WSS_TARGET_RATIO = 0.9;

/**
 * One way through a throughput case: a route, and what `phonehome build` is
 * told on it (the phonehome route only).
 */
export interface Lane {
  /** How progress lines name it. */
  name: string;
  route: Route;
  /** Extra flags for `phonehome build`. */
  buildFlags?: readonly string[];
}

/** The two routes, each as it comes: what every throughput case compares. */
export const ROUTE_LANES = {
  socat: { name: "socat", route: "socat" },
  phonehome: { name: "phonehome", route: "phonehome" },
} as const satisfies Record<Route, Lane>;

/**
 * The bulk case's lanes: the two routes; phonehome once more with the
 * build's stdout and stderr on one pipe (`phonehome build --merge`, the
 * relay's `--merge`: the build runs under `sh -c 'exec "$@" 2>&1'`); and
 * phonehome over wss (`phonehome build --tls`: the local backend serves
 * wss:// with a per-build CA and certificate and gives the relay the CA).
 */
export const BULK_LANES = {
  ...ROUTE_LANES,
  phonehomeOnePipe: { name: "phonehome, one pipe", route: "phonehome", buildFlags: ["--merge"] },
  phonehomeWss: { name: "phonehome, wss", route: "phonehome", buildFlags: ["--tls"] },
} as const satisfies Record<string, Lane>;

/** The name of one of the bulk case's lanes. */
export type BulkLane = keyof typeof BULK_LANES;

/** phonehome's bulk lanes that get a CPU row, with how the row's figure names each. */
const CPU_ROW_LANES = [
  ["phonehome", "two pipes"],
  ["phonehomeOnePipe", "one pipe"],
  ["phonehomeWss", "wss (build --tls)"],
] as const satisfies ReadonlyArray<readonly [Exclude<BulkLane, "socat">, string]>;

/** One lane's runs of a throughput case. */
export interface ThroughputSeries {
  route: Route;
  /** Extra flags `phonehome build` had ([] for the socat baseline). */
  buildFlags: string[];
  /** Bytes per second of each run, from the first to the last byte at the reader. */
  bytesPerSecond: number[];
  /** Peak RSS of the relay and receiver (or the two socats) in each run. */
  peakRss: Array<{ relay: number; receiver: number }>;
  /** Their largest private (anonymous) RSS in each run. */
  peakAnonymousRss: Array<{ relay: number; receiver: number }>;
  /** Their CPU seconds (user and system) in each run. */
  cpuSeconds: Array<{ relay: number; receiver: number }>;
}

/** Throughput of one run: bytes over the time from the first to the last byte read. */
export function runBytesPerSecond(run: RouteRun): number {
  const seconds = (run.read.lastByteAt - run.read.firstByteAt) / 1000;
  return seconds > 0 ? run.read.bytes / seconds : Number.NaN;
}

async function series<K extends string>(
  context: BenchContext,
  options: {
    what: string;
    command: readonly string[];
    expected: CorpusDigest;
    runs: number;
    /** The lanes, in the order each round runs them. */
    lanes: Record<K, Lane>;
  },
): Promise<Record<K, ThroughputSeries>> {
  const keys = Object.keys(options.lanes) as K[];
  const result = Object.fromEntries(keys.map((key) => [key, {
    route: options.lanes[key].route,
    buildFlags: [...(options.lanes[key].buildFlags ?? [])],
    bytesPerSecond: [],
    peakRss: [],
    peakAnonymousRss: [],
    cpuSeconds: [],
  }])) as unknown as Record<K, ThroughputSeries>;
  const run = (key: K, read?: ReadOptions): Promise<RouteRun> =>
    runRoute({
      route: options.lanes[key].route,
      buildFlags: options.lanes[key].buildFlags,
      command: options.command,
      socatBlockBytes: context.options.socatBlockBytes,
      read,
    });
  // A first run per lane, untimed, warms the page cache and Deno's module cache, and its
  // reader hashes everything, so the bytes themselves are checked once per lane.
  for (const key of keys) {
    context.verify(
      await run(key),
      options.expected,
      `${options.what}, ${options.lanes[key].name} checked run`,
    );
  }
  for (let i = 0; i < options.runs; i++) {
    // Alternate the lanes so that a noisy neighbour hurts each alike.
    for (const key of keys) {
      // Timed runs read like a reader that discards: counting, not hashing.
      const done = await run(key, { hash: false });
      context.verify(
        done,
        options.expected,
        `${options.what}, ${options.lanes[key].name} run ${i + 1}`,
      );
      const rate = runBytesPerSecond(done);
      result[key].bytesPerSecond.push(rate);
      result[key].peakRss.push(done.peakRss);
      result[key].peakAnonymousRss.push(done.peakAnonymousRss);
      result[key].cpuSeconds.push(done.cpuSeconds);
      context.progress(
        `${options.what}: ${options.lanes[key].name} run ${i + 1}/${options.runs}: ${
          fixed(rate / BYTES_PER_MB, 1)
        } MB/s`,
      );
    }
  }
  return result;
}

/**
 * A lane's throughput over another's (phonehome's over the baseline's unless
 * told): the median of each of its runs over the other's run of the same
 * round, so that a neighbour's load that comes and goes during the case
 * weighs on both sides of each ratio alike.
 */
export function pairedRatio(
  series: Record<"phonehome" | "socat", ThroughputSeries>,
  lanes: { over?: ThroughputSeries; under?: ThroughputSeries } = {},
): number {
  const over = lanes.over ?? series.phonehome;
  const under = lanes.under ?? series.socat;
  const ratios = over.bytesPerSecond.map((rate, i) => rate / under.bytesPerSecond[i]);
  return median(ratios);
}

function ratioText(value: number): string {
  return fixed(value, 2);
}

/** CPU seconds per GB of the two processes in the middle. */
export interface CpuPerGb {
  relay: number;
  receiver: number;
}

/** A lane's CPU seconds per GB (10^9 bytes) of `bytes`, each side the median of its runs. */
function cpuPerGb(series: ThroughputSeries, bytes: number): CpuPerGb {
  const gb = bytes / BYTES_PER_GB;
  return {
    relay: median(series.cpuSeconds.map((cpu) => cpu.relay / gb)),
    receiver: median(series.cpuSeconds.map((cpu) => cpu.receiver / gb)),
  };
}

function cpuText(cpu: CpuPerGb): string {
  return `${fixed(cpu.relay, 2)} / ${fixed(cpu.receiver, 2)}`;
}

/** The bulk case's CPU rows: phonehome's relay and receiver against socat's two, per lane. */
function cpuRows(
  context: BenchContext,
  result: Record<BulkLane, ThroughputSeries>,
): Record<BulkLane, CpuPerGb> {
  const { bulkBytes, bulkRuns } = context.options;
  const cpu = {
    socat: cpuPerGb(result.socat, bulkBytes),
    phonehome: cpuPerGb(result.phonehome, bulkBytes),
    phonehomeOnePipe: cpuPerGb(result.phonehomeOnePipe, bulkBytes),
    phonehomeWss: cpuPerGb(result.phonehomeWss, bulkBytes),
  };
  const socatTotal = cpu.socat.relay + cpu.socat.receiver;
  for (const [lane, which] of CPU_ROW_LANES) {
    context.rows.push({
      case: "1. Bulk throughput",
      figure: `CPU-s per GB, relay / receiver, ${which}`,
      phonehome: cpuText(cpu[lane]),
      baseline: `${cpuText(cpu.socat)} (socat sender / listener)`,
      ratio: fixed((cpu[lane].relay + cpu[lane].receiver) / socatTotal, 2),
      target: "",
      met: null,
      how: "user + system CPU time of each process, /proc/PID/stat fields 14 and 15 over the " +
        `clock tick (CLK_TCK ${clockTicksPerSecond()}), read every 20 ms: the last reading ` +
        "before it exits (up to 20 ms of it unseen), over the corpus in GB (10^9 bytes); " +
        `median of the ${bulkRuns} timed runs; relay: phonehome's relay, or the socat the ` +
        "build writes into; receiver: the `phonehome build` process (receiver and launcher), " +
        "or the socat the reader reads from; ratio: phonehome's two over socat's two",
    });
  }
  return cpu;
}

/**
 * The wss lane's row: its throughput over plain ws on the same route (the
 * two-pipe phonehome lane), paired by round. Returns that ratio.
 */
function wssRow(
  context: BenchContext,
  result: Record<BulkLane, ThroughputSeries>,
  runs: string,
): number {
  const { bulkRuns } = context.options;
  const wss = median(result.phonehomeWss.bytesPerSecond);
  const ws = median(result.phonehome.bytesPerSecond);
  const wssOverWs = pairedRatio(result, { over: result.phonehomeWss, under: result.phonehome });
  const wssOverSocat = pairedRatio(result, { over: result.phonehomeWss });
  context.rows.push({
    case: "1. Bulk throughput",
    figure: "MB/s, wss (build --tls)",
    phonehome: fixed(wss / BYTES_PER_MB, 1),
    baseline: `${fixed(ws / BYTES_PER_MB, 1)} (phonehome over ws, two pipes)`,
    ratio: ratioText(wssOverWs),
    target: `>= ${WSS_TARGET_RATIO}`,
    met: wssOverWs >= WSS_TARGET_RATIO,
    how: `${runs}; the build's two pipes, over wss:// with a per-build CA and certificate; ` +
      `ratio: over phonehome's two-pipe (ws) lane, median of the ${bulkRuns} paired runs' ` +
      `ratios; over socat, median of paired runs' ratios: ${ratioText(wssOverSocat)}`,
  });
  return wssOverWs;
}

/** Case 1: the bulk corpus through both routes, through phonehome with one pipe, and over wss. */
export async function bulkCase(context: BenchContext): Promise<void> {
  const { bulkBytes, bulkRuns } = context.options;
  context.progress(`generating the ${sizeText(bulkBytes)} corpus`);
  const corpus = await context.corpus(bulkBytes);
  const result = await series(context, {
    what: "bulk",
    command: ["cat", corpus.path],
    expected: corpus,
    runs: bulkRuns,
    lanes: BULK_LANES,
  });
  const phonehome = median(result.phonehome.bytesPerSecond);
  const onePipe = median(result.phonehomeOnePipe.bytesPerSecond);
  const socat = median(result.socat.bytesPerSecond);
  const ratio = pairedRatio(result);
  const onePipeRatio = pairedRatio(result, { over: result.phonehomeOnePipe });
  const onePipeOverTwo = pairedRatio(result, {
    over: result.phonehomeOnePipe,
    under: result.phonehome,
  });
  const runs = `median of ${bulkRuns} runs per route of ${
    sizeText(bulkBytes)
  } (cat of a generated build log) after one checked run each, first to last byte at a reader that discards`;
  context.rows.push({
    case: "1. Bulk throughput",
    figure: "MB/s, two pipes (the build's stdout and stderr apart)",
    phonehome: fixed(phonehome / BYTES_PER_MB, 1),
    baseline: fixed(socat / BYTES_PER_MB, 1),
    ratio: ratioText(ratio),
    target: `>= ${BULK_TARGET_RATIO}`,
    met: ratio >= BULK_TARGET_RATIO,
    how: `${runs}; ratio: median of the ${bulkRuns} paired runs' ratios`,
  });
  context.rows.push({
    case: "1. Bulk throughput",
    figure: "MB/s, one pipe (build --merge: stdout and stderr together)",
    phonehome: fixed(onePipe / BYTES_PER_MB, 1),
    baseline: fixed(socat / BYTES_PER_MB, 1),
    ratio: ratioText(onePipeRatio),
    target: `>= ${BULK_TARGET_RATIO}`,
    met: onePipeRatio >= BULK_TARGET_RATIO,
    how: `${runs}, each round running socat, phonehome, phonehome with one pipe, then ` +
      "phonehome over wss; " +
      `ratio: median of the ${bulkRuns} paired runs' ratios; one pipe over two pipes, ` +
      `median of paired runs' ratios: ${ratioText(onePipeOverTwo)}`,
  });
  const wssOverWs = wssRow(context, result, runs);
  context.data.bulk = {
    corpusBytes: bulkBytes,
    sha256: corpus.sha256,
    ...result,
    ratio,
    onePipeRatio,
    onePipeOverTwo,
    wssOverWs,
    cpuSecondsPerGb: cpuRows(context, result),
  };
}

/** Case 2: one write per 80-byte line. */
export async function smallWritesCase(context: BenchContext): Promise<void> {
  const { smallLines, smallRuns } = context.options;
  const expected = smallLinesDigest(smallLines);
  const result = await series(context, {
    what: "small writes",
    command: [DENO, "run", "-A", "--quiet", SMALL_WRITER, String(smallLines)],
    expected,
    runs: smallRuns,
    lanes: ROUTE_LANES,
  });
  const linesPerSecond = (route: Route): number =>
    median(result[route].bytesPerSecond) / SMALL_LINE_BYTES;
  const phonehome = linesPerSecond("phonehome");
  const socat = linesPerSecond("socat");
  const ratio = pairedRatio(result);
  context.data.smallWrites = { lines: smallLines, lineBytes: SMALL_LINE_BYTES, ...result, ratio };
  context.rows.push({
    case: "2. Small writes",
    figure: "lines/s",
    phonehome: Math.round(phonehome).toLocaleString("en-US"),
    baseline: Math.round(socat).toLocaleString("en-US"),
    ratio: ratioText(ratio),
    target: `>= ${SMALL_TARGET_RATIO}`,
    met: ratio >= SMALL_TARGET_RATIO,
    how: `median of ${smallRuns} runs per route of ${
      smallLines.toLocaleString("en-US")
    } writes of ${SMALL_LINE_BYTES} bytes (one write(2) each, from a Deno writer), after one checked run each; ratio: median of paired runs' ratios`,
  });
}
