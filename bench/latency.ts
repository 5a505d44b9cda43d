/**
 * Case 3: how long a line takes from the build's write to the reader, for a
 * build printing a line every millisecond and for one printing a lone line
 * every second, through phonehome and through the socat baseline; compared
 * with the old design's 100 ms poll tick and the batching peers' 250 ms to 3 s.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import type { BenchContext } from "./context.ts";
import { DENO, type Route, runRoute } from "./routes.ts";
import { fixed, type LatencySummary, summarizeLatencies } from "./stats.ts";

const TICK_WRITER = fileURLToPath(new URL("./tick_writer.ts", import.meta.url));

/** The old builder polled every 100 ms (BUILDER_POD_TICK_DURATION) before a log stream could start. */
export const OLD_POLL_TICK_MS = 100;

/** Batching peers ship a live log every 250 ms to 3 s (design brief). */
export const BATCHING_RANGE_MS: readonly [number, number] = [250, 3000];

/**
 * How long the writer waits before its first line, so that connecting is
 * not counted here (the start-up case measures it).
 */
const WRITER_START_DELAY_MS = 1000;

/** Targets from the issue: p99 at 1000 lines/s, and for a lone line. */
const FAST_TARGET_P99_MS = 10;
const LONE_TARGET_P99_MS = 5;

/** The latencies of one route in one case. */
export interface LatencySeries {
  route: Route;
  /** Every line's latency in milliseconds, in arrival order. */
  samplesMs: number[];
  summary: LatencySummary;
}

/** One latency case: both routes. */
export interface LatencyCaseResult {
  name: string;
  intervalMs: number;
  lines: number;
  series: LatencySeries[];
}

async function measure(
  context: BenchContext,
  options: { intervalMs: number; lines: number },
): Promise<LatencySeries[]> {
  const out: LatencySeries[] = [];
  for (const route of ["socat", "phonehome"] as const) {
    const samplesMs: number[] = [];
    const run = await runRoute({
      route,
      command: [
        DENO,
        "run",
        "-A",
        "--quiet",
        TICK_WRITER,
        String(options.intervalMs),
        String(options.lines),
        String(WRITER_START_DELAY_MS),
      ],
      socatBlockBytes: context.options.socatBlockBytes,
      read: { latenciesMs: samplesMs },
    });
    if (!run.ok || samplesMs.length !== options.lines) {
      context.failures.push(
        `latency every ${options.intervalMs} ms, ${route}: ${samplesMs.length} of ` +
          `${options.lines} lines arrived (exit codes ${JSON.stringify(run.exitCodes)})`,
      );
    }
    const summary = summarizeLatencies(samplesMs);
    context.progress(
      `latency every ${options.intervalMs} ms, ${route}: p50 ${fixed(summary.p50Ms, 2)} ms, ` +
        `p99 ${fixed(summary.p99Ms, 2)} ms, max ${fixed(summary.maxMs, 2)} ms`,
    );
    out.push({ route, samplesMs, summary });
  }
  return out;
}

function describe(summary: LatencySummary): string {
  return `${fixed(summary.p50Ms, 2)} / ${fixed(summary.p99Ms, 2)} / ${fixed(summary.maxMs, 2)}`;
}

/** Case 3: both rates, both routes. */
export async function latencyCase(context: BenchContext): Promise<void> {
  const { fastTicks, fastTickIntervalMs, slowTicks, slowTickIntervalMs } = context.options;
  const cases: LatencyCaseResult[] = [];
  for (
    const [name, intervalMs, lines, target] of [
      [`a line every ${fastTickIntervalMs} ms`, fastTickIntervalMs, fastTicks, FAST_TARGET_P99_MS],
      [
        `a lone line every ${slowTickIntervalMs} ms`,
        slowTickIntervalMs,
        slowTicks,
        LONE_TARGET_P99_MS,
      ],
    ] as const
  ) {
    const series = await measure(context, { intervalMs, lines });
    cases.push({ name, intervalMs, lines, series });
    const [socat, phonehome] = series;
    context.rows.push({
      case: "3. Latency",
      figure: `${name}: p50 / p99 / max, ms`,
      phonehome: describe(phonehome.summary),
      baseline: describe(socat.summary),
      ratio: "",
      target: `p99 < ${target} ms`,
      met: phonehome.summary.p99Ms < target,
      how: `${lines} lines, write to arrival at the reader (wall clock in both processes); ` +
        `the writer starts ${WRITER_START_DELAY_MS} ms after launch`,
    });
  }
  context.rows.push({
    case: "3. Latency",
    figure: "old design and batching peers, ms",
    phonehome: "",
    baseline: `>= ${OLD_POLL_TICK_MS} (poll tick); ${BATCHING_RANGE_MS[0]}-${
      BATCHING_RANGE_MS[1]
    } (batching)`,
    ratio: "",
    target: "",
    met: null,
    how: "from the design brief: the floor of the old poll, and peers' batching intervals",
  });
  context.data.latency = {
    oldPollTickMs: OLD_POLL_TICK_MS,
    batchingRangeMs: BATCHING_RANGE_MS,
    writerStartDelayMs: WRITER_START_DELAY_MS,
    cases,
  };
}
