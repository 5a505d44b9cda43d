/**
 * `phonehome relay`: the pod side. Runs the build command and phones its
 * output and exit status home to the receiver.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { MIN_TOKEN_BYTES, RELAY_ENV } from "../protocol/mod.ts";
import { runRelay } from "../relay/relay.ts";
import { RELAY_TUNING } from "../relay/tuning.ts";
import { givenToken, relayTuning, tokenFlag, tuningFlags } from "./common_flags.ts";
import { type CommandSpec, flag, type ParsedFlags } from "./flags.ts";
import { readPem } from "./tls_flags.ts";

/** The command line of `phonehome relay`. */
export const relaySpec = {
  name: "relay",
  usage: "relay [options] -- COMMAND [ARG...]",
  summary: "Run COMMAND in a process group of its own and stream its stdout and stderr, " +
    "byte for byte, to the receiver at --url, then send its exit status. The output is " +
    "also copied to the relay's own stdout and stderr, so the pod log keeps it. SIGTERM, " +
    "SIGINT, SIGHUP and SIGQUIT are passed on to the build. Exits with the build's status " +
    "(128+n when killed by signal n), even when the receiver cannot be reached.",
  takesCommand: true,
  flags: {
    url: flag({
      kind: "string",
      env: [RELAY_ENV.url],
      valueName: "URL",
      help: "The receiver's ws:// or wss:// URL. Required.",
    }),
    token: flag({
      ...tokenFlag,
      help: `The per-build secret, at least ${MIN_TOKEN_BYTES} bytes. Required. Removed from ` +
        "the build's environment.",
    }),
    "tls-ca": flag({
      kind: "string",
      env: [RELAY_ENV.tlsCa],
      valueName: "PEM|FILE",
      help: "The CA that vouches for the receiver's wss:// certificate: PEM text, or a file " +
        "holding it. phonehome build puts its per-build CA here; with it, a ws:// URL is " +
        "refused, so the secret never travels unencrypted.",
    }),
    ...tuningFlags,
    [RELAY_TUNING.fetchSource.flag]: flag({
      kind: "boolean",
      env: [RELAY_TUNING.fetchSource.env],
      default: false,
      help: "Before starting the build, fetch its source from the receiver (the welcome " +
        "offers it), check its SHA-256, and unpack it into --workdir. The build does not " +
        "start unless all of that succeeds (status 65 otherwise).",
    }),
    workdir: flag({
      kind: "string",
      env: ["PHONEHOME_WORKDIR"],
      valueName: "DIR",
      help: "Where the build runs and its source is unpacked. Defaults to the relay's own " +
        "working directory.",
    }),
    "connect-timeout": flag({
      kind: "integer",
      env: [RELAY_ENV.connectTimeout],
      default: 120_000,
      valueName: "MS",
      min: 1,
      help: "How long to keep trying to reach the receiver at first; the build runs " +
        "meanwhile, paused once the window is full.",
    }),
    "kill-grace": flag({
      kind: "integer",
      env: ["PHONEHOME_KILL_GRACE"],
      default: 10_000,
      valueName: "MS",
      min: 0,
      help: "After passing a signal on to the build, how long it may take to exit before " +
        "its process group gets SIGKILL.",
    }),
    "coalesce-delay": flag({
      kind: "integer",
      env: ["PHONEHOME_COALESCE_DELAY"],
      default: 1,
      valueName: "MS",
      min: 0,
      help: "How long a partly filled frame waits for more output before it is sent.",
    }),
    tee: flag({
      kind: "boolean",
      env: ["PHONEHOME_TEE"],
      default: true,
      help: "Copy the build's output to the relay's own stdout and stderr (--no-tee to stop).",
    }),
    lifeline: flag({
      kind: "boolean",
      env: ["PHONEHOME_LIFELINE"],
      default: false,
      help: "Stop the build and exit as soon as stdin ends. A launcher that starts the relay " +
        "holds the other end of that pipe and closes it when it, or its receiver, is gone.",
    }),
  },
  examples: [
    "PHONEHOME_URL=ws://10.0.0.7:41234/phonehome/stream PHONEHOME_TOKEN=... \\\n" +
    "    phonehome relay -- /builder/build.sh",
  ],
} as const satisfies CommandSpec;

/** Runs `phonehome relay`; resolves with the exit status. */
export async function runRelayCommand(
  flags: ParsedFlags<typeof relaySpec.flags>,
): Promise<number> {
  const { values } = flags;
  if (values.url === undefined) {
    throw new UsageError(`No receiver URL: set --url or ${RELAY_ENV.url}.`);
  }
  let parsed: URL;
  try {
    parsed = new URL(values.url);
  } catch {
    throw new UsageError(`${flags.source("url")} is not a URL: ${JSON.stringify(values.url)}.`);
  }
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new UsageError(`${flags.source("url")} must start with ws:// or wss://.`);
  }
  const caPem = values["tls-ca"] === undefined ? undefined : await readPem({
    value: values["tls-ca"],
    source: flags.source("tls-ca"),
    label: /CERTIFICATE/,
  });
  if (caPem !== undefined && parsed.protocol === "ws:") {
    throw new UsageError(
      `${flags.source("url")} is ws://, but the relay was given a CA (${
        flags.source("tls-ca")
      }): it does not send the secret unencrypted; use the wss:// URL the builder gave.`,
    );
  }
  const token = givenToken(flags, "pass the secret the builder generated for this build");
  if (token === undefined) {
    throw new UsageError(`No secret: set --token or ${RELAY_ENV.token}.`);
  }
  return await runRelay({
    ...relayTuning(values, {
      merge: values.merge,
      fetchSource: values[RELAY_TUNING.fetchSource.flag],
    }).values,
    workdir: values.workdir,
    command: flags.command,
    url: values.url,
    token,
    caPem,
    connectTimeoutMs: values["connect-timeout"],
    killGraceMs: values["kill-grace"],
    coalesceDelayMs: values["coalesce-delay"],
    tee: values.tee,
    lifeline: values.lifeline,
    stdout: Deno.stdout,
    stderr: Deno.stderr,
  });
}
