/**
 * `phonehome receive`: listens for one build's relay and writes its output to
 * this process's stdout and stderr, then exits with the build's status.
 *
 * @module
 */

import { errorMessage, UsageError } from "../errors.ts";
import { ExitCode } from "../exit_codes.ts";
import { generateToken } from "../protocol/mod.ts";
import { advertisedHost, Receiver, type ReceiverOptions } from "../receiver/receiver.ts";
import {
  givenToken,
  parseAdvertiseHost,
  parseListen,
  receiverFlags,
  sourceFlag,
  sourceLimitFlag,
} from "./common_flags.ts";
import { SourceArchive } from "../receiver/source_archive.ts";
import {
  type CommandSpec,
  flag,
  type FlagTable,
  type FlagValues,
  type ParsedFlags,
} from "./flags.ts";
import { stdoutIsStderr } from "./outputs.ts";
import { onTerminationSignal } from "./signals.ts";
import { resolveTls } from "./receiver_tls.ts";
import { DEFAULT_CERTIFICATE_VALIDITY_MS } from "./tls_flags.ts";

/** The command line of `phonehome receive`. */
export const receiveSpec = {
  name: "receive",
  usage: "receive [options]",
  summary: "Listen for one build's relay, write the build's stdout and stderr to this " +
    "process's stdout and stderr byte for byte, and exit with the build's exit status " +
    "once FINISHED has been verified. phonehome's own messages go to stderr.",
  takesCommand: false,
  flags: {
    ...receiverFlags,
    "url-file": flag({
      kind: "string",
      env: ["PHONEHOME_URL_FILE"],
      valueName: "PATH",
      help: "Once listening, write the URL the relay must use to this file.",
    }),
    source: sourceFlag,
    "source-limit": sourceLimitFlag,
    "ca-file": flag({
      kind: "string",
      env: ["PHONEHOME_CA_FILE"],
      valueName: "PATH",
      help: "With --tls, write the per-build CA the relay must trust (PEM) to this file, " +
        "before the URL.",
    }),
    "token-file": flag({
      kind: "string",
      env: ["PHONEHOME_TOKEN_FILE"],
      valueName: "PATH",
      help: "Once listening, write the secret to this file (mode 0600), for a generated one.",
    }),
  },
  examples: [
    "phonehome receive --listen 0.0.0.0:0 --url-file /tmp/url --token-file /tmp/token",
    "PHONEHOME_TOKEN=s3cret phonehome receive --listen 127.0.0.1:7070 --merge",
  ],
} as const satisfies CommandSpec;

/** The receiver flags every receiving command has, whatever it makes of `listen` and `merge`. */
type ReceiverCoreFlags = Omit<typeof receiverFlags, "listen" | "merge">;

/**
 * Builds receiver options from parsed flags, writing to this process's stdout
 * and stderr; `listen` and `merge` are the command's own reading of those flags.
 */
export function receiverOptions<T extends FlagTable & ReceiverCoreFlags>(
  flags: ParsedFlags<T>,
  choices: { listen: string; merge: boolean },
): ReceiverOptions {
  const values = flags.values as FlagValues<ReceiverCoreFlags>;
  const core = flags as unknown as ParsedFlags<ReceiverCoreFlags>;
  const token = givenToken(core, "use a longer one, or none to have one generated") ??
    generateToken();
  const advertiseHost = values["advertise-host"];
  return {
    ...parseListen(choices.listen, core.source("listen" as keyof ReceiverCoreFlags & string)),
    advertiseHost: advertiseHost === undefined
      ? undefined
      : parseAdvertiseHost(advertiseHost, core.source("advertise-host")),
    token,
    connectTimeoutMs: values["connect-timeout"],
    reconnectGraceMs: values["reconnect-grace"],
    pingIntervalMs: values["ping-interval"],
    idleIntervalMs: values["idle-interval"],
    merge: choices.merge,
    sameFile: stdoutIsStderr(),
    verbose: values.verbose,
    stdout: Deno.stdout,
    stderr: Deno.stderr,
  };
}

/** How the OS says that a host name does not resolve (getaddrinfo's words, through Deno). */
const UNRESOLVED_HOST = /failed to lookup address|Name or service not known|No address associated/i;

/**
 * Starts a receiver, reporting a taken, forbidden or unknown address as a usage
 * error; `source` names where the address came from, such as `--listen`.
 */
export function startReceiver(options: ReceiverOptions, source = "--listen"): Receiver {
  const address = `${options.hostname}:${options.port}`;
  try {
    return Receiver.start(options);
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse || error instanceof Deno.errors.AddrNotAvailable) {
      throw new UsageError(`Cannot listen on ${address}: ${errorMessage(error)}.`);
    }
    if (error instanceof Error && UNRESOLVED_HOST.test(error.message)) {
      throw new UsageError(
        `Cannot listen on ${address}: ${JSON.stringify(options.hostname)} is not an address ` +
          `of this machine, nor a name that resolves to one; check ${source}.`,
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
export async function runReceive(flags: ParsedFlags<typeof receiveSpec.flags>): Promise<number> {
  const { values } = flags;
  await using source = values.source === undefined
    ? undefined
    : await SourceArchive.prepare(values.source, values["source-limit"]);
  const base = receiverOptions(flags, { listen: values.listen, merge: values.merge });
  const tls = await resolveTls(flags, {
    enabledByDefault: false,
    host: advertisedHost(base),
    validForMs: DEFAULT_CERTIFICATE_VALIDITY_MS + base.connectTimeoutMs,
  });
  if (values["ca-file"] !== undefined && tls.caPem === undefined) {
    throw new UsageError(
      `${flags.source("ca-file")} needs a per-build CA to write: add --tls (and no --tls-cert).`,
    );
  }
  const options = { ...base, source, tls: tls.serve };
  const receiver = startReceiver(options, flags.source("listen"));
  const files: Array<[string | undefined, string | undefined, number]> = [
    // The secret and the CA first: a watcher that sees the URL may read them at once.
    [values["token-file"], `${options.token}\n`, 0o600],
    [values["ca-file"], tls.caPem, 0o644],
    [values["url-file"], `${receiver.url}\n`, 0o644],
  ];
  for (const [path, text, mode] of files) {
    if (path === undefined || text === undefined) continue;
    try {
      await writeFileAtomically(path, text, mode);
    } catch (error) {
      receiver.abort(ExitCode.usage, `Cannot write ${path}: ${errorMessage(error)}.`);
      break;
    }
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
