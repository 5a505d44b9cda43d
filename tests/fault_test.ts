/**
 * The fault suite: relay and receiver as real processes with a fault-injecting
 * proxy between them. Every case checks, per stream, that the sha256 of what
 * the build wrote equals the sha256 of what the receiver wrote, and that the
 * build's exit status arrived. Set PHONEHOME_FAULT_SEED to replay a random run.
 */

import assert from "node:assert/strict";
import { type Fault, FaultProxy, isControl, seededRandom } from "./support/fault_proxy.ts";
import {
  denoScript,
  digestStream,
  LineWatcher,
  readAll,
  sha256,
  spawnPhonehome,
  type StreamDigest,
  tempDir,
  waitForFile,
} from "./support/processes.ts";
import { STREAM_PATH } from "../src/protocol/mod.ts";

const TOKEN = "fault-suite-secret";
const KiB = 1024;
const MiB = 1024 * KiB;

/** What the whole suite did, printed by its last test. */
const totals = {
  runs: 0,
  drops: 0,
  stalls: 0,
  halfCloses: 0,
  resentBytes: 0,
  lost: 0,
  duplicated: 0,
};

interface FaultRun {
  relayLog: string;
  receiverLog: string;
  proxy: FaultProxy;
}

interface RunOptions {
  /** What to do to the n-th connection. */
  plan: (index: number) => Fault;
  /** The build command; by default emit.ts with the sizes below, exiting 3. */
  command?: string[];
  stdoutBytes?: number;
  stderrBytes?: number;
  /** Names the run in failure messages (the seed, for random plans). */
  label: string;
  pingIntervalMs?: number;
  /** Run the build with one pipe for stdout and stderr (relay --merge). */
  merge?: boolean;
}

const NOTE_START = new TextEncoder().encode("phonehome: ");

/**
 * Splits the receiver's stderr into the build's bytes and phonehome's own
 * notes, which are written whole between the build's chunks, each on a line of
 * its own: the build's stderr (emit.ts) holds no newline, so a newline right
 * before a note is phonehome's.
 */
function separateNotes(bytes: Uint8Array): { output: Uint8Array; notes: string[] } {
  const output: number[] = [];
  const notes: string[] = [];
  let i = 0;
  while (i < bytes.length) {
    if (NOTE_START.every((b, j) => bytes[i + j] === b)) {
      if (output.at(-1) === 10) output.pop();
      const end = bytes.indexOf(10, i);
      notes.push(new TextDecoder().decode(bytes.subarray(i, end)));
      i = end + 1;
    } else {
      output.push(bytes[i++]);
    }
  }
  return { output: Uint8Array.from(output), notes };
}

function compare(label: string, stream: string, got: StreamDigest, wrote: StreamDigest): void {
  if (got.bytes < wrote.bytes) totals.lost += wrote.bytes - got.bytes;
  if (got.bytes > wrote.bytes) totals.duplicated += got.bytes - wrote.bytes;
  assert.deepEqual(
    { bytes: got.bytes, sha256: got.sha256 },
    wrote,
    `${label}: ${stream} differs from what the build wrote`,
  );
}

/** Streams one build through the proxy and checks both streams and the exit status. */
async function runThroughProxy(options: RunOptions): Promise<FaultRun> {
  await using dir = await tempDir();
  const ping = `--ping-interval=${options.pingIntervalMs ?? 100}`;
  const receiver = spawnPhonehome(
    [
      "receive",
      "--listen=127.0.0.1:0",
      `--url-file=${dir.path}/url`,
      "--idle-interval=0",
      "--reconnect-grace=20000",
      ping,
    ],
    { env: { PHONEHOME_TOKEN: TOKEN } },
  );
  const receiverOut = digestStream(receiver.stdout);
  const receiverErr = readAll(receiver.stderr);
  const url = new URL((await waitForFile(`${dir.path}/url`)).trim());
  const proxy = FaultProxy.start(Number(url.port), options.plan);
  const report = `${dir.path}/report.json`;
  const command = options.command ??
    denoScript(
      "emit.ts",
      String(options.stdoutBytes ?? 4 * MiB),
      String(options.stderrBytes ?? MiB),
      String(totals.runs + 1),
      report,
      "3",
    );
  const relay = spawnPhonehome(
    [
      "relay",
      "--no-tee",
      "--window=262144",
      "--reconnect-grace=20000",
      ping,
      ...(options.merge ? ["--merge"] : []),
      "--",
      ...command,
    ],
    {
      env: {
        PHONEHOME_URL: `ws://127.0.0.1:${proxy.port}${STREAM_PATH}`,
        PHONEHOME_TOKEN: TOKEN,
      },
      stdout: "null",
    },
  );
  const relayErr = new LineWatcher(relay.stderr);
  const [relayStatus, receiverStatus, stdout, stderr, relayLog] = await Promise.all([
    relay.status,
    receiver.status,
    receiverOut,
    receiverErr,
    relayErr.done,
  ]);
  await proxy.close();
  const { output: buildStderr, notes } = separateNotes(stderr);
  const receiverLog = notes.join("\n");
  const context = `${options.label}\nrelay said:\n${relayLog}\nreceiver said:\n${receiverLog}`;
  totals.runs++;
  totals.drops += proxy.stats.cuts;
  totals.stalls += proxy.stats.stalls;
  totals.halfCloses += proxy.stats.halfCloses;
  const resent = /resending (\d+) bytes/.exec(relayLog);
  if (resent !== null) totals.resentBytes += Number(resent[1]);
  if (options.command === undefined) {
    const wrote = JSON.parse(await Deno.readTextFile(report));
    assert.equal(relayStatus.code, 3, context);
    assert.equal(receiverStatus.code, 3, context);
    const stderrGot = { bytes: buildStderr.length, sha256: sha256(buildStderr) };
    if (options.merge) {
      // One pipe carries both streams: stdout holds everything, in the order it was written.
      compare(context, "stdout", stdout, wrote.combined);
      compare(context, "stderr", stderrGot, { bytes: 0, sha256: sha256("") });
    } else {
      compare(context, "stdout", stdout, wrote.stdout);
      compare(context, "stderr", stderrGot, wrote.stderr);
    }
  }
  return { relayLog, receiverLog, proxy };
}

Deno.test("the stream survives many cuts at random byte offsets in both directions", async (t) => {
  const seeds = Deno.env.get("PHONEHOME_FAULT_SEED")
    ? [Number(Deno.env.get("PHONEHOME_FAULT_SEED"))]
    : [1, 2, 3, (Date.now() % 100_000) + 4];
  for (const seed of seeds) {
    await t.step(`seed ${seed}`, async () => {
      const random = seededRandom(seed);
      const cuts = 6;
      const run = await runThroughProxy({
        label: `seed ${seed} (replay with PHONEHOME_FAULT_SEED=${seed})`,
        plan: (index) => {
          if (index >= cuts) return {};
          return random() < 0.75
            ? { cutAfter: { direction: "up", bytes: Math.floor(random() * 1.5 * MiB) } }
            : { cutAfter: { direction: "down", bytes: Math.floor(random() * 400) } };
        },
      });
      assert.ok(run.proxy.stats.cuts >= 1, `seed ${seed}: no cut happened`);
    });
  }
});

Deno.test("with one pipe for both streams, cuts and resends keep the build's own order", async (t) => {
  for (const seed of [5, 6]) {
    await t.step(`seed ${seed}`, async () => {
      const random = seededRandom(seed);
      const run = await runThroughProxy({
        label: `merged, seed ${seed}`,
        merge: true,
        plan: (index) =>
          index < 4
            ? { cutAfter: { direction: "up", bytes: Math.floor(random() * 1.5 * MiB) } }
            : {},
      });
      assert.ok(run.proxy.stats.cuts >= 1, `seed ${seed}: no cut happened`);
    });
  }
});

Deno.test("a drop during the handshake is retried and the stream completes", async (t) => {
  const plans: Array<[string, Fault]> = [
    ["inside the HTTP upgrade request", { cutAfter: { direction: "up", bytes: 40 } }],
    ["inside the upgrade response", { cutAfter: { direction: "down", bytes: 30 } }],
    ["with the hello in flight", {
      cutOnMessage: { direction: "up", matches: isControl("hello") },
    }],
    ["with the welcome in flight", {
      cutOnMessage: { direction: "down", matches: isControl("welcome") },
    }],
  ];
  for (const [where, fault] of plans) {
    await t.step(where, async () => {
      const run = await runThroughProxy({
        label: where,
        plan: (i) => (i === 0 ? fault : {}),
        stderrBytes: 0,
      });
      assert.ok(run.proxy.stats.cuts >= 1, "the fault was injected");
    });
  }
});

Deno.test("FINISHED lost in flight is sent again after the reconnect", async () => {
  const run = await runThroughProxy({
    label: "finished lost",
    stderrBytes: 0,
    plan: (
      i,
    ) => (i === 0 ? { cutOnMessage: { direction: "up", matches: isControl("finished") } } : {}),
  });
  assert.ok(run.proxy.stats.cuts >= 1, "the fault was injected");
  assert.match(run.relayLog, /Lost the connection to the receiver/);
});

Deno.test("a verdict lost in flight reaches the relay on its reconnect", async () => {
  const run = await runThroughProxy({
    label: "verdict lost",
    stderrBytes: 0,
    plan: (
      i,
    ) => (i === 0 ? { cutOnMessage: { direction: "down", matches: isControl("verdict") } } : {}),
  });
  assert.ok(run.proxy.stats.cuts >= 1, "the fault was injected");
  assert.doesNotMatch(run.relayLog, /Could not phone home/);
});

Deno.test("a stalled, half-open connection is noticed by pings on both sides and resumed", async () => {
  const run = await runThroughProxy({
    label: "stall",
    stderrBytes: 0,
    plan: (i) => (i === 0 ? { stallAfter: { direction: "up", bytes: 600 * KiB } } : {}),
  });
  assert.equal(run.proxy.stats.stalls, 1);
  assert.match(run.relayLog, /no answer to pings/);
});

Deno.test("a connection closed in one direction only is resumed", async (t) => {
  for (const direction of ["down", "up"] as const) {
    await t.step(`closed ${direction}`, async () => {
      const run = await runThroughProxy({
        label: `half-close ${direction}`,
        stderrBytes: 0,
        plan: (i) => (i === 0 ? { halfCloseAfter: { direction, upBytes: 300 * KiB } } : {}),
      });
      assert.equal(run.proxy.stats.halfCloses, 1);
    });
  }
});

Deno.test("a slow, delayed link delivers everything", async () => {
  await runThroughProxy({
    label: "delay",
    stdoutBytes: 512 * KiB,
    stderrBytes: 0,
    plan: () => ({ delayMs: 3 }),
  });
});

Deno.test("a build silent for many ping timeouts is never declared dead", async () => {
  // Forty ping intervals of silence: liveness comes from pings, not from output.
  const run = await runThroughProxy({
    label: "silence",
    pingIntervalMs: 50,
    command: ["sh", "-c", "echo before; sleep 2; echo after"],
    plan: () => ({}),
  });
  assert.doesNotMatch(run.receiverLog, /Lost the connection/);
  assert.doesNotMatch(run.relayLog, /Lost the connection/);
});

Deno.test("fault suite summary: drops injected, bytes resent, nothing lost or duplicated", async () => {
  // A cut build of its own first, so the summary holds whether it runs alone, first or last.
  const run = await runThroughProxy({
    label: "summary",
    stdoutBytes: MiB,
    stderrBytes: 0,
    plan: (i) => (i === 0 ? { cutAfter: { direction: "up", bytes: 256 * KiB } } : {}),
  });
  assert.ok(run.proxy.stats.cuts >= 1, "the summary's own fault was injected");
  console.log(
    `fault suite: ${totals.runs} builds, ${totals.drops} drops, ${totals.stalls} stalls, ` +
      `${totals.halfCloses} half-closes injected; ${totals.resentBytes} bytes resent; ` +
      `${totals.lost} bytes lost, ${totals.duplicated} bytes duplicated`,
  );
  assert.ok(totals.drops > 0, "faults were injected");
  assert.equal(totals.lost, 0);
  assert.equal(totals.duplicated, 0);
});
