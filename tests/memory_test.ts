/**
 * Bounded memory: a slow reader of the receiver's stdout must slow the build,
 * not grow either side's memory, and nothing may be lost on the way.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  childPids,
  denoScript,
  LineWatcher,
  peakRssBytes,
  spawnPhonehome,
  tempDir,
  waitForFile,
} from "./support/processes.ts";

const TOKEN = "memory-test-secret";
const MiB = 1024 * 1024;

/** Bytes a process has written so far, from /proc/PID/io. */
function bytesWritten(pid: number): number {
  const match = /^wchar: (\d+)$/m.exec(Deno.readTextFileSync(`/proc/${pid}/io`));
  return match === null ? 0 : Number(match[1]);
}

Deno.test("a 1 MB/s reader slows the build instead of growing memory, and nothing is lost", async () => {
  await using dir = await tempDir();
  const total = 200 * MiB;
  const windowBytes = 4 * MiB;
  const report = `${dir.path}/report.json`;
  const receiver = spawnPhonehome(
    ["receive", "--listen=127.0.0.1:0", `--url-file=${dir.path}/url`, "--idle-interval=0"],
    { env: { PHONEHOME_TOKEN: TOKEN } },
  );
  const receiverErr = new LineWatcher(receiver.stderr);
  const url = (await waitForFile(`${dir.path}/url`)).trim();
  const relay = spawnPhonehome(
    [
      "relay",
      "--no-tee",
      `--window=${windowBytes}`,
      "--",
      ...denoScript("emit.ts", String(total), "0", "11", report),
    ],
    { env: { PHONEHOME_URL: url, PHONEHOME_TOKEN: TOKEN }, stdout: "null" },
  );
  const relayErr = new LineWatcher(relay.stderr);

  const reader = receiver.stdout.getReader();
  const hash = createHash("sha256");
  let read = 0;
  let peakRelay = 0;
  let peakReceiver = 0;
  // Sampled while both run; VmHWM is the peak since start, so a late sample loses nothing.
  const sample = (): void => {
    peakRelay = Math.max(peakRelay, peakRssBytes(relay.pid) ?? 0);
    peakReceiver = Math.max(peakReceiver, peakRssBytes(receiver.pid) ?? 0);
  };

  // Phase one: read about 1 MB a second for three seconds.
  const slowUntil = performance.now() + 3000;
  const startedAt = performance.now();
  while (performance.now() < slowUntil) {
    const { value, done } = await reader.read();
    if (done) break;
    hash.update(value);
    read += value.byteLength;
    // Pace the reader: it may be no further ahead than 1 MB per second of reading.
    const due = startedAt + (read / MiB) * 1000;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
  sample();
  assert.ok(peakRelay > 0 && peakReceiver > 0, "both sides were measured while running");
  const readSlowly = read;
  const [build] = childPids(relay.pid);
  assert.ok(build !== undefined, "the build is running under the relay");
  const written = bytesWritten(build);
  // The build may run ahead of the reader by the window plus the pipes and one frame each side.
  assert.ok(
    written <= read + windowBytes + 4 * MiB,
    `build wrote ${written} bytes while the reader had read ${read}`,
  );
  assert.ok(written < total / 4, "the build was held back");

  // Phase two: read the rest at full speed.
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    hash.update(value);
    read += value.byteLength;
    if (read % (32 * MiB) < value.byteLength) sample();
  }
  const [relayStatus, receiverStatus] = await Promise.all([relay.status, receiver.status]);
  assert.equal(relayStatus.code, 0, await relayErr.done);
  assert.equal(receiverStatus.code, 0, await receiverErr.done);
  const expected = JSON.parse(await Deno.readTextFile(report)).stdout;
  assert.deepEqual({ bytes: read, sha256: hash.digest("hex") }, expected);
  // Deno itself needs about 40-60 MB; the stream may add the window and little else.
  assert.ok(peakRelay < 120 * MiB, `relay peak RSS ${peakRelay}`);
  assert.ok(peakReceiver < 120 * MiB, `receiver peak RSS ${peakReceiver}`);
  console.log(
    `peak RSS: relay ${(peakRelay / MiB).toFixed(1)} MiB, receiver ${
      (peakReceiver / MiB).toFixed(1)
    } MiB; ` +
      `build wrote ${(written / MiB).toFixed(1)} MiB while the slow reader read ${
        (readSlowly / MiB).toFixed(1)
      } MiB`,
  );
});
