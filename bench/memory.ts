/**
 * Case 4: peak memory of relay and receiver at two corpus sizes, at full
 * speed and behind a throttled reader, against Deno itself (a script that
 * only waits); the full-speed run of the large corpus is the bulk case's
 * worst when it ran.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { peakRssBytes } from "../tests/support/proc_status.ts";
import type { BenchContext } from "./context.ts";
import { DENO, runRoute } from "./routes.ts";
import { BYTES_PER_MB, fixed, mb, sizeText } from "./stats.ts";
import type { ThroughputSeries } from "./throughput.ts";

const IDLE_DENO = fileURLToPath(new URL("./idle_deno.ts", import.meta.url));

/** The issue's target for each process's peak RSS. */
const RSS_TARGET_BYTES = 80 * BYTES_PER_MB;

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
