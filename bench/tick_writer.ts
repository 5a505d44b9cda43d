/**
 * The build of the latency cases: prints COUNT lines, one every INTERVAL_MS
 * milliseconds, each starting with the wall-clock time (milliseconds since
 * the epoch, microsecond precision) taken right before its write, so that
 * the reader can tell how long the line took to arrive.
 * Usage: tick_writer.ts INTERVAL_MS COUNT [START_DELAY_MS]
 *
 * @module
 */

const intervalMs = Number(Deno.args[0]);
const count = Number(Deno.args[1]);
const startDelayMs = Number(Deno.args[2] ?? 0);
const encoder = new TextEncoder();
const startedMs = performance.now() + startDelayMs;
for (let index = 0; index < count; index++) {
  const wait = startedMs + index * intervalMs - performance.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  const stamp = (performance.timeOrigin + performance.now()).toFixed(3);
  const line = encoder.encode(`${stamp} tick ${index} of ${count}: compiling step ${index}\n`);
  let done = 0;
  while (done < line.byteLength) done += Deno.stdout.writeSync(line.subarray(done));
}
