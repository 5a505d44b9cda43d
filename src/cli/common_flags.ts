/**
 * Flags shared by several subcommands, declared once so that a setting has the
 * same name, variable and default everywhere it appears.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import {
  DEFAULT_PING_INTERVAL_MS,
  DEFAULT_WINDOW_BYTES,
  MAX_WINDOW_BYTES,
  MIN_TOKEN_BYTES,
  PING_TIMEOUT_INTERVALS,
} from "../protocol.ts";
import type { FlagSpec, ParsedFlags } from "./flags.ts";

/** `--token`: the per-build secret. */
export const tokenFlag: FlagSpec = {
  name: "token",
  kind: "string",
  env: ["PHONEHOME_TOKEN"],
  valueName: "SECRET",
  help: `The per-build secret the relay presents, at least ${MIN_TOKEN_BYTES} bytes. ` +
    "Generated when absent.",
};

/**
 * The `--token` of `flags`, or undefined when none was given; an empty or too
 * short one (under {@linkcode MIN_TOKEN_BYTES} bytes) is a usage error naming
 * where it came from. `remedy` ends the message: what to do instead.
 */
export function givenToken(flags: ParsedFlags, remedy: string): string | undefined {
  const token = flags.string("token");
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

/** `--ping-interval`: liveness pings, the same on both sides. */
export const pingIntervalFlag: FlagSpec = {
  name: "ping-interval",
  kind: "integer",
  env: ["PHONEHOME_PING_INTERVAL"],
  default: String(DEFAULT_PING_INTERVAL_MS),
  valueName: "MS",
  min: 10,
  help: `How often to ping the other side; ${PING_TIMEOUT_INTERVALS} intervals without a word ` +
    "count as a dropped connection. Output silence never does.",
};

/** `--reconnect-grace`: how long a dropped connection may take to come back. */
export const reconnectGraceFlag: FlagSpec = {
  name: "reconnect-grace",
  kind: "integer",
  env: ["PHONEHOME_RECONNECT_GRACE"],
  default: "120000",
  valueName: "MS",
  min: 1,
  help: "How long a dropped connection may take to come back before the build's stream is " +
    "given up, in milliseconds.",
};

/** Flags of the receiving side, shared by `receive` and `build`. */
export function receiverFlags(defaultListen: string): FlagSpec[] {
  return [
    {
      name: "listen",
      kind: "string",
      env: ["PHONEHOME_LISTEN"],
      default: defaultListen,
      valueName: "HOST:PORT",
      help: "Address to listen on; port 0 lets the OS pick a free port.",
    },
    {
      name: "advertise-host",
      kind: "string",
      env: ["PHONEHOME_ADVERTISE_HOST", "POD_IP"],
      valueName: "HOST",
      help: "Host or IP the relay must dial, used in the URL. Defaults to the listen host " +
        "(127.0.0.1 when listening on all addresses).",
    },
    tokenFlag,
    {
      name: "connect-timeout",
      kind: "integer",
      env: ["PHONEHOME_CONNECT_TIMEOUT", "BUILDER_POD_WAIT_DURATION"],
      default: "900000",
      valueName: "MS",
      min: 1,
      help: "How long to wait for the relay to phone home, in milliseconds.",
    },
    reconnectGraceFlag,
    pingIntervalFlag,
    {
      name: "idle-interval",
      kind: "integer",
      env: ["SESSION_IDLE_INTERVAL"],
      default: "10000",
      valueName: "MS",
      min: 0,
      help: "Print '...' to stderr after this many silent milliseconds, so idle SSH " +
        "sessions stay open; 0 turns it off.",
    },
    {
      name: "merge",
      kind: "boolean",
      env: ["PHONEHOME_MERGE"],
      help: "Write the build's stderr to stdout too, for hooks that forward only stdout.",
    },
    {
      name: "verbose",
      kind: "boolean",
      env: ["PHONEHOME_VERBOSE"],
      help: "Also report when the relay connects, and each retried Kubernetes API call.",
    },
  ];
}

/** `--window`: the flow-control window. */
export const windowFlag: FlagSpec = {
  name: "window",
  kind: "integer",
  env: ["PHONEHOME_WINDOW"],
  default: String(DEFAULT_WINDOW_BYTES),
  valueName: "BYTES",
  min: 65536,
  help: "Most output the relay holds unacknowledged before it pauses the build.",
};

/** `--drain-grace`: how long leftovers may hold the build's pipes open. */
export const drainGraceFlag: FlagSpec = {
  name: "drain-grace",
  kind: "integer",
  env: ["PHONEHOME_DRAIN_GRACE"],
  default: "2000",
  valueName: "MS",
  min: 0,
  help: "After the build exits, how long a process it left behind may keep its output " +
    "open before the relay ends the stream and stops that process group.",
};

/** Reads `--window` and checks it against the protocol's limit. */
export function windowBytes(flags: ParsedFlags): number {
  const window = flags.integer("window") ?? DEFAULT_WINDOW_BYTES;
  if (window > MAX_WINDOW_BYTES) {
    throw new UsageError(`${flags.source("window")} must be at most ${MAX_WINDOW_BYTES} bytes.`);
  }
  return window;
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
