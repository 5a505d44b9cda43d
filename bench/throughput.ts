/**
 * Cases 1, 2 and 4: bulk throughput, many small writes, and peak memory of
 * relay and receiver at full speed and behind a throttled reader, each
 * against the socat baseline run in between, so both see the same machine.
 * The bulk case also runs phonehome with the build's stdout and stderr on one
 * pipe (`--merge`), beside the usual two.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import type { BenchContext } from "./context.ts";
import type { CorpusDigest } from "./corpus.ts";
import { peakRssBytes } from "./memory.ts";
import type { ReadOptions } from "./reader.ts";
import { DENO, type Route, type RouteRun, runRoute } from "./routes.ts";
import { SMALL_LINE_BYTES, smallLinesDigest } from "./small_lines.ts";
import { BYTES_PER_MB, fixed, mb, median } from "./stats.ts";

const SMALL_WRITER = fileURLToPath(new URL("./small_writer.ts", import.meta.url));
const IDLE_DENO = fileURLToPath(new URL("./idle_deno.ts", import.meta.url));

/** Targets from the issue. */
const BULK_TARGET_RATIO = 0.6;
const SMALL_TARGET_RATIO = 0.5;
const RSS_TARGET_BYTES = 80 * BYTES_PER_MB;

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
 * The bulk case's lanes: the two routes, and phonehome once more with the
 * build's stdout and stderr on one pipe (`phonehome build --merge`, the
 * relay's `--merge`: the build runs under `sh -c 'exec "$@" 2>&1'`).
 */
export const BULK_LANES = {
  ...ROUTE_LANES,
  phonehomeOnePipe: { name: "phonehome, one pipe", route: "phonehome", buildFlags: ["--merge"] },
} as const satisfies Record<string, Lane>;

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

function sizeText(bytes: number): string {
  if (bytes >= 1024 ** 3 && bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3} GiB`;
  if (bytes >= 1024 ** 2 && bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2} MiB`;
  return mb(bytes);
}

/** Case 1: the bulk corpus through both routes, and through phonehome with one pipe. */
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
  context.data.bulk = {
    corpusBytes: bulkBytes,
    sha256: corpus.sha256,
    ...result,
    ratio,
    onePipeRatio,
    onePipeOverTwo,
  };
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
    how: `${runs}, each round running socat, phonehome, then phonehome with one pipe; ` +
      `ratio: median of the ${bulkRuns} paired runs' ratios; one pipe over two pipes, ` +
      `median of paired runs' ratios: ${ratioText(onePipeOverTwo)}`,
  });
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

/** Peak RSS of Deno itself (a script that only waits), for scale. */
async function idleDenoRss(): Promise<number> {
  const child = new Deno.Command(DENO, {
    args: ["run", "-A", "--quiet", IDLE_DENO],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  // The script says when it is up; read its peak then, before it exits.
  const reader = child.stdout.getReader();
  await reader.read();
  const peak = peakRssBytes(child.pid) ?? Number.NaN;
  child.kill("SIGTERM");
  reader.releaseLock();
  await child.stdout.cancel();
  await child.status;
  return peak;
}

interface MemoryRun {
  label: string;
  corpusBytes: number;
  throttleBytesPerSecond: number | null;
  relay: number;
  receiver: number;
  /** Largest private (anonymous) RSS sampled. */
  relayAnonymous: number;
  receiverAnonymous: number;
}

async function memoryRun(
  context: BenchContext,
  bytes: number,
  throttle: number | undefined,
): Promise<MemoryRun> {
  const corpus = await context.corpus(bytes);
  const what = `memory, ${sizeText(bytes)}${throttle === undefined ? "" : `, throttled`}`;
  const run = await runRoute({
    route: "phonehome",
    command: ["cat", corpus.path],
    socatBlockBytes: context.options.socatBlockBytes,
    read: { throttleBytesPerSecond: throttle },
  });
  context.verify(run, corpus, what);
  context.progress(
    `${what}: relay ${mb(run.peakRss.relay)}, receiver ${mb(run.peakRss.receiver)}`,
  );
  return {
    label: sizeText(bytes),
    corpusBytes: bytes,
    throttleBytesPerSecond: throttle ?? null,
    ...run.peakRss,
    relayAnonymous: run.peakAnonymousRss.relay,
    receiverAnonymous: run.peakAnonymousRss.receiver,
  };
}

/** Case 4: peak RSS at two corpus sizes, at full speed and behind a throttled reader. */
export async function memoryCase(context: BenchContext): Promise<void> {
  const { bulkBytes, memorySmallBytes, throttledBytes, throttleBytesPerSecond } = context.options;
  const idle = await idleDenoRss();
  const fullSpeed: MemoryRun[] = [await memoryRun(context, memorySmallBytes, undefined)];
  const bulk = context.data.bulk as { phonehome: ThroughputSeries } | undefined;
  if (bulk !== undefined && bulk.phonehome.peakRss.length > 0) {
    // The bulk runs already streamed the large corpus at full speed: take their worst peak.
    fullSpeed.push({
      label: sizeText(bulkBytes),
      corpusBytes: bulkBytes,
      throttleBytesPerSecond: null,
      relay: Math.max(...bulk.phonehome.peakRss.map((p) => p.relay)),
      receiver: Math.max(...bulk.phonehome.peakRss.map((p) => p.receiver)),
      relayAnonymous: Math.max(...bulk.phonehome.peakAnonymousRss.map((p) => p.relay)),
      receiverAnonymous: Math.max(...bulk.phonehome.peakAnonymousRss.map((p) => p.receiver)),
    });
  } else {
    fullSpeed.push(await memoryRun(context, bulkBytes, undefined));
  }
  const throttled: MemoryRun[] = [];
  for (const bytes of throttledBytes) {
    throttled.push(await memoryRun(context, bytes, throttleBytesPerSecond));
  }
  context.data.memory = { idleDenoBytes: idle, fullSpeed, throttled };
  const rate = `${fixed(throttleBytesPerSecond / BYTES_PER_MB, 1)} MB/s`;
  for (
    const [title, runs] of [
      ["full speed", fullSpeed],
      [`reader at ${rate}`, throttled],
    ] as const
  ) {
    for (const side of ["relay", "receiver"] as const) {
      const peaks = runs.map((run) => run[side]);
      const anonymous = runs.map((run) => run[`${side}Anonymous`]);
      context.rows.push({
        case: "4. Memory",
        figure: `${side} peak RSS, ${title} (${runs.map((run) => run.label).join(" / ")})`,
        phonehome: `${peaks.map((peak) => mb(peak)).join(" / ")} (private ${
          anonymous.map((bytes) => fixed(bytes / BYTES_PER_MB, 1)).join(" / ")
        })`,
        baseline: `Deno alone ${mb(idle)}`,
        ratio: "",
        target: "< 80 MB, flat",
        met: peaks.every((peak) => peak < RSS_TARGET_BYTES),
        how:
          `VmHWM from /proc sampled every 20 ms; one run per size${
            runs === fullSpeed ? " (the larger: worst of the bulk runs)" : ""
          }; private: largest RssAnon sampled (RSS less the deno executable's shared pages); ` +
          `baseline: a Deno script that only waits`,
      });
    }
  }
}
