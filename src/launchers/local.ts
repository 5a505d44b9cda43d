/**
 * The local launcher: runs the relay as a subprocess of the builder, next to an
 * in-process receiver, exactly as a build pod would run it, but on this machine.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ExitCode } from "../exit_codes.ts";
import { settlesWithin } from "../timing.ts";
import type { Receiver } from "../receiver/receiver.ts";
import { RELAY_ENV } from "../relay/relay.ts";

/** How long the relay gets to stop after SIGTERM before it is killed. */
const RELAY_STOP_GRACE_MS = 15_000;

/** Settings of a local build. */
export interface LocalBuildOptions {
  /** The build command and its arguments. */
  command: readonly string[];
  /** A started receiver for this build. */
  receiver: Receiver;
  /** The per-build secret the receiver expects. */
  token: string;
  /** How to start the relay: a program and its leading arguments. */
  relayInvocation: readonly string[];
  /** Extra relay flags, such as `--window`. */
  relayArgs: readonly string[];
  /** Dispatches a `signal` event (detail: the signal name) to pass on to the relay. */
  signals?: EventTarget;
}

/**
 * How to start the relay when no `--relay-bin` is given: the `phonehome-relay`
 * binary beside a compiled builder, or this source tree's main.ts under Deno.
 */
export function defaultRelayInvocation(): string[] {
  if (Deno.build.standalone) return [join(dirname(Deno.execPath()), "phonehome-relay")];
  const main = fileURLToPath(new URL("../../main.ts", import.meta.url));
  const config = fileURLToPath(new URL("../../deno.json", import.meta.url));
  return [Deno.execPath(), "run", "-A", "--quiet", `--config=${config}`, main, "relay"];
}

async function forwardLines(stream: ReadableStream<Uint8Array>, receiver: Receiver): Promise<void> {
  const decoder = new TextDecoderStream();
  let carry = "";
  for await (const text of stream.pipeThrough(decoder)) {
    const lines = (carry + text).split("\n");
    carry = lines.pop() ?? "";
    for (const line of lines) await receiver.writeLine(line);
  }
  if (carry.length > 0) await receiver.writeLine(carry);
}

/** Runs one build through a local relay; resolves with the exit status to report. */
export async function runLocalBuild(options: LocalBuildOptions): Promise<number> {
  const { receiver } = options;
  let relay: Deno.ChildProcess;
  try {
    relay = new Deno.Command(options.relayInvocation[0], {
      args: [
        ...options.relayInvocation.slice(1),
        "--no-tee",
        ...options.relayArgs,
        "--",
        ...options.command,
      ],
      env: { [RELAY_ENV.url]: receiver.url, [RELAY_ENV.token]: options.token },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      // A terminal's Ctrl-C reaches only the launcher, which passes on exactly one signal.
      detached: true,
    }).spawn();
  } catch (error) {
    receiver.abort(
      ExitCode.usage,
      `Cannot start the relay ${JSON.stringify(options.relayInvocation[0])}: ` +
        `${(error as Error).message}; check --relay-bin.`,
    );
    return (await receiver.outcome).exitCode;
  }
  const relayMessages = forwardLines(relay.stderr, receiver);
  options.signals?.addEventListener("signal", (event) => {
    try {
      relay.kill((event as CustomEvent<Deno.Signal>).detail);
    } catch {
      // The relay is already gone; its exit is handled below.
    }
  });
  let relayRunning = true;
  const relayExited = relay.status.then(async (status) => {
    relayRunning = false;
    await relayMessages;
    // After the verdict the receiver ends on its own; otherwise nothing more can come.
    if (receiver.answered || receiver.done) return;
    const how = status.signal === null ? `status ${status.code}` : `signal ${status.signal}`;
    receiver.abort(
      ExitCode.lostRelay,
      `The relay exited with ${how} before the build's result arrived.`,
    );
  });
  const outcome = await receiver.outcome;
  if (relayRunning) {
    // The receiver gave up first (timeout, signal, output closed): stop the build too.
    try {
      relay.kill("SIGTERM");
    } catch {
      // Exited meanwhile.
    }
    if (!(await settlesWithin(relay.status, RELAY_STOP_GRACE_MS))) {
      // Kill first: with nobody reading stderr, the message may never be written.
      relay.kill("SIGKILL");
      receiver.message("The relay did not stop within its grace period; killed it.");
    }
  }
  await relayExited;
  return outcome.exitCode;
}
