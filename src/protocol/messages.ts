/**
 * Control messages, the JSON text messages of both sides: their types, and
 * parsers that check every field a peer sends.
 *
 * @module
 */

import { MAX_RELAY_ID_LENGTH, PROTOCOL_VERSION, type StreamName } from "./limits.ts";
import { ProtocolError } from "./close_codes.ts";

/** Per-stream byte counters, used by acknowledgements and the welcome. */
export type StreamOffsets = Record<StreamName, number>;

/** How the build ended: an exit code, or the signal that killed it. */
export interface ExitStatus {
  /** Exit code; 128+n when killed by signal n, as a shell reports it. */
  code: number;
  /** Name of the terminating signal (`SIGKILL`), or null for a normal exit. */
  signal: string | null;
}

/** What FINISHED says about one stream, so the receiver can prove completeness. */
export interface StreamSummary {
  /** Total bytes the build wrote to this stream. */
  bytes: number;
  /** CRC-32 of those bytes, as 8 lower-case hex digits. */
  crc32: string;
}

/** The build's source as the receiver offers it: a ustar archive. */
export interface SourceOffer {
  /** Size of the archive in bytes. */
  bytes: number;
  /** Lower-case hex SHA-256 of the archive, checked before it is unpacked. */
  sha256: string;
}

/** First message on every connection, relay to receiver. */
export interface HelloMessage {
  type: "hello";
  /** Protocol versions the relay speaks. */
  versions: number[];
  /** Identifies this relay process; a reconnect carries the same one. */
  relay: string;
  /** Counts this relay's connection attempts from 1: the fencing token among its connections. */
  attempt: number;
  /** The relay's flow-control window in bytes. */
  window: number;
}

/** The build has ended and every byte of output has been sent. */
export interface FinishedMessage {
  type: "finished";
  exit: ExitStatus;
  streams: Record<StreamName, StreamSummary>;
  /** A sentence for the user: the command could not run, or its output was cut short. */
  note?: string;
}

/** Application-level liveness probe; the peer answers with a pong. */
export interface PingMessage {
  type: "ping";
}

/** Answer to a ping. */
export interface PongMessage {
  type: "pong";
}

/** The receiver accepts the connection and says where each stream stands. */
export interface WelcomeMessage {
  type: "welcome";
  version: number;
  /** Bytes of each stream already written; the relay resumes from here. */
  acked: StreamOffsets;
  /** The build's source, when the receiver has one to give; absent otherwise. */
  source?: SourceOffer;
}

/** Cumulative acknowledgement: bytes of each stream written to the receiver's output. */
export interface AckMessage {
  type: "ack";
  /** The same shape as the welcome's. */
  acked: StreamOffsets;
}

/** The relay asks for `length` bytes of the source from `offset`. */
export interface FetchMessage {
  type: "fetch";
  offset: number;
  length: number;
}

/** The receiver's answer to FINISHED. */
export interface VerdictMessage {
  type: "verdict";
  /** True when every byte arrived and both checksums matched. */
  ok: boolean;
  /** Why not, when ok is false. */
  message?: string;
}

/** Control messages a relay sends (as JSON text frames). */
export type RelayMessage =
  | HelloMessage
  | FetchMessage
  | FinishedMessage
  | PingMessage
  | PongMessage;

/** Control messages a receiver sends (as JSON text frames). */
export type ReceiverMessage =
  | WelcomeMessage
  | AckMessage
  | VerdictMessage
  | PingMessage
  | PongMessage;

/** Serialises a control message for a text frame. */
export function encodeControl(message: RelayMessage | ReceiverMessage): string {
  return JSON.stringify(message);
}

function parseObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ProtocolError("Text frame is not valid JSON.");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError("Text frame is not a JSON object.");
  }
  return value as Record<string, unknown>;
}

function isOffset(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function requireOffset(value: unknown, what: string): number {
  if (!isOffset(value)) {
    throw new ProtocolError(`${what} is not a whole number from 0 to 2^53-1.`);
  }
  return value;
}

function parseOffsets(value: unknown, what: string): StreamOffsets {
  if (typeof value !== "object" || value === null) {
    throw new ProtocolError(`The ${what} lacks its byte counts (acked).`);
  }
  const record = value as Record<string, unknown>;
  return {
    stdout: requireOffset(record.stdout, `The ${what}'s stdout count`),
    stderr: requireOffset(record.stderr, `The ${what}'s stderr count`),
  };
}

function parseSummary(value: unknown, stream: StreamName): StreamSummary {
  if (typeof value !== "object" || value === null) {
    throw new ProtocolError(`FINISHED lacks the summary of ${stream}.`);
  }
  const record = value as Record<string, unknown>;
  const crc32 = record.crc32;
  if (typeof crc32 !== "string" || !/^[0-9a-f]{8}$/.test(crc32)) {
    throw new ProtocolError(`FINISHED carries no valid crc32 (8 hex digits) for ${stream}.`);
  }
  return { bytes: requireOffset(record.bytes, `FINISHED's byte count of ${stream}`), crc32 };
}

function parseSourceOffer(value: unknown): SourceOffer {
  if (typeof value !== "object" || value === null) {
    throw new ProtocolError("The welcome's source is not an object.");
  }
  const record = value as Record<string, unknown>;
  const sha256 = record.sha256;
  if (typeof sha256 !== "string" || !/^[0-9a-f]{64}$/.test(sha256)) {
    throw new ProtocolError("The welcome's source carries no valid sha256.");
  }
  return { bytes: requireOffset(record.bytes, "The welcome's source size"), sha256 };
}

function parseExit(value: unknown): ExitStatus {
  if (typeof value !== "object" || value === null) {
    throw new ProtocolError("FINISHED lacks the exit status.");
  }
  const record = value as Record<string, unknown>;
  const code = record.code;
  if (typeof code !== "number" || !Number.isInteger(code) || code < 0 || code > 255) {
    throw new ProtocolError("FINISHED carries an exit code outside 0-255.");
  }
  const signal = record.signal ?? null;
  if (
    signal !== null && (typeof signal !== "string" || !/^SIG[A-Z0-9]+([+-][0-9]+)?$/.test(signal))
  ) {
    throw new ProtocolError("FINISHED carries an invalid signal name.");
  }
  return { code, signal };
}

/** Parses a text frame sent by a relay; throws {@linkcode ProtocolError} when invalid. */
export function parseRelayMessage(text: string): RelayMessage {
  const record = parseObject(text);
  switch (record.type) {
    case "hello": {
      const versions = record.versions;
      if (!Array.isArray(versions) || !versions.every((v) => Number.isSafeInteger(v))) {
        throw new ProtocolError("Hello lacks the list of protocol versions.");
      }
      const relay = record.relay;
      if (typeof relay !== "string" || relay.length === 0 || relay.length > MAX_RELAY_ID_LENGTH) {
        throw new ProtocolError(
          `The hello's relay id must be a string of 1 to ${MAX_RELAY_ID_LENGTH} characters.`,
        );
      }
      const attempt = requireOffset(record.attempt, "The hello's attempt");
      if (attempt < 1) throw new ProtocolError("The hello's attempt must count from 1.");
      const window = requireOffset(record.window, "The hello's window");
      return { type: "hello", versions, relay, attempt, window };
    }
    case "fetch":
      return {
        type: "fetch",
        offset: requireOffset(record.offset, "The fetch's offset"),
        length: requireOffset(record.length, "The fetch's length"),
      };
    case "finished": {
      const streams = record.streams;
      if (typeof streams !== "object" || streams === null) {
        throw new ProtocolError("FINISHED lacks the stream summaries.");
      }
      const summaries = streams as Record<string, unknown>;
      const message: FinishedMessage = {
        type: "finished",
        exit: parseExit(record.exit),
        streams: {
          stdout: parseSummary(summaries.stdout, "stdout"),
          stderr: parseSummary(summaries.stderr, "stderr"),
        },
      };
      if (typeof record.note === "string") message.note = record.note.slice(0, 4096);
      return message;
    }
    case "ping":
    case "pong":
      return { type: record.type };
    default:
      throw new ProtocolError(`Unknown control message type ${JSON.stringify(record.type)}.`);
  }
}

/** Parses a text frame sent by a receiver; throws {@linkcode ProtocolError} when invalid. */
export function parseReceiverMessage(text: string): ReceiverMessage {
  const record = parseObject(text);
  switch (record.type) {
    case "welcome": {
      const version = record.version;
      if (!Number.isSafeInteger(version)) throw new ProtocolError("Welcome lacks a version.");
      const welcome: WelcomeMessage = {
        type: "welcome",
        version: version as number,
        acked: parseOffsets(record.acked, "welcome"),
      };
      if (record.source !== undefined) welcome.source = parseSourceOffer(record.source);
      return welcome;
    }
    case "ack":
      return { type: "ack", acked: parseOffsets(record.acked, "acknowledgement") };
    case "verdict": {
      if (typeof record.ok !== "boolean") throw new ProtocolError("Verdict lacks ok.");
      const verdict: VerdictMessage = { type: "verdict", ok: record.ok };
      if (typeof record.message === "string") verdict.message = record.message.slice(0, 4096);
      return verdict;
    }
    case "ping":
    case "pong":
      return { type: record.type };
    default:
      throw new ProtocolError(`Unknown control message type ${JSON.stringify(record.type)}.`);
  }
}

/** The message both sides print when versions do not match. */
export function versionMismatchMessage(relayVersions: readonly number[]): string {
  const relay = relayVersions.length === 0
    ? "names no version"
    : `speaks v${relayVersions.join(", v")}`;
  return `Protocol version mismatch: the relay ${relay}, the receiver speaks ` +
    `v${PROTOCOL_VERSION}; use the same phonehome release on both sides.`;
}
