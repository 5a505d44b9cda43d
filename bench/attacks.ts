/**
 * Case 7: the receiver's memory under sustained attack by a holder of the
 * build's secret, each attack against a fresh `phonehome receive`: huge
 * messages before hello and pings before hello while a real build streams
 * (whose output must arrive whole, and whose duration is compared with the
 * same build undisturbed in the same run), and the stream's owner flooding
 * 1-byte DATA frames or pinging without reading, with no build.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { ATTACK_CONNECTIONS, type AttackMode, HUGE_MESSAGE_BYTES } from "./attack_modes.ts";
import { type AttackRun, attackRun, type StreamingBuild } from "./attack_run.ts";
import type { BenchContext, Row } from "./context.ts";
import { BYTES_PER_MB, BYTES_PER_MIB, fixed, mb } from "./stats.ts";

/** The receiver's bound under attack: peak RSS, the shared Deno executable included. */
export const ATTACK_RSS_TARGET_BYTES = 120 * BYTES_PER_MB;

/** What the real build prints at a time, and how often. */
const BUILD_CHUNK_BYTES = BYTES_PER_MIB;
const BUILD_INTERVAL_MS = 100;

/**
 * How much longer than the attack the build prints: it must have started
 * streaming before the attack begins and still be streaming when it ends.
 */
const BUILD_MARGIN_SECONDS = 3;

/** The status a receiver exits with when its stream's own relay breaks the protocol. */
const PROTOCOL_BROKEN_EXIT_CODE = 76;

/** A receiver's status after the bench's SIGTERM (128 + 15). */
const STOPPED_EXIT_CODE = 143;

/** What the case keeps in the results, for the JSON and the chart. */
export interface AttacksData {
  attackSeconds: number;
  /** The receiver's bound under attack, in bytes. */
  targetBytes: number;
  /** Bytes the real build prints. */
  buildBytes: number;
  /** The real build without an attack. */
  undisturbed: AttackRun;
  /** Each attack's run, named as in the table. */
  runs: Array<AttackRun & { name: string }>;
}

/** One attack of the case. */
interface AttackCase {
  mode: AttackMode;
  /** Short name, for the table. */
  name: string;
  /** What the attacker does, for the notes. */
  description: string;
  /** Whether a real build streams meanwhile (not when the attacker owns the stream). */
  withBuild: boolean;
}

const HUGE_MIB = HUGE_MESSAGE_BYTES / BYTES_PER_MIB;

const ATTACKS: readonly AttackCase[] = [
  {
    mode: "huge",
    name: `(a) ${HUGE_MIB} MiB messages before hello`,
    description: `${ATTACK_CONNECTIONS} connections each sending one ${HUGE_MIB} MiB binary ` +
      "message before hello, reconnecting after every close",
    withBuild: true,
  },
  {
    mode: "flood",
    name: "(b) the owner's 1-byte DATA frames",
    description: "the stream's owner (it says hello first; no build) sending 1-byte DATA " +
      "frames as fast as its client's buffer allows, reconnecting while welcomed",
    withBuild: false,
  },
  {
    mode: "pings",
    name: "(c) pings before hello, never read",
    description: `${ATTACK_CONNECTIONS} raw connections sending WebSocket pings and ` +
      `{"type":"ping"} messages without ever reading, reconnecting when dropped`,
    withBuild: true,
  },
  {
    mode: "owner-pings",
    name: "(d) the owner's pings, never read",
    description: "the stream's owner (no build) sending WebSocket pings and " +
      `{"type":"ping"} messages after hello without ever reading, reconnecting when dropped`,
    withBuild: false,
  },
];

/** Writes the build's chunk of random bytes; returns the build and what its output must be. */
async function streamingBuild(context: BenchContext, seconds: number): Promise<StreamingBuild> {
  const chunk = new Uint8Array(BUILD_CHUNK_BYTES);
  // getRandomValues fills at most 64 KiB at a time.
  for (let at = 0; at < chunk.byteLength; at += 65536) {
    crypto.getRandomValues(chunk.subarray(at, at + 65536));
  }
  const path = `${context.workDir}/attack-build-chunk.bin`;
  await Deno.writeFile(path, chunk);
  const chunks = Math.round(((seconds + BUILD_MARGIN_SECONDS) * 1000) / BUILD_INTERVAL_MS);
  const hash = createHash("sha256");
  for (let i = 0; i < chunks; i++) hash.update(chunk);
  return {
    command: [
      "sh",
      "-c",
      'i=0; while [ "$i" -lt "$1" ]; do cat "$2"; sleep "$3"; i=$((i+1)); done',
      "sh",
      String(chunks),
      path,
      String(BUILD_INTERVAL_MS / 1000),
    ],
    expected: { bytes: chunks * chunk.byteLength, sha256: hash.digest("hex") },
  };
}

function seconds(ms: number): string {
  return `${fixed(ms / 1000, 1)} s`;
}

function memoryText(run: AttackRun): string {
  return `${mb(run.receiverPeakRssBytes)} (private ${
    fixed(run.receiverPeakAnonymousRssBytes / BYTES_PER_MB, 1)
  })`;
}

function lines(count: number): string {
  return `${count} line${count === 1 ? "" : "s"}`;
}

/** The ways the attacker's connections ended, most frequent first. */
function endings(run: AttackRun): string {
  const ends = Object.entries(run.attack?.ends ?? {}).sort(([, a], [, b]) => b - a);
  return ends.map(([how, count]) => `${count} x ${how}`).join(", ");
}

/** One run of the case, beside the build undisturbed. */
interface Measured {
  /** The attack; undefined for the build undisturbed itself. */
  attack?: AttackCase;
  run: AttackRun;
  undisturbed: AttackRun;
}

/** Records what went wrong in a run: lost bytes, or a process that ended otherwise than it must. */
function checkRun(context: BenchContext, { attack, run }: Measured): void {
  const what = `attacks, ${attack?.name ?? "the build undisturbed"}`;
  if (run.build !== null) {
    if (!run.build.intact) {
      context.failures.push(
        `${what}: the build's output arrived ${run.build.bytes} bytes, not whole`,
      );
    }
    if (run.build.relayExitCode !== 0 || run.receiverExitCode !== 0) {
      context.failures.push(
        `${what}: relay exited ${run.build.relayExitCode}, receiver ${run.receiverExitCode}; ` +
          `relay: ${run.build.relayStderr}; receiver: ${run.receiverLog.slice(-3).join(" | ")}`,
      );
    }
  } else if (attack?.mode === "flood" && run.receiverExitCode !== PROTOCOL_BROKEN_EXIT_CODE) {
    context.failures.push(
      `${what}: the receiver exited ${run.receiverExitCode}, not ${PROTOCOL_BROKEN_EXIT_CODE}`,
    );
  } else if (attack?.mode === "owner-pings" && run.receiverExitCode !== STOPPED_EXIT_CODE) {
    context.failures.push(
      `${what}: the receiver exited ${run.receiverExitCode} before the bench stopped it`,
    );
  }
}

function outcomeRow({ attack, run, undisturbed }: Required<Measured>): Row {
  const said = `the receiver printed ${lines(run.receiverLines)}`;
  const row = { case: "7. Attacks", figure: `${attack.name}: outcome`, baseline: "", ratio: "" };
  if (run.build !== null && undisturbed.build !== null) {
    return {
      ...row,
      figure: `${attack.name}: the build's output; its duration`,
      phonehome: `${run.build.intact ? "intact" : "NOT intact"}, ${
        seconds(run.build.durationMs)
      }; ${said}`,
      baseline: `${seconds(undisturbed.build.durationMs)} (undisturbed; ${
        lines(undisturbed.receiverLines)
      })`,
      ratio: fixed(run.build.durationMs / undisturbed.build.durationMs, 2),
      target: "intact",
      met: run.build.intact,
      how: "the build's output hashed (SHA-256) at the receiver's stdout and compared; " +
        "duration: from starting the relay to the last byte; ratio: over the same build " +
        "undisturbed, in the same run; lines: the receiver's own, on its stderr",
    };
  }
  if (attack.mode === "flood") {
    const after = run.ownerEndedAfterMs === null ? "" : ` ${fixed(run.ownerEndedAfterMs, 0)} ms`;
    return {
      ...row,
      phonehome: `exit ${run.receiverExitCode}${after} after its welcome; ${said}`,
      target: `exit ${PROTOCOL_BROKEN_EXIT_CODE}`,
      met: run.receiverExitCode === PROTOCOL_BROKEN_EXIT_CODE,
      how: "time from the receiver's welcome to the attacker (the attacker's clock) to the " +
        "receiver's exit (the bench's clock), both wall clock; lines: the receiver's own",
    };
  }
  return {
    ...row,
    phonehome: `${run.attack?.connections ?? 0} connection(s), ${
      mb(run.attack?.bytesSent ?? 0)
    } sent; ${said}`,
    target: "",
    met: null,
    how: "the receiver waits for its owner to come back after the attack, so the bench " +
      "stops it (SIGTERM); lines: the receiver's own before that",
  };
}

function memoryRow(context: BenchContext, { attack, run, undisturbed }: Required<Measured>): Row {
  const attacker = run.attack;
  return {
    case: "7. Attacks",
    figure: `${attack.name}: receiver peak RSS`,
    phonehome: memoryText(run),
    baseline: `undisturbed build: ${memoryText(undisturbed)}`,
    ratio: "",
    target: `< ${fixed(ATTACK_RSS_TARGET_BYTES / BYTES_PER_MB, 0)} MB`,
    met: run.receiverPeakRssBytes < ATTACK_RSS_TARGET_BYTES,
    how: `${attack.description}, for ${context.options.attackSeconds} s` +
      (attack.withBuild ? ", while a real build streams" : "") +
      `; VmHWM of the receiver sampled every 20 ms; private: largest RssAnon sampled; ` +
      `the attacker opened ${attacker?.connections ?? 0} connection(s), sent ` +
      `${mb(attacker?.bytesSent ?? 0)}; they ended: ${endings(run) || "not at all"}`,
  };
}

/** Case 7: the build undisturbed, then each attack against a fresh receiver. */
export async function attacksCase(context: BenchContext): Promise<void> {
  const { attackSeconds } = context.options;
  const build = await streamingBuild(context, attackSeconds);
  const run = (attack: AttackCase | undefined): Promise<AttackRun> =>
    attackRun({
      mode: attack?.mode,
      attackSeconds,
      build: attack === undefined || attack.withBuild ? build : undefined,
      workDir: context.workDir,
    });
  context.progress(`attacks: the build undisturbed (${mb(build.expected.bytes)})`);
  const undisturbed = await run(undefined);
  checkRun(context, { run: undisturbed, undisturbed });
  const runs: AttackRun[] = [];
  for (const attack of ATTACKS) {
    context.progress(`attacks: ${attack.name}, ${attackSeconds} s`);
    const measured = { attack, run: await run(attack), undisturbed };
    checkRun(context, measured);
    context.progress(
      `attacks: ${attack.name}: receiver peak ${memoryText(measured.run)}, ` +
        `exit ${measured.run.receiverExitCode}, ${lines(measured.run.receiverLines)}`,
    );
    runs.push(measured.run);
    context.rows.push(memoryRow(context, measured), outcomeRow(measured));
  }
  const data: AttacksData = {
    attackSeconds,
    targetBytes: ATTACK_RSS_TARGET_BYTES,
    buildBytes: build.expected.bytes,
    undisturbed,
    runs: runs.map((done, i) => ({ name: ATTACKS[i].name, ...done })),
  };
  context.data.attacks = data;
}
