/**
 * One run of the attacks case against a fresh `phonehome receive`: a real
 * build streaming through a relay, an attacker holding the build's secret, or
 * both, with the receiver's memory sampled from /proc all along, its output
 * hashed and its own lines counted.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { generateToken, RELAY_ENV } from "../src/protocol/mod.ts";
import { LineWatcher, waitForFile } from "../tests/support/processes.ts";
import type { AttackMode, AttackTally } from "./attack_modes.ts";
import type { CorpusDigest } from "./corpus.ts";
import { ProcessSampler } from "./process_sampler.ts";
import { readOutput } from "./reader.ts";
import { DENO, phonehomeArgs, spawn } from "./routes.ts";

const ATTACKER = fileURLToPath(new URL("./attacker.ts", import.meta.url));

/**
 * How long a receiver whose stream the attacker owns may take to end by
 * itself once the attack is over, before the bench stops it: nothing else
 * would, as it waits for its owner to come back.
 */
const SETTLE_MS = 500;

/** Beyond the attack, how long a run may take before everything is killed and it fails. */
const RUN_SLACK_MS = 120_000;

/** Receiver lines kept in the results: the first and the last few. */
const LOG_HEAD_LINES = 10;
const LOG_TAIL_LINES = 5;

/** A build that streams to the receiver through a real relay. */
export interface StreamingBuild {
  /** The build command. */
  command: readonly string[];
  /** What its output must be. */
  expected: CorpusDigest;
}

/** Settings of one run. */
export interface AttackRunOptions {
  /** The attack, or undefined for the build undisturbed. */
  mode?: AttackMode;
  /** How long the attack lasts. */
  attackSeconds: number;
  /** The real build, or undefined when the attacker owns the stream. */
  build?: StreamingBuild;
  /** Where the receiver writes its URL. */
  workDir: string;
}

/** How the real build fared. */
export interface BuildOutcome {
  /** Whether its output arrived whole: size and SHA-256. */
  intact: boolean;
  bytes: number;
  /** From starting the relay to the last byte at the receiver's output. */
  durationMs: number;
  relayExitCode: number;
  /** The relay's last words, for a failure report. */
  relayStderr: string;
}

/** What one run measured. */
export interface AttackRun {
  mode: AttackMode | null;
  /** VmHWM of the receiver. */
  receiverPeakRssBytes: number;
  /** Its largest RssAnon sampled. */
  receiverPeakAnonymousRssBytes: number;
  receiverExitCode: number;
  /** Whether the bench stopped the receiver (SIGTERM) after the attack. */
  receiverStopped: boolean;
  /**
   * From the receiver's first welcome to the attacker to the receiver's exit,
   * when it ended by itself; null otherwise.
   */
  ownerEndedAfterMs: number | null;
  /** Lines the receiver printed (on stderr), not counting its answer to the bench's SIGTERM. */
  receiverLines: number;
  /** The first and last of them. */
  receiverLog: string[];
  /** The real build; null when there was none. */
  build: BuildOutcome | null;
  /** What the attacker did; null when there was none. */
  attack: AttackTally | null;
}

function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

async function attackerTally(attacker: Deno.ChildProcess): Promise<AttackTally> {
  const [stdout, stderr, status] = await Promise.all([
    new Response(attacker.stdout).text(),
    new Response(attacker.stderr).text(),
    attacker.status,
  ]);
  if (!status.success) throw new Error(`The attacker failed (${status.code}): ${stderr.trim()}`);
  return JSON.parse(stdout) as AttackTally;
}

function excerpt(lines: readonly string[]): string[] {
  return lines.length <= LOG_HEAD_LINES + LOG_TAIL_LINES
    ? [...lines]
    : [...lines.slice(0, LOG_HEAD_LINES), "...", ...lines.slice(-LOG_TAIL_LINES)];
}

/** Runs a fresh receiver with the build, the attack, or both, and measures it. */
export async function attackRun(options: AttackRunOptions): Promise<AttackRun> {
  const token = generateToken();
  const urlFile = `${options.workDir}/receiver-url-${crypto.randomUUID()}`;
  const receiver = spawn(
    DENO,
    phonehomeArgs("receive", "--listen=127.0.0.1:0", `--url-file=${urlFile}`, "--idle-interval=0"),
    { [RELAY_ENV.token]: token },
  );
  const receiverEnded = receiver.status.then((status) => ({ status, atEpochMs: epochNow() }));
  const sampler = new ProcessSampler();
  sampler.watch("receiver", () => receiver.pid);
  const log = new LineWatcher(receiver.stderr);
  let buildArrived = (): void => {};
  const firstByte = new Promise<void>((resolve) => (buildArrived = resolve));
  const output = readOutput(receiver.stdout, { onFirstByte: () => buildArrived() });
  const children: Deno.ChildProcess[] = [receiver];
  const killAll = (): void => {
    for (const child of children) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Gone already.
      }
    }
  };
  const deadline = setTimeout(killAll, options.attackSeconds * 1000 + RUN_SLACK_MS);
  try {
    const url = (await waitForFile(urlFile)).trim();
    let relay: { child: Deno.ChildProcess; startedAt: number; stderr: Promise<string> } | undefined;
    if (options.build !== undefined) {
      const child = spawn(
        DENO,
        phonehomeArgs("relay", "--no-tee", "--", ...options.build.command),
        {
          [RELAY_ENV.url]: url,
          [RELAY_ENV.token]: token,
        },
      );
      children.push(child);
      relay = { child, startedAt: performance.now(), stderr: new Response(child.stderr).text() };
      await child.stdout.cancel();
      // The relay owns the stream before the attack starts: its first bytes have arrived.
      await Promise.race([firstByte, child.status]);
    }
    let attack: AttackTally | null = null;
    if (options.mode !== undefined) {
      const attacker = spawn(
        DENO,
        ["run", "-A", "--quiet", ATTACKER, options.mode, url, String(options.attackSeconds)],
        { [RELAY_ENV.token]: token },
      );
      children.push(attacker);
      attack = await attackerTally(attacker);
    }

    let receiverStopped = false;
    let receiverLines: number | undefined;
    if (relay === undefined) {
      const settled = await Promise.race([
        receiverEnded.then(() => true),
        new Promise<false>((resolve) => setTimeout(() => resolve(false), SETTLE_MS)),
      ]);
      if (!settled) {
        receiverLines = log.lines.length;
        receiver.kill("SIGTERM");
        receiverStopped = true;
      }
    }
    const [ended, read, relayStatus] = await Promise.all([
      receiverEnded,
      output,
      relay?.child.status,
    ]);
    await log.done;
    const welcomedAt = attack?.firstWelcomeAtEpochMs ?? null;
    let build: BuildOutcome | null = null;
    if (relay !== undefined && options.build !== undefined) {
      build = {
        intact: read.bytes === options.build.expected.bytes &&
          read.sha256 === options.build.expected.sha256,
        bytes: read.bytes,
        durationMs: read.lastByteAt - relay.startedAt,
        relayExitCode: relayStatus?.code ?? -1,
        relayStderr: (await relay.stderr).trim().split("\n").slice(-5).join(" | "),
      };
    }
    sampler.sample();
    return {
      mode: options.mode ?? null,
      receiverPeakRssBytes: sampler.stop().receiver,
      receiverPeakAnonymousRssBytes: sampler.anonymousPeaks().receiver,
      receiverExitCode: ended.status.code,
      receiverStopped,
      ownerEndedAfterMs: welcomedAt === null || receiverStopped
        ? null
        : ended.atEpochMs - welcomedAt,
      receiverLines: receiverLines ?? log.lines.length,
      receiverLog: excerpt(log.lines),
      build,
      attack,
    };
  } catch (error) {
    // Nothing of a failed run may linger into the next one.
    killAll();
    throw error;
  } finally {
    sampler.stop();
    clearTimeout(deadline);
  }
}
