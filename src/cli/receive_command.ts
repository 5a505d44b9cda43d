/**
 * `phonehome receive`: listens for one build's relay and writes its output to
 * this process's stdout and stderr, then exits with the build's status.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { ExitCode } from "../exit_codes.ts";
import { DEFAULT_PING_INTERVAL_MS } from "../protocol.ts";
import { generateToken } from "../receiver/auth.ts";
import { Receiver, type ReceiverOptions } from "../receiver/receiver.ts";
import { parseListen, receiverFlags } from "./common_flags.ts";
import type { CommandSpec, ParsedFlags } from "./flags.ts";
import { onTerminationSignal } from "./signals.ts";

/** The command line of `phonehome receive`. */
export const receiveSpec: CommandSpec = {
  name: "receive",
  usage: "receive [options]",
  summary: "Listen for one build's relay, write the build's stdout and stderr to this " +
    "process's stdout and stderr byte for byte, and exit with the build's exit status " +
    "once FINISHED has been verified. phonehome's own messages go to stderr.",
  takesCommand: false,
  flags: [
    ...receiverFlags("0.0.0.0:0"),
    {
      name: "url-file",
      kind: "string",
      env: ["PHONEHOME_URL_FILE"],
      valueName: "PATH",
      help: "Once listening, write the URL the relay must use to this file.",
    },
    {
      name: "token-file",
      kind: "string",
      env: ["PHONEHOME_TOKEN_FILE"],
      valueName: "PATH",
      help: "Once listening, write the secret to this file (mode 0600), for a generated one.",
    },
  ],
  examples: [
    "phonehome receive --listen 0.0.0.0:0 --url-file /tmp/url --token-file /tmp/token",
    "PHONEHOME_TOKEN=s3cret phonehome receive --listen 127.0.0.1:7070 --merge",
  ],
};

/** Builds receiver options from parsed flags, writing to this process's stdout and stderr. */
export function receiverOptions(flags: ParsedFlags): ReceiverOptions {
  const listenText = flags.string("listen") ?? "0.0.0.0:0";
  const listen = parseListen(listenText, flags.source("listen"));
  const token = flags.string("token") ?? generateToken();
  return {
    ...listen,
    advertiseHost: flags.string("advertise-host"),
    token,
    connectTimeoutMs: flags.integer("connect-timeout") ?? 900_000,
    reconnectGraceMs: flags.integer("reconnect-grace") ?? 120_000,
    pingIntervalMs: flags.integer("ping-interval") ?? DEFAULT_PING_INTERVAL_MS,
    idleIntervalMs: flags.integer("idle-interval") ?? 10_000,
    merge: flags.boolean("merge"),
    verbose: flags.boolean("verbose"),
    stdout: Deno.stdout,
    stderr: Deno.stderr,
  };
}

/** Starts a receiver, reporting a taken or forbidden address as a usage error. */
export function startReceiver(options: ReceiverOptions): Receiver {
  try {
    return Receiver.start(options);
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse || error instanceof Deno.errors.AddrNotAvailable) {
      throw new UsageError(
        `Cannot listen on ${options.hostname}:${options.port}: ${(error as Error).message}.`,
      );
    }
    throw error;
  }
}

async function writeFileAtomically(path: string, text: string, mode: number): Promise<void> {
  // Write then rename, so a watcher never reads half a URL.
  const temporary = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(temporary, text, { mode });
  await Deno.rename(temporary, path);
}

/** Runs `phonehome receive`; resolves with the exit status. */
export async function runReceive(flags: ParsedFlags): Promise<number> {
  const options = receiverOptions(flags);
  const receiver = startReceiver(options);
  const urlFile = flags.string("url-file");
  const tokenFile = flags.string("token-file");
  try {
    if (tokenFile !== undefined) await writeFileAtomically(tokenFile, `${options.token}\n`, 0o600);
    if (urlFile !== undefined) await writeFileAtomically(urlFile, `${receiver.url}\n`, 0o644);
  } catch (error) {
    receiver.abort(
      ExitCode.usage,
      `Cannot write ${urlFile ?? tokenFile}: ${(error as Error).message}.`,
    );
  }
  const stop = onTerminationSignal((signal, code) => {
    receiver.abort(code, `Stopped by ${signal} while waiting for the build.`);
  });
  try {
    return (await receiver.outcome).exitCode;
  } finally {
    stop();
  }
}
