/**
 * Case 5: many builds at once on one machine, each a real `phonehome build`
 * (receiver and relay) streaming the same corpus; total throughput against a
 * single build alone, the slowest build, total memory, and every byte
 * checked. All builds connect first and then start writing together, so that
 * starting 2×N Deno processes is not mistaken for streaming. The same rounds
 * over pairs of socat show what the machine itself does with N streams.
 *
 * @module
 */

import type { BenchContext, Corpus } from "./context.ts";
import { ProcessSampler } from "./process_sampler.ts";
import {
  childNamed,
  DENO,
  freePort,
  phonehomeBuildArgs,
  SOCAT_SENDER_SCRIPT,
  spawn,
} from "./routes.ts";
import { BYTES_PER_MB, fixed, mb, median } from "./stats.ts";

/** Target from the issue: N builds together move at least this share of one build alone. */
const SCALE_TARGET_RATIO = 0.9;

/**
 * Each build's reader: cksum (CRC-32 and the byte count), as each push has its
 * own reader. sha256sum runs at about 350 MB/s here, slower than one build
 * streams: it was the slowest stage of a build alone, and the 50 readers took a
 * fifth of the machine's CPU from the builds they read.
 */
const READER = "cksum";

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
  /** Builds whose bytes and checksum matched and whose status was 0. */
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

/** What each build of a round runs, and how to watch it. */
interface Lane {
  /** The command of a build, whose stdout is the reader's input, writing once `gate` opens. */
  command(gate: string): string[];
  /** Seen on a build's stderr once it is connected and waiting for the gate. */
  connected: RegExp;
  /** Labels its processes for the sampler, when they are phonehome's. */
  watch?(sampler: ProcessSampler, i: number, wrapper: number): void;
}

/** Writes the corpus once the gate opens: the build of every lane. */
function gatedWriter(gate: string, corpus: Corpus): string[] {
  return ["sh", "-c", 'read -r _ < "$0"; exec cat "$1"', gate, corpus.path];
}

/** `phonehome build` of the gated writer. */
function phonehomeLane(corpus: Corpus): Lane {
  return {
    command: (gate) => [DENO, ...phonehomeBuildArgs(gatedWriter(gate, corpus), ["--verbose"])],
    connected: /Relay connected/,
    watch: watchBuild,
  };
}

/** The throughput baseline's socat pair around the gated writer, the listener printing. */
function socatLane(corpus: Corpus, blockBytes: number): Lane {
  const script = `${SOCAT_SENDER_SCRIPT} & exec socat -d -d -b "$block" -u ` +
    '"TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" STDOUT';
  return {
    command: (gate) => [
      "sh",
      "-c",
      script,
      "sh",
      String(freePort()),
      String(blockBytes),
      ...gatedWriter(gate, corpus),
    ],
    connected: /starting data transfer loop/,
  };
}

/** What `cksum` prints for the corpus, as each build's reader should. */
async function checksumOf(corpus: Corpus): Promise<string> {
  const output = await new Deno.Command("sh", {
    args: ["-c", `${READER} < "$0"`, corpus.path],
    stdout: "piped",
  }).output();
  if (!output.success) throw new Error(`${READER} of ${corpus.path} failed.`);
  return new TextDecoder().decode(output.stdout).trim();
}

async function round(
  context: BenchContext,
  corpus: Corpus,
  options: { builds: number; lane: Lane; expected: string },
): Promise<ScaleRound> {
  const { builds, lane, expected } = options;
  const gate = `${context.workDir}/gate-${builds}-${crypto.randomUUID()}`;
  const made = await new Deno.Command("mkfifo", { args: [gate] }).output();
  if (!made.success) throw new Error(`mkfifo ${gate} failed.`);
  // Read-write, so opening never blocks and the newlines wait in the pipe for late readers.
  using gateFile = await Deno.open(gate, { read: true, write: true });
  const sampler = new ProcessSampler(SCALE_SAMPLE_INTERVAL_MS);
  const children = Array.from({ length: builds }, (_, i) => {
    // Each build has a reader of its own, as each push has its own SSH session, so that one
    // bench process reading every build does not become the bottleneck.
    const child = spawn("bash", [
      "-c",
      `set -o pipefail; "$@" | ${READER}`,
      "bash",
      ...lane.command(gate),
    ]);
    lane.watch?.(sampler, i, child.pid);
    return child;
  });
  const stderr = children.map((child) => watchText(child.stderr, lane.connected));
  const digests = children.map(async (child) => {
    const text = await new Response(child.stdout).text();
    return { checksum: text.trim(), doneAt: performance.now() };
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
    if (result.checksum === expected && statuses[i].success) {
      wholeBuilds++;
    } else {
      context.failures.push(
        `scale, build ${i + 1} of ${builds}: ${READER} ${
          result.checksum === expected ? "matches" : "differs"
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

/** Rounds of one lane: a build alone, several times, then N at once. */
async function laneRounds(
  context: BenchContext,
  corpus: Corpus,
  options: { name: string; lane: Lane; expected: string },
): Promise<{ alone: ScaleRound[]; many: ScaleRound }> {
  const { name, lane, expected } = options;
  const { scaleBuilds, scaleAloneRuns } = context.options;
  const alone: ScaleRound[] = [];
  for (let i = 0; i < scaleAloneRuns; i++) {
    alone.push(await round(context, corpus, { builds: 1, lane, expected }));
    context.progress(
      `scale, ${name}: one build alone, run ${i + 1}/${scaleAloneRuns}: ${
        fixed(alone[i].totalBytesPerSecond / BYTES_PER_MB, 1)
      } MB/s`,
    );
  }
  context.progress(`scale, ${name}: ${scaleBuilds} builds at once`);
  const many = await round(context, corpus, { builds: scaleBuilds, lane, expected });
  context.progress(
    `scale, ${name}: ${scaleBuilds} builds: ${
      fixed(many.totalBytesPerSecond / BYTES_PER_MB, 1)
    } MB/s in all, slowest ${fixed(Math.max(...many.buildMs), 0)} ms, ${many.wholeBuilds} whole`,
  );
  return { alone, many };
}

/** Case 5: one build alone (median of several), then N at once; then the same over socat. */
export async function scaleCase(context: BenchContext): Promise<void> {
  const { scaleBuilds, scaleBytes, scaleAloneRuns, socatBlockBytes } = context.options;
  const corpus = await context.corpus(scaleBytes);
  const expected = await checksumOf(corpus);
  const { alone, many } = await laneRounds(context, corpus, {
    name: "phonehome",
    lane: phonehomeLane(corpus),
    expected,
  });
  const socat = await laneRounds(context, corpus, {
    name: "socat",
    lane: socatLane(corpus, socatBlockBytes),
    expected,
  });
  const aloneRate = median(alone.map((r) => r.totalBytesPerSecond));
  const aloneMs = median(alone.map((r) => r.buildMs[0]));
  const ratio = many.totalBytesPerSecond / aloneRate;
  const socatAloneRate = median(socat.alone.map((r) => r.totalBytesPerSecond));
  const socatRatio = socat.many.totalBytesPerSecond / socatAloneRate;
  context.data.scale = { alone, many, ratio, socat: { ...socat, ratio: socatRatio } };
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
      how: `all builds connect, then start together, each read by its own ${READER}; all ` +
        `bytes over release to the end of the last output; alone: median of ${scaleAloneRuns} runs`,
    },
    {
      case: "5. Scale",
      figure: `socat, the same: total throughput, ${per}, MB/s`,
      phonehome: fixed(socat.many.totalBytesPerSecond / BYTES_PER_MB, 1),
      baseline: `${fixed(socatAloneRate / BYTES_PER_MB, 1)} (one socat pair alone)`,
      ratio: fixed(socatRatio, 2),
      target: "",
      met: null,
      how: `what the machine does with ${scaleBuilds} streams: each build's writer into a socat ` +
        `that connects to a listening socat (-b ${socatBlockBytes}), read by its own ` +
        `${READER}, in the same rounds; the figure over phonehome's: ` +
        fixed(many.totalBytesPerSecond / socat.many.totalBytesPerSecond, 2),
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
