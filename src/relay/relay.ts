/**
 * The pod-side relay: runs the build command, streams its stdout and stderr to
 * the receiver (and to its own outputs for the pod log), forwards signals to
 * the build's process group, and reports the exit status in FINISHED.
 *
 * @module
 */

import { PhonehomeError } from "../errors.ts";
import { ExitCode } from "../exit_codes.ts";
import { formatDuration } from "../format.ts";
import { settlesWithin, type Timer } from "../timing.ts";
import { type ByteSink, OrderedWriter } from "../io.ts";
import {
  EMPTY_CRC32,
  type ExitStatus,
  type FinishedMessage,
  RELAY_SECRET_ENV,
  type StreamName,
} from "../protocol/mod.ts";
import { adoptOrphans, descendantsOf, reapOrphans, stopDescendants } from "../process_tree.ts";
import { BuildProcess } from "./build_process.ts";
import { Outbox } from "./outbox.ts";
import { trustingWebSocketOpener } from "./connection_attempt.ts";
import { PhoneLine } from "./phone_line.ts";
import { setUpSource } from "./source_setup.ts";
import { SourceFetch } from "./source_fetch.ts";
import { StreamPump } from "./stream_pump.ts";
import type { RelayTuningValues } from "./tuning.ts";

/** Signals the relay passes on to the build's process group. */
const FORWARDED_SIGNALS: readonly Deno.Signal[] = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"];

/**
 * How long the build gets between SIGTERM and SIGKILL once nobody can receive
 * its output any more (the receiver said it is going away, or the launcher
 * is gone): short, since nothing it prints can reach anyone.
 */
const ORPHANED_KILL_GRACE_MS = 1_000;

/** How long stopping the build's leftover processes may take. */
const LEFTOVER_STOP_TIMEOUT_MS = 5_000;

/** Settings of a relay run: its tuning, and what only the relay's own command line sets. */
export interface RelayOptions extends RelayTuningValues {
  /** The build command and its arguments. */
  command: readonly string[];
  /** The receiver's URL. */
  url: string;
  /** The per-build secret. */
  token: string;
  /** The CA that vouches for a wss:// receiver (PEM), beside Deno's built-in roots. */
  caPem?: string;
  /** How long to keep trying to reach the receiver at first. */
  connectTimeoutMs: number;
  /** After passing on a signal, how long the build gets before its group is killed. */
  killGraceMs: number;
  /** How long a partial frame waits for more output. */
  coalesceDelayMs: number;
  /** Where the build runs (and its source is unpacked); the relay's own directory by default. */
  workdir?: string;
  /** Copy the build's output to the relay's own stdout and stderr. */
  tee: boolean;
  /**
   * Stop the build and exit as soon as stdin ends: a launcher that holds the
   * other end of the pipe closes it when it is gone, or when its receiver is.
   */
  lifeline: boolean;
  /** The relay's stdout (the pod log). */
  stdout: ByteSink;
  /** The relay's stderr (the pod log, and phonehome's own messages). */
  stderr: ByteSink;
}

function buildEnvironment(): Record<string, string> {
  const env = Deno.env.toObject();
  // The build must not be able to forge its own stream or learn the secret.
  for (const name of RELAY_SECRET_ENV) delete env[name];
  return env;
}

/** "a process", "3 processes". */
function processes(count: number): string {
  return count > 1 ? `${count} processes` : "a process";
}

/** Resolves when `stream` ends (or fails); what it carries is thrown away. */
async function waitForEnd(stream: ReadableStream<Uint8Array>): Promise<void> {
  try {
    for await (const _ of stream) {
      // Nothing is ever sent on a lifeline; only its end matters.
    }
  } catch {
    // A failed read means the other end is gone too.
  }
}

/**
 * Stops the build: a signal to its process group now, SIGKILL to the group
 * and every descendant when the grace runs out. A later, shorter grace wins.
 */
class BuildStopper {
  #build: BuildProcess;
  #log: (text: string) => void;
  #timer: Timer | undefined;
  #deadlineMs = Infinity;

  constructor(build: BuildProcess, log: (text: string) => void) {
    this.#build = build;
    this.#log = log;
  }

  stop(signal: Deno.Signal, graceMs: number): void {
    this.#build.signalGroup(signal);
    const deadlineMs = performance.now() + graceMs;
    if (deadlineMs >= this.#deadlineMs) return;
    this.#deadlineMs = deadlineMs;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#log(
        `The build did not stop within ${formatDuration(graceMs)} of ${signal}; killing it.`,
      );
      this.#build.signalGroup("SIGKILL");
      stopDescendants({ spawned: [this.#build.pid], timeoutMs: LEFTOVER_STOP_TIMEOUT_MS });
    }, graceMs);
  }

  cancel(): void {
    clearTimeout(this.#timer);
  }
}

/** Runs the build under the relay and resolves with the status the relay should exit with. */
export async function runRelay(options: RelayOptions): Promise<number> {
  // Orphans of the build (a daemon that left its process group) come back here to be stopped.
  adoptOrphans();
  const stdout = new OrderedWriter(options.stdout);
  const stderr = new OrderedWriter(options.stderr);
  const encoder = new TextEncoder();
  const log = (text: string): void => {
    stderr.write(encoder.encode(`phonehome relay: ${text}\n`)).catch(() => {});
  };
  const outbox = new Outbox(options.windowBytes);
  const source = options.fetchSource ? new SourceFetch(options.sourceLimitBytes) : undefined;
  const line = new PhoneLine({
    url: options.url,
    token: options.token,
    relayId: crypto.randomUUID(),
    outbox,
    connectTimeoutMs: options.connectTimeoutMs,
    reconnectGraceMs: options.reconnectGraceMs,
    pingIntervalMs: options.pingIntervalMs,
    log,
    source,
    openSocket: options.caPem === undefined ? undefined : trustingWebSocketOpener(options.caPem),
  });
  line.start();
  const finishWithoutBuild = async (exit: ExitStatus, note: string): Promise<number> => {
    log(note);
    const empty = { bytes: 0, crc32: EMPTY_CRC32 };
    await line.finish({ type: "finished", exit, streams: { stdout: empty, stderr: empty }, note });
    await stderr.drained();
    return exit.code;
  };

  const workdir = options.workdir ?? Deno.cwd();
  if (source !== undefined) {
    const failure = await setUpSource({ fetch: source, workdir, log });
    if (failure !== undefined) return await finishWithoutBuild(failure.exit, failure.note);
  }
  let build: BuildProcess;
  try {
    build = BuildProcess.start(options.command, buildEnvironment(), {
      merged: options.merge,
      cwd: workdir,
    });
  } catch (error) {
    if (!(error instanceof PhonehomeError)) throw error;
    return await finishWithoutBuild({ code: error.exitCode, signal: null }, error.message);
  }

  const stopReaping = reapOrphans(() => [build.pid]);
  const stopper = new BuildStopper(build, log);
  const forward = FORWARDED_SIGNALS.map((signal) => {
    const handler = (): void => {
      stopper.stop(signal, options.killGraceMs);
      // Whoever stops the relay will not wait minutes for a receiver that went away.
      line.hurry(options.killGraceMs);
    };
    Deno.addSignalListener(signal, handler);
    return () => Deno.removeSignalListener(signal, handler);
  });
  // Nobody can receive the build's output any more: stop it now, not after a long grace.
  line.receiverGone.then((reason) => {
    if (!buildRunning) return;
    log(`Stopping the build: ${reason}.`);
    stopper.stop("SIGTERM", ORPHANED_KILL_GRACE_MS);
  });
  let buildRunning = true;
  const buildEnded = (): void => {
    buildRunning = false;
  };
  build.status.then(buildEnded, buildEnded);
  if (options.lifeline) {
    waitForEnd(Deno.stdin.readable).then(() => {
      line.abandon("the launcher that started the relay is gone");
      if (buildRunning) stopper.stop("SIGTERM", ORPHANED_KILL_GRACE_MS);
    });
  }

  const pump = (
    stream: StreamName,
    readable: ReadableStream<Uint8Array>,
    tee: OrderedWriter,
  ): StreamPump =>
    new StreamPump({
      stream,
      readable,
      outbox,
      tee: options.tee ? tee : undefined,
      coalesceDelayMs: options.coalesceDelayMs,
    });
  const stdoutPump = pump("stdout", build.stdout, stdout);
  // A merged build writes both streams into its stdout pipe: stderr then stays empty.
  const stderrPump = build.stderr === undefined ? undefined : pump("stderr", build.stderr, stderr);
  if (stderrPump !== undefined) stdoutPump.pairWith(stderrPump);
  const pumps = stderrPump === undefined ? [stdoutPump] : [stdoutPump, stderrPump];
  const pumped = Promise.all(pumps.map((pump) => pump.done));

  let status: ExitStatus;
  const notes: string[] = [];
  try {
    status = await build.status;
    if (!(await settlesWithin(pumped, options.drainGraceMs))) {
      const stopped = descendantsOf().length;
      build.signalGroup("SIGKILL");
      await stopDescendants({ spawned: [build.pid], timeoutMs: LEFTOVER_STOP_TIMEOUT_MS });
      await Promise.all(pumps.map((pump) => pump.cancel()));
      await pumped;
      notes.push(
        `The build exited, but ${processes(stopped)} it left behind kept its output open; ` +
          `the stream was ended ${formatDuration(options.drainGraceMs)} later and ` +
          `${stopped > 1 ? "they were" : "it was"} stopped.`,
      );
    }
    // Daemons the build started (even with setsid) came back to the relay as orphans.
    const leftovers = await stopDescendants({
      spawned: [build.pid],
      timeoutMs: LEFTOVER_STOP_TIMEOUT_MS,
    });
    if (leftovers > 0) notes.push(`Stopped ${processes(leftovers)} the build left running.`);
  } finally {
    stopReaping();
    stopper.cancel();
    forward.forEach((remove) => remove());
  }
  const note = notes.length > 0 ? notes.join(" ") : undefined;
  if (note !== undefined) log(note);

  const finished: FinishedMessage = {
    type: "finished",
    exit: status,
    streams: {
      stdout: stdoutPump.summary(),
      stderr: stderrPump?.summary() ?? { bytes: 0, crc32: EMPTY_CRC32 },
    },
  };
  if (note !== undefined) finished.note = note;
  const verdict = await line.finish(finished);
  const { reconnects, resentBytes } = line.stats;
  if (reconnects > 0) {
    log(
      `Resumed the stream after ${reconnects} dropped connection(s), resending ${resentBytes} bytes.`,
    );
  }
  if (verdict === undefined) {
    log(
      `Could not phone home to ${options.url}: ${line.failure}. ` +
        `The build's output is in this pod's log only.`,
    );
  } else if (!verdict.ok) {
    log(`The receiver rejected the stream: ${verdict.message}`);
  }
  await Promise.all([stdout.drained(), stderr.drained()]);
  if (verdict !== undefined && !verdict.ok) return ExitCode.incompleteStream;
  return status.code;
}
