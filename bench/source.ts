/**
 * The source-transfer case, reported beside the bulk output and among the
 * memory rows: the pushed source on its way in. `phonehome build --source DIR -- true` packs a
 * generated tree, offers it to the relay, which fetches it over its
 * connection, checks it and unpacks it before the build starts; the same
 * command without `--source`, in the same rounds, is the start-up to take
 * away. Peak RSS of both sides against the output path's bound.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { BenchContext } from "./context.ts";
import type { CorpusDigest } from "./corpus.ts";
import { type RouteRun, runRoute } from "./routes.ts";
import { type SourceTree, writeSourceTree } from "./source_tree.ts";
import { BYTES_PER_MB, fixed, mb, median } from "./stats.ts";
import type { ThroughputSeries } from "./throughput.ts";

/** The output path's memory bound, which the source's way in must keep too. */
const SOURCE_RSS_TARGET_BYTES = 80 * BYTES_PER_MB;

/** The build of the checked run: how many files landed in its directory, and their bytes. */
const COUNT_FILES = [
  "sh",
  "-c",
  "find . -type f -printf '%s\\n' | " +
  `awk '{ n++; s += $1 } END { printf "%d %d\\n", n, s }'`,
];

/** A build that does nothing: all its time is start-up, and the source. */
const NOTHING = ["true"];

/** Peak memory of both sides in one run. */
interface SourcePeaks {
  relay: number;
  receiver: number;
  relayAnonymous: number;
  receiverAnonymous: number;
}

/** What the case keeps in the results. */
export interface SourceData {
  tree: SourceTree;
  runs: number;
  /** Launch to exit of `build --source DIR -- true`, per run. */
  withSourceMs: number[];
  /** Launch to exit of `build -- true`, per run. */
  withoutSourceMs: number[];
  /** The tree's bytes over each run's difference. */
  bytesPerSecond: number[];
  withSourcePeaks: SourcePeaks[];
  withoutSourcePeaks: SourcePeaks[];
}

function digestOf(text: string): CorpusDigest {
  const bytes = new TextEncoder().encode(text);
  return { bytes: bytes.byteLength, sha256: createHash("sha256").update(bytes).digest("hex") };
}

function peaksOf(run: RouteRun): SourcePeaks {
  return {
    ...run.peakRss,
    relayAnonymous: run.peakAnonymousRss.relay,
    receiverAnonymous: run.peakAnonymousRss.receiver,
  };
}

function worst(peaks: readonly SourcePeaks[], key: keyof SourcePeaks): number {
  return Math.max(...peaks.map((peak) => peak[key]));
}

/** The source-transfer case: one checked run, then timed rounds with and without a source. */
export async function sourceCase(context: BenchContext): Promise<void> {
  const { sourceBytes, sourceRuns, seed } = context.options;
  context.progress(`source: generating a ${mb(sourceBytes)} tree`);
  const tree = await writeSourceTree(`${context.workDir}/source-tree`, {
    bytes: sourceBytes,
    seed,
  });
  const build = (command: readonly string[], withSource: boolean): Promise<RouteRun> =>
    runRoute({
      route: "phonehome",
      command,
      buildFlags: withSource ? ["--source", tree.path] : [],
      socatBlockBytes: context.options.socatBlockBytes,
    });
  // One checked run first, which also warms the page cache: every file arrived, every byte.
  context.verify(
    await build(COUNT_FILES, true),
    digestOf(`${tree.files} ${tree.bytes}\n`),
    "source, checked run (files and bytes unpacked)",
  );
  const nothing = digestOf("");
  const data: SourceData = {
    tree,
    runs: sourceRuns,
    withSourceMs: [],
    withoutSourceMs: [],
    bytesPerSecond: [],
    withSourcePeaks: [],
    withoutSourcePeaks: [],
  };
  for (let i = 0; i < sourceRuns; i++) {
    const without = await build(NOTHING, false);
    context.verify(without, nothing, `source, run ${i + 1} without --source`);
    const withSource = await build(NOTHING, true);
    context.verify(withSource, nothing, `source, run ${i + 1} with --source`);
    const withoutMs = without.endedAt - without.startedAt;
    const withMs = withSource.endedAt - withSource.startedAt;
    const rate = tree.bytes / ((withMs - withoutMs) / 1000);
    data.withoutSourceMs.push(withoutMs);
    data.withSourceMs.push(withMs);
    data.bytesPerSecond.push(rate);
    data.withoutSourcePeaks.push(peaksOf(without));
    data.withSourcePeaks.push(peaksOf(withSource));
    context.progress(
      `source: run ${i + 1}/${sourceRuns}: ${fixed(withMs, 0)} ms with, ${
        fixed(withoutMs, 0)
      } ms without: ${fixed(rate / BYTES_PER_MB, 1)} MB/s`,
    );
  }
  context.data.source = data;
  addRows(context, data);
}

function addRows(context: BenchContext, data: SourceData): void {
  const { tree, runs } = data;
  const rate = median(data.bytesPerSecond);
  const bulk = context.data.bulk as { phonehome: ThroughputSeries } | undefined;
  const output = bulk === undefined ? Number.NaN : median(bulk.phonehome.bytesPerSecond);
  const shape = `${mb(tree.bytes)} tree: ${tree.small.toLocaleString("en-US")} small files, ` +
    `${tree.medium} medium, ${tree.large} large`;
  context.rows.push({
    case: "1. Bulk throughput",
    figure: `MB/s, the source in (build --source, a ${mb(tree.bytes)} tree)`,
    phonehome: `${fixed(rate / BYTES_PER_MB, 1)} (${fixed(median(data.withSourceMs), 0)} ms ` +
      "in all)",
    baseline: `${fixed(median(data.withoutSourceMs), 0)} ms (build -- true, no source)`,
    ratio: bulk === undefined ? "" : fixed(rate / output, 2),
    target: "",
    met: null,
    how: `median of ${runs} runs of \`phonehome build --source DIR -- true\` (pack the tree, ` +
      "offer, fetch, check, unpack, run nothing), launch to exit, less the same command " +
      `without --source in the same round; the ${shape}, after one checked run that counts ` +
      "the files and bytes unpacked; ratio: over phonehome's bulk output MB/s (two pipes) " +
      "in the same run",
  });
  for (const side of ["relay", "receiver"] as const) {
    const peak = worst(data.withSourcePeaks, side);
    context.rows.push({
      case: "4. Memory",
      figure: `${side} peak RSS, the source in (a ${mb(tree.bytes)} tree)`,
      phonehome: `${mb(peak)} (private ${
        fixed(worst(data.withSourcePeaks, `${side}Anonymous`) / BYTES_PER_MB, 1)
      })`,
      baseline: `${mb(worst(data.withoutSourcePeaks, side))} without a source`,
      ratio: "",
      target: `< ${fixed(SOURCE_RSS_TARGET_BYTES / BYTES_PER_MB, 0)} MB`,
      met: peak < SOURCE_RSS_TARGET_BYTES,
      how: `VmHWM from /proc sampled every 20 ms, the worst of the ${runs} timed runs with ` +
        "--source; private: largest RssAnon sampled; baseline: the same runs' `build -- true`" +
        `${side === "receiver" ? " (the receiver is the phonehome build process)" : ""}`,
    });
  }
}
