/**
 * Flags shared by several subcommands, declared once with their defaults, so
 * that a setting has the same name, variable and default everywhere it
 * appears; and the readers that turn their values into typed settings.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import {
  MAX_WINDOW_BYTES,
  MIN_TOKEN_BYTES,
  MIN_WINDOW_BYTES,
  PING_TIMEOUT_INTERVALS,
  RELAY_ENV,
} from "../protocol/mod.ts";
import { RELAY_TUNING, RelayTuning } from "../relay/tuning.ts";
import { flag, type FlagTable, type FlagValues, type ParsedFlags } from "./flags.ts";
import { tlsFlags } from "./tls_flags.ts";

/** `--token`: the per-build secret. */
export const tokenFlag = flag({
  kind: "string",
  env: [RELAY_ENV.token],
  valueName: "SECRET",
  help: `The per-build secret the relay presents, at least ${MIN_TOKEN_BYTES} bytes. ` +
    "Generated when absent.",
});

/** `--ping-interval`: liveness pings, the same on both sides. */
export const pingIntervalFlag = flag({
  kind: "integer",
  env: [RELAY_TUNING.pingIntervalMs.env],
  default: 5_000,
  valueName: "MS",
  min: 10,
  help: `How often to ping the other side; ${PING_TIMEOUT_INTERVALS} intervals without a word ` +
    "count as a dropped connection. Output silence never does.",
});

/** `--reconnect-grace`: how long a dropped connection may take to come back. */
export const reconnectGraceFlag = flag({
  kind: "integer",
  env: [RELAY_TUNING.reconnectGraceMs.env],
  default: 120_000,
  valueName: "MS",
  min: 1,
  help: "How long a dropped connection may take to come back before the build's stream is " +
    "given up, in milliseconds.",
});

/** `--merge`: one pipe for the build's stdout and stderr. */
export const mergeFlag = flag({
  kind: "boolean",
  env: [RELAY_TUNING.merge.env],
  default: false,
  help: "Give the build one pipe for stdout and stderr, as 2>&1 does, and write it all to " +
    "stdout: the order of the build's writes across both is then kept exactly.",
});

/** `--verbose`: report more than failures. */
export const verboseFlag = flag({
  kind: "boolean",
  env: ["PHONEHOME_VERBOSE"],
  default: false,
  help: "Also report when the relay connects, and each retried Kubernetes API call.",
});

/** Flags of the receiving side, shared by `receive` and `build`. */
export const receiverFlags = {
  listen: flag({
    kind: "string",
    env: ["PHONEHOME_LISTEN"],
    default: "0.0.0.0:0",
    valueName: "HOST:PORT",
    help: "Address to listen on; port 0 lets the OS pick a free port.",
  }),
  "advertise-host": flag({
    kind: "string",
    env: ["PHONEHOME_ADVERTISE_HOST", "POD_IP"],
    valueName: "HOST",
    help: "Host or IP the relay must dial, used in the URL. Defaults to the listen host " +
      "(127.0.0.1 when listening on all addresses).",
  }),
  token: tokenFlag,
  "connect-timeout": flag({
    kind: "integer",
    env: ["PHONEHOME_CONNECT_TIMEOUT", "BUILDER_POD_WAIT_DURATION"],
    default: 900_000,
    valueName: "MS",
    min: 1,
    help: "How long to wait for the relay to phone home, in milliseconds.",
  }),
  [RELAY_TUNING.reconnectGraceMs.flag]: reconnectGraceFlag,
  [RELAY_TUNING.pingIntervalMs.flag]: pingIntervalFlag,
  "idle-interval": flag({
    kind: "integer",
    env: ["SESSION_IDLE_INTERVAL"],
    default: 10_000,
    valueName: "MS",
    min: 0,
    help: "Print '...' to stderr after this many silent milliseconds, so idle SSH " +
      "sessions stay open; 0 turns it off.",
  }),
  [RELAY_TUNING.merge.flag]: mergeFlag,
  verbose: verboseFlag,
  ...tlsFlags,
} as const;

/** `--window`: the flow-control window. */
export const windowFlag = flag({
  kind: "integer",
  env: [RELAY_TUNING.windowBytes.env],
  // 2 MiB streams as fast as 4 here, and each side then holds 2 to 4 MB less.
  default: 2 * 1024 * 1024,
  valueName: "BYTES",
  min: MIN_WINDOW_BYTES,
  max: MAX_WINDOW_BYTES,
  help: "Most output the relay holds unacknowledged before it pauses the build.",
});

/** `--drain-grace`: how long leftovers may hold the build's pipes open. */
export const drainGraceFlag = flag({
  kind: "integer",
  env: [RELAY_TUNING.drainGraceMs.env],
  default: 2_000,
  valueName: "MS",
  min: 0,
  help: "After the build exits, how long a process it left behind may keep its output " +
    "open before the relay ends the stream and stops what the build left.",
});

/** `--source`: the build's source, offered to the relay. */
export const sourceFlag = flag({
  kind: "string",
  env: ["PHONEHOME_SOURCE"],
  valueName: "PATH",
  help: "The build's source: a directory, or a tar archive (git archive's output). The relay " +
    "fetches it over its connection, checks it, and unpacks it before the build starts (a " +
    "relay started with --fetch-source; phonehome build starts it so).",
});

/** `--source-limit`: the largest source archive accepted. */
export const sourceLimitFlag = flag({
  kind: "integer",
  env: [RELAY_TUNING.sourceLimitBytes.env],
  default: 1024 * 1024 * 1024,
  valueName: "BYTES",
  min: 0,
  help: "The largest source (as a tar archive) the build may be given; a larger one is " +
    "refused before any of it is unpacked.",
});

/** Every flag a launcher passes on to its relay, under the relay's own names. */
export const tuningFlags = {
  [RELAY_TUNING.windowBytes.flag]: windowFlag,
  [RELAY_TUNING.pingIntervalMs.flag]: pingIntervalFlag,
  [RELAY_TUNING.reconnectGraceMs.flag]: reconnectGraceFlag,
  [RELAY_TUNING.drainGraceMs.flag]: drainGraceFlag,
  [RELAY_TUNING.merge.flag]: mergeFlag,
  [RELAY_TUNING.sourceLimitBytes.flag]: sourceLimitFlag,
} as const;

/**
 * Reads the relay tuning from a command that declares {@linkcode tuningFlags};
 * `merge` is that command's own reading of its merge flag, and `fetchSource`
 * whether the relay is to fetch a source.
 */
export function relayTuning(
  values: FlagValues<Omit<typeof tuningFlags, typeof RELAY_TUNING.merge.flag>>,
  choices: { merge: boolean; fetchSource: boolean },
): RelayTuning {
  return new RelayTuning({
    windowBytes: values[RELAY_TUNING.windowBytes.flag],
    pingIntervalMs: values[RELAY_TUNING.pingIntervalMs.flag],
    reconnectGraceMs: values[RELAY_TUNING.reconnectGraceMs.flag],
    drainGraceMs: values[RELAY_TUNING.drainGraceMs.flag],
    sourceLimitBytes: values[RELAY_TUNING.sourceLimitBytes.flag],
    ...choices,
  });
}

/**
 * The `--token` of `flags`, or undefined when none was given; an empty or too
 * short one (under {@linkcode MIN_TOKEN_BYTES} bytes) is a usage error naming
 * where it came from. `remedy` ends the message: what to do instead.
 */
export function givenToken<T extends FlagTable & { token: typeof tokenFlag }>(
  flags: ParsedFlags<T>,
  remedy: string,
): string | undefined {
  const token = flags.values.token as string | undefined;
  if (token === undefined) return undefined;
  const bytes = new TextEncoder().encode(token).byteLength;
  if (bytes < MIN_TOKEN_BYTES) {
    const what = bytes === 0 ? "is empty" : `is only ${bytes} bytes long`;
    throw new UsageError(
      `${flags.source("token")} ${what}: a secret needs at least ${MIN_TOKEN_BYTES} bytes; ` +
        `${remedy}.`,
    );
  }
  return token;
}

/** Splits `HOST:PORT` (IPv6 in brackets) and checks both halves. */
export function parseListen(value: string, source: string): { hostname: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value);
  if (match === null) {
    throw new UsageError(`${source} must look like HOST:PORT, not ${JSON.stringify(value)}.`);
  }
  const port = Number(match[3]);
  if (port > 65535) throw new UsageError(`${source} has port ${port}, beyond 65535.`);
  return { hostname: match[1] ?? (match[2] || "0.0.0.0"), port };
}

/**
 * Checks a host for the URL the relay dials (`--advertise-host`): a host name,
 * an IPv4 address, or an IPv6 address with or without brackets. Anything a
 * `ws://` URL cannot carry as its host is a usage error naming `source`.
 */
export function parseAdvertiseHost(value: string, source: string): string {
  const host = value.includes(":") && !value.startsWith("[") ? `[${value}]` : value;
  let url: URL | undefined;
  try {
    url = new URL(`ws://${host}:1/`);
  } catch {
    url = undefined;
  }
  const hostOnly = url !== undefined && url.hostname !== "" && url.port === "1" &&
    url.pathname === "/" && url.search === "" && url.hash === "" && url.username === "" &&
    url.password === "";
  if (!hostOnly) {
    throw new UsageError(
      `${source} must be a host name or IP address for the relay to dial, not ` +
        `${JSON.stringify(value)}.`,
    );
  }
  return value;
}
