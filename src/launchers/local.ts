/**
 * The local launcher: runs the relay as a subprocess of the builder, next to an
 * in-process receiver, exactly as a build pod would run it, but on this machine.
 *
 * @module
 */

import { errorMessage } from "../errors.ts";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ExitCode } from "../exit_codes.ts";
import { settlesWithin } from "../timing.ts";
import { adoptOrphans, reapOrphans, stopDescendants } from "../process_tree.ts";
import type { BuildReceiver } from "../receiver/receiver.ts";
import type { RelayTuning } from "../relay/tuning.ts";
import { RELAY_ENV } from "../protocol/mod.ts";
import { V8_FLAGS_ARGUMENT } from "../v8_flags.ts";

/**
 * How long the relay gets to stop once its lifeline is cut before it is killed:
 * it gives the build a second after SIGTERM, then kills what is left.
 */
const RELAY_STOP_GRACE_MS = 3_000;

/** How long stopping whatever the relay and the build left behind may take. */
const LEFTOVER_STOP_TIMEOUT_MS = 5_000;

/** Relay lines kept to explain a build whose result never arrived. */
const RELAY_LINES_KEPT = 20;

/** Settings of a local build. */
export interface LocalBuildOptions {
  /** The build command and its arguments. */
  command: readonly string[];
  /** A started receiver for this build. */
  receiver: BuildReceiver;
  /** The per-build secret the receiver expects. */
  token: string;
  /** How to start the relay: a program and its leading arguments. */
  relayInvocation: readonly string[];
  /** The relay's settings, passed on as its flags. */
  tuning: RelayTuning;
  /** The per-build CA the receiver's certificate comes from, for the relay to trust. */
  caPem?: string;
  /** Run the build in a fresh directory (its source is unpacked there), removed afterwards. */
  freshWorkdir?: boolean;
  /**
   * Dispatches `signal` events (detail: the signal name) to pass on to the
   * relay, and a `kill` event to stop the relay and the build at once.
   */
  signals?: EventTarget;
}

/**
 * How to start the relay when no `--relay-bin` is given: the `phonehome-relay`
 * binary beside a compiled builder, or under Deno the entry point that binary
 * is compiled from, which loads the relay's modules and none of the builder's.
 */
export function defaultRelayInvocation(): string[] {
  if (Deno.build.standalone) return [join(dirname(Deno.execPath()), "phonehome-relay")];
  const entry = fileURLToPath(new URL("../cli/relay_main.ts", import.meta.url));
  const config = fileURLToPath(new URL("../../deno.json", import.meta.url));
  return [
    Deno.execPath(),
    "run",
    "-A",
    "--quiet",
    V8_FLAGS_ARGUMENT,
    `--config=${config}`,
    entry,
    "relay",
  ];
}

/** A fresh directory, removed with everything in it when disposed of. */
async function temporaryDirectory(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "phonehome-build-" });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }).catch(() => {}),
  };
}

/** Keeps the last lines of `stream`, decoded; resolves with them once it ends. */
async function keepLastLines(stream: ReadableStream<Uint8Array>): Promise<string[]> {
  const lines: string[] = [];
  let carry = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    const parts = (carry + text).split("\n");
    carry = parts.pop() ?? "";
    lines.push(...parts);
    lines.splice(0, Math.max(0, lines.length - RELAY_LINES_KEPT));
  }
  if (carry.length > 0) lines.push(carry);
  return lines.slice(-RELAY_LINES_KEPT);
}

/**
 * Runs one build through a local relay; resolves with the exit status to
 * report. Whatever happens, nothing of the build outlives this: the relay
 * holds a lifeline that is cut when the receiver is over, and orphans of the
 * relay or the build come back to this process to be stopped.
 */
export async function runLocalBuild(options: LocalBuildOptions): Promise<number> {
  const { receiver } = options;
  adoptOrphans();
  await using workdir = options.freshWorkdir ? await temporaryDirectory() : undefined;
  let relay: Deno.ChildProcess;
  try {
    relay = new Deno.Command(options.relayInvocation[0], {
      args: [
        ...options.relayInvocation.slice(1),
        "--no-tee",
        "--lifeline",
        ...options.tuning.toArgs(),
        ...(workdir === undefined ? [] : [`--workdir=${workdir.path}`]),
        "--",
        ...options.command,
      ],
      env: {
        [RELAY_ENV.url]: receiver.url,
        [RELAY_ENV.token]: options.token,
        ...(options.caPem === undefined ? {} : { [RELAY_ENV.tlsCa]: options.caPem }),
      },
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
      // A terminal's Ctrl-C reaches only the launcher, which passes on exactly one signal.
      detached: true,
    }).spawn();
  } catch (error) {
    receiver.abort(
      ExitCode.usage,
      `Cannot start the relay ${JSON.stringify(options.relayInvocation[0])}: ` +
        `${errorMessage(error)}; check --relay-bin.`,
    );
    return (await receiver.outcome).exitCode;
  }
  // Never written to: its end tells the relay that nobody can receive the build any more.
  const lifeline = relay.stdin.getWriter();
  const stopReaping = reapOrphans(() => [relay.pid]);
  const relayLines = keepLastLines(relay.stderr);
  const killAll = async (): Promise<void> => {
    try {
      relay.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await stopDescendants({ spawned: [relay.pid], timeoutMs: LEFTOVER_STOP_TIMEOUT_MS });
  };
  options.signals?.addEventListener("signal", (event) => {
    try {
      relay.kill((event as CustomEvent<Deno.Signal>).detail);
    } catch {
      // The relay is already gone; its exit is handled below.
    }
  });
  options.signals?.addEventListener("kill", () => killAll());
  let relayRunning = true;
  const relayExited = relay.status.then((status) => {
    relayRunning = false;
    // After the verdict, or with FINISHED in hand, the receiver ends on its own.
    if (receiver.answered || receiver.done || receiver.finishedArrived) return;
    const how = status.signal === null ? `status ${status.code}` : `signal ${status.signal}`;
    receiver.abort(
      ExitCode.lostRelay,
      `The relay exited with ${how} before the build's result arrived.`,
    );
  });
  const outcome = await receiver.outcome;
  await lifeline.close().catch(() => {});
  if (relayRunning && !(await settlesWithin(relay.status, RELAY_STOP_GRACE_MS))) {
    await killAll();
    await receiver.message("The relay did not stop within its grace period; killed it.");
  }
  await relayExited;
  // The relay stops what the build leaves; this catches what a killed relay could not.
  await stopDescendants({ spawned: [relay.pid], timeoutMs: LEFTOVER_STOP_TIMEOUT_MS });
  stopReaping();
  if (outcome.exit === undefined) {
    // The build's result never arrived: what the relay said is the best explanation there is.
    for (const line of await relayLines) await receiver.writeLine(line);
  }
  return outcome.exitCode;
}
