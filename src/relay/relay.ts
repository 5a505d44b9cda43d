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
import type { ExitStatus, FinishedMessage } from "../protocol.ts";
import { BuildProcess } from "./build_process.ts";
import { Outbox } from "./outbox.ts";
import { PhoneLine } from "./phone_line.ts";
import { StreamPump } from "./stream_pump.ts";

/** Environment variables the relay reads and keeps from the build. */
export const RELAY_ENV = { url: "PHONEHOME_URL", token: "PHONEHOME_TOKEN" } as const;

/** Signals the relay passes on to the build's process group. */
const FORWARDED_SIGNALS: readonly Deno.Signal[] = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"];

/** Settings of a relay run. */
export interface RelayOptions {
  /** The build command and its arguments. */
  command: readonly string[];
  /** The receiver's URL. */
  url: string;
  /** The per-build secret. */
  token: string;
  /** Flow-control window in bytes. */
  windowBytes: number;
  /** How long to keep trying to reach the receiver at first. */
  connectTimeoutMs: number;
  /** How long to keep trying after a dropped connection. */
  reconnectGraceMs: number;
  /** How often to ping the receiver. */
  pingIntervalMs: number;
  /** How long to wait for the pipes to close once the build's main process has exited. */
  drainGraceMs: number;
  /** After passing on a signal, how long the build gets before its group is killed. */
  killGraceMs: number;
  /** How long a partial frame waits for more output. */
  coalesceDelayMs: number;
  /** Copy the build's output to the relay's own stdout and stderr. */
  tee: boolean;
  /** The relay's stdout (the pod log). */
  stdout: ByteSink;
  /** The relay's stderr (the pod log, and phonehome's own messages). */
  stderr: ByteSink;
}

function buildEnvironment(): Record<string, string> {
  const env = Deno.env.toObject();
  // The build must not be able to forge its own stream or learn the secret.
  delete env[RELAY_ENV.token];
  delete env[RELAY_ENV.url];
  return env;
}

const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** Runs the build under the relay and resolves with the status the relay should exit with. */
export async function runRelay(options: RelayOptions): Promise<number> {
  const stdout = new OrderedWriter(options.stdout);
  const stderr = new OrderedWriter(options.stderr);
  const encoder = new TextEncoder();
  const log = (text: string): void => {
    stderr.write(encoder.encode(`phonehome relay: ${text}\n`)).catch(() => {});
  };
  const outbox = new Outbox(options.windowBytes);
  const line = new PhoneLine({
    url: options.url,
    token: options.token,
    relayId: crypto.randomUUID(),
    outbox,
    connectTimeoutMs: options.connectTimeoutMs,
    reconnectGraceMs: options.reconnectGraceMs,
    pingIntervalMs: options.pingIntervalMs,
    log,
  });
  line.start();

  let build: BuildProcess;
  try {
    build = BuildProcess.start(options.command, buildEnvironment());
  } catch (error) {
    if (!(error instanceof PhonehomeError)) throw error;
    log(error.message);
    const empty = { bytes: 0, sha256: EMPTY_SHA256 };
    await line.finish({
      type: "finished",
      exit: { code: error.exitCode, signal: null },
      streams: { stdout: empty, stderr: empty },
      note: error.message,
    });
    await stderr.drained();
    return error.exitCode;
  }

  let killTimer: Timer | undefined;
  const forward = FORWARDED_SIGNALS.map((signal) => {
    const handler = (): void => {
      build.signalGroup(signal);
      // Whoever stops the relay will not wait minutes for a receiver that went away.
      line.hurry(options.killGraceMs);
      killTimer ??= setTimeout(() => {
        log(
          `The build did not stop within ${
            formatDuration(options.killGraceMs)
          } of ${signal}; killing it.`,
        );
        build.signalGroup("SIGKILL");
      }, options.killGraceMs);
    };
    Deno.addSignalListener(signal, handler);
    return () => Deno.removeSignalListener(signal, handler);
  });

  const pumps = [
    new StreamPump({
      stream: "stdout",
      readable: build.stdout,
      outbox,
      tee: options.tee ? stdout : undefined,
      coalesceDelayMs: options.coalesceDelayMs,
    }),
    new StreamPump({
      stream: "stderr",
      readable: build.stderr,
      outbox,
      tee: options.tee ? stderr : undefined,
      coalesceDelayMs: options.coalesceDelayMs,
    }),
  ];
  pumps[0].pairWith(pumps[1]);
  const pumped = Promise.all(pumps.map((pump) => pump.done));

  let status: ExitStatus;
  let note: string | undefined;
  try {
    status = await build.status;
    if (!(await settlesWithin(pumped, options.drainGraceMs))) {
      note = `The build exited, but a process it left behind kept its output open; ` +
        `the stream was ended ${formatDuration(options.drainGraceMs)} later and that ` +
        `process group stopped.`;
      log(note);
      build.signalGroup("SIGKILL");
      await Promise.all(pumps.map((pump) => pump.cancel()));
      await pumped;
    }
  } finally {
    clearTimeout(killTimer);
    forward.forEach((remove) => remove());
  }

  const finished: FinishedMessage = {
    type: "finished",
    exit: status,
    streams: { stdout: pumps[0].summary(), stderr: pumps[1].summary() },
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
