/**
 * Case 5: many builds at once on one machine, each a real `phonehome build`
 * (receiver and relay) streaming the same corpus; total throughput against a
 * single build alone, the slowest build, total memory, and every byte
 * checked. All builds connect first and then start writing together, so that
 * starting 2×N Deno processes is not mistaken for streaming.
 *
 * @module
 */

import type { BenchContext, Corpus } from "./context.ts";
import { ProcessSampler } from "./process_sampler.ts";
import { childNamed, DENO, phonehomeBuildArgs, spawn } from "./routes.ts";
import { BYTES_PER_MB, fixed, mb, median } from "./stats.ts";

/** Target from the issue: N builds together move at least this share of one build alone. */
const SCALE_TARGET_RATIO = 0.8;

/** Memory sampling interval: 2×N processes to read, so less often than elsewhere. */
const SCALE_SAMPLE_INTERVAL_MS = 100;

/** How long all relays get to connect before the builds are released anyway. */
const CONNECT_DEADLINE_MS = 300_000;

/** What one round of concurrent builds did. */
export interface ScaleRound {
  builds: number;
  bytesPerBuild: number;
  /** All builds' bytes over the time from release to the end of the last build's output. */
  totalBytesPerSecond: number;
  /** Release to the end of each build's output (its reader's digest), in milliseconds. */
  buildMs: number[];
  /** Sum of each relay's and receiver's peak RSS. */
  totalPeakRssBytes: number;
  /** Sum of their largest private (anonymous) RSS: memory not shared between processes. */
  totalAnonymousRssBytes: number;
  /** Largest single relay and receiver peak. */
  maxRelayRssBytes: number;
  maxReceiverRssBytes: number;
  /** Builds whose bytes and sha256 matched and whose status was 0. */
  wholeBuilds: number;
  /** 0 when every build's output was whole; null when any differed (by an unknown amount). */
  lostBytes: number | null;
}

/** Resolves when `pattern` shows up in `stream`; `text` resolves with everything at its end. */
function watchText(
  stream: ReadableStream<Uint8Array>,
  pattern: RegExp,
): { seen: Promise<void>; text: Promise<string> } {
  let resolveSeen!: () => void;
  const seen = new Promise<void>((resolve) => (resolveSeen = resolve));
  const text = (async () => {
    let all = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      all += chunk;
      if (pattern.test(all)) resolveSeen();
    }
    resolveSeen();
    return all;
  })();
  return { seen, text };
}

/** Peak RSS labels of build `i`, and how to find its processes under the bash wrapper. */
function watchBuild(sampler: ProcessSampler, i: number, wrapper: number): void {
  // Finding a child scans /proc: the relay's finder reuses the receiver once found.
  let receiverPid: number | undefined;
  const receiver = (): number | undefined => (receiverPid ??= childNamed(wrapper, "deno"));
  sampler.watch(`receiver-${i}`, receiver);
  sampler.watch(`relay-${i}`, () => {
    const pid = receiver();
    return pid === undefined ? undefined : childNamed(pid, "deno");
  });
}

async function round(context: BenchContext, corpus: Corpus, builds: number): Promise<ScaleRound> {
  const gate = `${context.workDir}/gate-${builds}-${crypto.randomUUID()}`;
  const made = await new Deno.Command("mkfifo", { args: [gate] }).output();
  if (!made.success) throw new Error(`mkfifo ${gate} failed.`);
  // Read-write, so opening never blocks and the newlines wait in the pipe for late readers.
  using gateFile = await Deno.open(gate, { read: true, write: true });
  const sampler = new ProcessSampler(SCALE_SAMPLE_INTERVAL_MS);
  const children = Array.from({ length: builds }, (_, i) => {
    // Each build has a reader of its own, as each push has its own SSH session: sha256sum,
    // so that one bench process reading every build does not become the bottleneck.
    const child = spawn("bash", [
      "-c",
      'set -o pipefail; "$@" | sha256sum',
      "bash",
      DENO,
      ...phonehomeBuildArgs(
        // Each build waits for its newline at the gate, then writes the corpus.
        ["sh", "-c", 'read -r _ < "$0"; exec cat "$1"', gate, corpus.path],
        ["--verbose"],
      ),
    ]);
    watchBuild(sampler, i, child.pid);
    return child;
  });
  const stderr = children.map((child) => watchText(child.stderr, /Relay connected/));
  const digests = children.map(async (child) => {
    const text = await new Response(child.stdout).text();
    return { sha256: text.split(" ")[0], doneAt: performance.now() };
  });
  let deadline: ReturnType<typeof setTimeout> | undefined;
  const connected = await Promise.race([
    Promise.all(stderr.map((watch) => watch.seen)).then(() => true),
    new Promise<boolean>((resolve) => (deadline = setTimeout(resolve, CONNECT_DEADLINE_MS, false))),
  ]);
  clearTimeout(deadline);
  if (!connected) context.failures.push(`scale, ${builds} builds: not every relay connected.`);
  const releasedAt = performance.now();
  await gateFile.write(new TextEncoder().encode("\n".repeat(builds)));
  const results = await Promise.all(digests);
  const statuses = await Promise.all(children.map((child) => child.status));
  sampler.sample();
  const peaks = sampler.stop();
  const anonymous = sampler.anonymousPeaks();
  const texts = await Promise.all(stderr.map((watch) => watch.text));
  await Deno.remove(gate).catch(() => {});

  let wholeBuilds = 0;
  results.forEach((result, i) => {
    if (result.sha256 === corpus.sha256 && statuses[i].success) {
      wholeBuilds++;
    } else {
      context.failures.push(
        `scale, build ${i + 1} of ${builds}: sha256 ${
          result.sha256 === corpus.sha256 ? "matches" : "differs"
        }, status ${statuses[i].code}; stderr: ${
          texts[i].trim().split("\n").slice(-3).join(" | ")
        }`,
      );
    }
  });
  const doneAt = Math.max(...results.map((result) => result.doneAt));
  const relays = Object.entries(peaks).filter(([label]) => label.startsWith("relay-"));
  const receivers = Object.entries(peaks).filter(([label]) => label.startsWith("receiver-"));
  return {
    builds,
    bytesPerBuild: corpus.bytes,
    totalBytesPerSecond: (builds * corpus.bytes) / ((doneAt - releasedAt) / 1000),
    buildMs: results.map((result) => result.doneAt - releasedAt),
    totalPeakRssBytes: Object.values(peaks).reduce((sum, peak) => sum + peak, 0),
    totalAnonymousRssBytes: Object.values(anonymous).reduce((sum, peak) => sum + peak, 0),
    maxRelayRssBytes: Math.max(...relays.map(([, peak]) => peak)),
    maxReceiverRssBytes: Math.max(...receivers.map(([, peak]) => peak)),
    wholeBuilds,
    lostBytes: wholeBuilds === builds ? 0 : null,
  };
}

/** Case 5: one build alone (median of several), then N at once. */
export async function scaleCase(context: BenchContext): Promise<void> {
  const { scaleBuilds, scaleBytes, scaleAloneRuns } = context.options;
  const corpus = await context.corpus(scaleBytes);
  const alone: ScaleRound[] = [];
  for (let i = 0; i < scaleAloneRuns; i++) {
    alone.push(await round(context, corpus, 1));
    context.progress(
      `scale: one build alone, run ${i + 1}/${scaleAloneRuns}: ${
        fixed(alone[i].totalBytesPerSecond / BYTES_PER_MB, 1)
      } MB/s`,
    );
  }
  context.progress(`scale: ${scaleBuilds} builds at once`);
  const many = await round(context, corpus, scaleBuilds);
  const aloneRate = median(alone.map((r) => r.totalBytesPerSecond));
  const aloneMs = median(alone.map((r) => r.buildMs[0]));
  const ratio = many.totalBytesPerSecond / aloneRate;
  context.progress(
    `scale: ${scaleBuilds} builds: ${fixed(many.totalBytesPerSecond / BYTES_PER_MB, 1)} MB/s ` +
      `in all, slowest ${fixed(Math.max(...many.buildMs), 0)} ms, ${many.wholeBuilds} whole`,
  );
  context.data.scale = { alone, many, ratio };
  const per = `${scaleBuilds} x ${mb(scaleBytes)}`;
  context.rows.push(
    {
      case: "5. Scale",
      figure: `total throughput, ${per}, MB/s`,
      phonehome: fixed(many.totalBytesPerSecond / BYTES_PER_MB, 1),
      baseline: `${fixed(aloneRate / BYTES_PER_MB, 1)} (one build alone)`,
      ratio: fixed(ratio, 2),
      target: `>= ${SCALE_TARGET_RATIO}`,
      met: ratio >= SCALE_TARGET_RATIO,
      how: `all builds connect, then start together, each read by its own sha256sum; all ` +
        `bytes over release to the end of the last output; alone: median of ${scaleAloneRuns} runs`,
    },
    {
      case: "5. Scale",
      figure: "slowest build, release to end of output, ms",
      phonehome: fixed(Math.max(...many.buildMs), 0),
      baseline: `${fixed(aloneMs, 0)} (one build alone)`,
      ratio: "",
      target: "",
      met: null,
      how: `median build ${fixed(median(many.buildMs), 0)} ms`,
    },
    {
      case: "5. Scale",
      figure: "total peak RSS, relays + receivers",
      phonehome: `${mb(many.totalPeakRssBytes)} (private ${mb(many.totalAnonymousRssBytes)})`,
      baseline: `${mb(alone[0].totalPeakRssBytes)} (private ${
        mb(alone[0].totalAnonymousRssBytes)
      }; one build alone)`,
      ratio: "",
      target: "",
      met: null,
      how: `sum of each process's VmHWM (private: of each one's largest RssAnon, as the ` +
        `deno executable's pages are shared); largest relay ${mb(many.maxRelayRssBytes)}, ` +
        `largest receiver ${mb(many.maxReceiverRssBytes)}`,
    },
    {
      case: "5. Scale",
      figure: "bytes lost",
      phonehome: `${many.lostBytes ?? "some"} (${many.wholeBuilds}/${scaleBuilds} builds whole)`,
      baseline: "",
      ratio: "",
      target: "0",
      met: many.lostBytes === 0 && many.wholeBuilds === scaleBuilds,
      how: "each build's output hashed by its reader and compared with the corpus; status 0",
    },
  );
}
