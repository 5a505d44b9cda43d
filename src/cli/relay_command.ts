/**
 * `phonehome relay`: the pod side. Runs the build command and phones its
 * output and exit status home to the receiver.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { DEFAULT_PING_INTERVAL_MS, MIN_TOKEN_BYTES } from "../protocol.ts";
import { RELAY_ENV, runRelay } from "../relay/relay.ts";
import {
  drainGraceFlag,
  givenToken,
  pingIntervalFlag,
  reconnectGraceFlag,
  windowBytes,
  windowFlag,
} from "./common_flags.ts";
import type { CommandSpec, ParsedFlags } from "./flags.ts";

/** The command line of `phonehome relay`. */
export const relaySpec: CommandSpec = {
  name: "relay",
  usage: "relay [options] -- COMMAND [ARG...]",
  summary: "Run COMMAND in a process group of its own and stream its stdout and stderr, " +
    "byte for byte, to the receiver at --url, then send its exit status. The output is " +
    "also copied to the relay's own stdout and stderr, so the pod log keeps it. SIGTERM, " +
    "SIGINT, SIGHUP and SIGQUIT are passed on to the build. Exits with the build's status " +
    "(128+n when killed by signal n), even when the receiver cannot be reached.",
  takesCommand: true,
  flags: [
    {
      name: "url",
      kind: "string",
      env: [RELAY_ENV.url],
      valueName: "URL",
      help: "The receiver's ws:// or wss:// URL. Required.",
    },
    {
      name: "token",
      kind: "string",
      env: [RELAY_ENV.token],
      valueName: "SECRET",
      help: `The per-build secret, at least ${MIN_TOKEN_BYTES} bytes. Required. Removed from ` +
        "the build's environment.",
    },
    windowFlag,
    {
      name: "connect-timeout",
      kind: "integer",
      env: ["PHONEHOME_CONNECT_TIMEOUT"],
      default: "120000",
      valueName: "MS",
      min: 1,
      help: "How long to keep trying to reach the receiver at first; the build runs " +
        "meanwhile, paused once the window is full.",
    },
    reconnectGraceFlag,
    pingIntervalFlag,
    drainGraceFlag,
    {
      name: "kill-grace",
      kind: "integer",
      env: ["PHONEHOME_KILL_GRACE"],
      default: "10000",
      valueName: "MS",
      min: 0,
      help: "After passing a signal on to the build, how long it may take to exit before " +
        "its process group gets SIGKILL.",
    },
    {
      name: "coalesce-delay",
      kind: "integer",
      env: ["PHONEHOME_COALESCE_DELAY"],
      default: "1",
      valueName: "MS",
      min: 0,
      help: "How long a partly filled frame waits for more output before it is sent.",
    },
    {
      name: "tee",
      kind: "boolean",
      env: ["PHONEHOME_TEE"],
      default: "true",
      help: "Copy the build's output to the relay's own stdout and stderr (--no-tee to stop).",
    },
    {
      name: "merge",
      kind: "boolean",
      env: ["PHONEHOME_MERGE"],
      help: "Give the build one pipe for stdout and stderr, as 2>&1 does, so that the order of " +
        "its writes across both is kept exactly; all of it is then streamed as stdout. Needs " +
        "/bin/sh in the image (without it the streams stay apart).",
    },
    {
      name: "lifeline",
      kind: "boolean",
      env: ["PHONEHOME_LIFELINE"],
      help: "Stop the build and exit as soon as stdin ends. A launcher that starts the relay " +
        "holds the other end of that pipe and closes it when it, or its receiver, is gone.",
    },
  ],
  examples: [
    "PHONEHOME_URL=ws://10.0.0.7:41234/phonehome/v1/stream PHONEHOME_TOKEN=... \\\n" +
    "    phonehome relay -- /builder/build.sh",
  ],
};

/** Runs `phonehome relay`; resolves with the exit status. */
export function runRelayCommand(flags: ParsedFlags): Promise<number> {
  const url = flags.string("url");
  if (url === undefined) {
    throw new UsageError(`No receiver URL: set --url or ${RELAY_ENV.url}.`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`${flags.source("url")} is not a URL: ${JSON.stringify(url)}.`);
  }
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new UsageError(`${flags.source("url")} must start with ws:// or wss://.`);
  }
  const token = givenToken(flags, "pass the secret the builder generated for this build");
  if (token === undefined) {
    throw new UsageError(`No secret: set --token or ${RELAY_ENV.token}.`);
  }
  return runRelay({
    command: flags.command,
    url,
    token,
    windowBytes: windowBytes(flags),
    connectTimeoutMs: flags.integer("connect-timeout") ?? 120_000,
    reconnectGraceMs: flags.integer("reconnect-grace") ?? 120_000,
    pingIntervalMs: flags.integer("ping-interval") ?? DEFAULT_PING_INTERVAL_MS,
    drainGraceMs: flags.integer("drain-grace") ?? 2_000,
    killGraceMs: flags.integer("kill-grace") ?? 10_000,
    coalesceDelayMs: flags.integer("coalesce-delay") ?? 1,
    tee: flags.boolean("tee"),
    lifeline: flags.boolean("lifeline"),
    merge: flags.boolean("merge"),
    stdout: Deno.stdout,
    stderr: Deno.stderr,
  });
}
