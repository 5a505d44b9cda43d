/**
 * The phonehome wire protocol, shared by the relay (pod side) and the receiver
 * (builder side). docs/protocol.md describes it for humans; this module is the
 * only code that knows the byte layout.
 *
 * @module
 */

/** The protocol version this build of phonehome speaks. */
export const PROTOCOL_VERSION = 1;

/** The HTTP path a relay connects to. */
export const STREAM_PATH = "/phonehome/v1/stream";

/**
 * Fewest bytes (UTF-8) of a per-build secret, the bearer token a relay presents:
 * both sides refuse a shorter one, so that a secret cannot be empty or guessable.
 */
export const MIN_TOKEN_BYTES = 16;

/** Identifies one of the build's two output streams. */
export type StreamName = "stdout" | "stderr";

/** Both stream names, in wire-id order. */
export const STREAM_NAMES: readonly StreamName[] = ["stdout", "stderr"];

/** The wire id of each stream, as carried in a DATA frame. */
export const STREAM_IDS: Readonly<Record<StreamName, number>> = { stdout: 0, stderr: 1 };

/** Frame kind byte of a DATA frame (the only binary frame kind in version 1). */
export const FRAME_KIND_DATA = 0x01;

/** Bytes before the payload of a DATA frame: kind, stream id, 64-bit offset. */
export const DATA_HEADER_BYTES = 10;

/** Largest payload the relay puts in one DATA frame. */
export const MAX_FRAME_PAYLOAD_BYTES = 256 * 1024;

/**
 * Most bytes a relay may have sent and not had acknowledged with a window of
 * `windowBytes`: the window, plus one partly filled frame per stream that was
 * being coalesced when the window filled.
 */
export function maxUnacknowledgedBytes(windowBytes: number): number {
  return windowBytes + STREAM_NAMES.length * MAX_FRAME_PAYLOAD_BYTES;
}

/**
 * Most frames a relay may have sent and not had acknowledged: the window
 * counts bytes, and without this a stream of 1-byte frames would make the
 * receiver hold millions of them. Two more are allowed, as for bytes.
 */
export const MAX_UNACKNOWLEDGED_FRAMES = 4096;

/** Most frames a relay may have sent and not had acknowledged, partly filled ones included. */
export function maxUnacknowledgedFrames(): number {
  return MAX_UNACKNOWLEDGED_FRAMES + STREAM_NAMES.length;
}

/** Default flow-control window: bytes the relay may have sent but not had acknowledged. */
export const DEFAULT_WINDOW_BYTES = 4 * 1024 * 1024;

/** Smallest window a receiver accepts from a relay's hello. */
export const MIN_WINDOW_BYTES = 64 * 1024;

/** Default interval between liveness pings, both ways. */
export const DEFAULT_PING_INTERVAL_MS = 5_000;

/** A peer silent for this many ping intervals is taken for gone (a half-open connection). */
export const PING_TIMEOUT_INTERVALS = 4;

/**
 * Largest window a receiver accepts from a relay's hello. It bounds what a
 * receiver holds while its own output is slow, so it is kept well below the
 * receiver's memory budget.
 */
export const MAX_WINDOW_BYTES = 16 * 1024 * 1024;

/** How long an upgraded connection may take to send its hello. */
export const HELLO_TIMEOUT_MS = 10_000;

/** Upgraded connections that have not said hello yet, at most; more get HTTP 503. */
export const MAX_PENDING_HANDSHAKES = 16;

/** Longest message accepted before hello: a hello is tiny. */
export const MAX_HELLO_MESSAGE_BYTES = 4096;

/** Longest message accepted after hello: a whole DATA frame; control messages are far shorter. */
export const MAX_MESSAGE_BYTES = DATA_HEADER_BYTES + MAX_FRAME_PAYLOAD_BYTES;

/**
 * Most bytes of replies (acknowledgements, pongs) a receiver queues for a relay
 * that does not read them before it drops the connection.
 */
export const MAX_UNREAD_REPLY_BYTES = 1024 * 1024;

/** Longest close reason RFC 6455 allows, in bytes of UTF-8. */
export const MAX_CLOSE_REASON_BYTES = 123;

/**
 * `reason` cut to fit a close frame (123 bytes of UTF-8) without splitting a
 * character; every close either side sends goes through here.
 */
export function closeReason(reason: string): string {
  const bytes = new TextEncoder().encode(reason);
  if (bytes.byteLength <= MAX_CLOSE_REASON_BYTES) return reason;
  // Room for the ellipsis (3 bytes); a character cut in half decodes to U+FFFD and is dropped.
  const cut = new TextDecoder().decode(bytes.subarray(0, MAX_CLOSE_REASON_BYTES - 3));
  return `${cut.replace(/\uFFFD+$/, "")}\u2026`;
}

/** WebSocket close codes used by phonehome (4000-4999 is the private range). */
export const CloseCode = {
  /** Normal closure after the verdict. */
  normal: 1000,
  /** The peer speaks a protocol version this side does not. */
  versionMismatch: 4001,
  /** The peer sent something the protocol does not allow. */
  protocolViolation: 4002,
  /** A newer connection of the same build took over (fencing). */
  superseded: 4003,
  /** The receiver cannot take the stream any more (output closed, shutting down). */
  receiverGone: 4004,
  /** No ping answered within the liveness deadline. */
  peerUnresponsive: 4005,
} as const;

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
  /** Lower-case hex SHA-256 of those bytes. */
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
}

/** Cumulative acknowledgement: bytes of each stream written to the receiver's output. */
export interface AckMessage {
  type: "ack";
  stdout: number;
  stderr: number;
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
export type RelayMessage = HelloMessage | FinishedMessage | PingMessage | PongMessage;

/** Control messages a receiver sends (as JSON text frames). */
export type ReceiverMessage =
  | WelcomeMessage
  | AckMessage
  | VerdictMessage
  | PingMessage
  | PongMessage;

/** A decoded DATA frame. `payload` is a view into the frame, not a copy. */
export interface DataFrame {
  stream: StreamName;
  offset: number;
  payload: Uint8Array;
}

/** Raised when bytes on the wire break the protocol; the connection must be closed. */
export class ProtocolError extends Error {
  /** The WebSocket close code that reports this violation to the peer. */
  readonly closeCode: number;

  /** Creates a protocol error with the close code to send to the peer. */
  constructor(message: string, closeCode: number = CloseCode.protocolViolation) {
    super(message);
    this.name = "ProtocolError";
    this.closeCode = closeCode;
  }
}

/**
 * Writes a DATA header into the first {@linkcode DATA_HEADER_BYTES} bytes of
 * `frame`; the payload must already follow it. Writing in place lets the relay
 * read the build's output straight into the buffer it will send.
 */
export function writeDataHeader(frame: Uint8Array, stream: StreamName, offset: number): void {
  const view = new DataView(frame.buffer, frame.byteOffset, DATA_HEADER_BYTES);
  view.setUint8(0, FRAME_KIND_DATA);
  view.setUint8(1, STREAM_IDS[stream]);
  view.setBigUint64(2, BigInt(offset));
}

/** Builds a DATA frame by copying `payload` after a fresh header. */
export function encodeDataFrame(
  stream: StreamName,
  offset: number,
  payload: Uint8Array,
): Uint8Array {
  const frame = new Uint8Array(DATA_HEADER_BYTES + payload.byteLength);
  frame.set(payload, DATA_HEADER_BYTES);
  writeDataHeader(frame, stream, offset);
  return frame;
}

/** Decodes a binary frame; throws {@linkcode ProtocolError} for anything malformed. */
export function decodeDataFrame(frame: Uint8Array): DataFrame {
  if (frame.byteLength < DATA_HEADER_BYTES) {
    throw new ProtocolError(`Binary frame of ${frame.byteLength} bytes is shorter than a header.`);
  }
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const kind = view.getUint8(0);
  if (kind !== FRAME_KIND_DATA) {
    throw new ProtocolError(`Unknown binary frame kind 0x${kind.toString(16)}.`);
  }
  const streamId = view.getUint8(1);
  const stream = STREAM_NAMES[streamId];
  if (stream === undefined) throw new ProtocolError(`Unknown stream id ${streamId}.`);
  const offset = view.getBigUint64(2);
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ProtocolError(`Offset ${offset} of ${stream} is beyond what phonehome supports.`);
  }
  return { stream, offset: Number(offset), payload: frame.subarray(DATA_HEADER_BYTES) };
}

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
  if (!isOffset(value)) throw new ProtocolError(`${what} is not a byte count.`);
  return value;
}

function parseOffsets(value: unknown, what: string): StreamOffsets {
  if (typeof value !== "object" || value === null) {
    throw new ProtocolError(`${what} is missing.`);
  }
  const record = value as Record<string, unknown>;
  return {
    stdout: requireOffset(record.stdout, `${what}.stdout`),
    stderr: requireOffset(record.stderr, `${what}.stderr`),
  };
}

function parseSummary(value: unknown, stream: StreamName): StreamSummary {
  if (typeof value !== "object" || value === null) {
    throw new ProtocolError(`FINISHED lacks the summary of ${stream}.`);
  }
  const record = value as Record<string, unknown>;
  const sha256 = record.sha256;
  if (typeof sha256 !== "string" || !/^[0-9a-f]{64}$/.test(sha256)) {
    throw new ProtocolError(`FINISHED carries no valid sha256 for ${stream}.`);
  }
  return { bytes: requireOffset(record.bytes, `FINISHED ${stream}.bytes`), sha256 };
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
      if (typeof relay !== "string" || relay.length === 0 || relay.length > 128) {
        throw new ProtocolError("Hello lacks a relay id.");
      }
      const attempt = requireOffset(record.attempt, "Hello attempt");
      if (attempt < 1) throw new ProtocolError("Hello attempt must count from 1.");
      const window = requireOffset(record.window, "Hello window");
      return { type: "hello", versions, relay, attempt, window };
    }
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
      return {
        type: "welcome",
        version: version as number,
        acked: parseOffsets(record.acked, "acked"),
      };
    }
    case "ack":
      return {
        type: "ack",
        stdout: requireOffset(record.stdout, "ack.stdout"),
        stderr: requireOffset(record.stderr, "ack.stderr"),
      };
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
  return `Protocol version mismatch: the relay speaks v${relayVersions.join(", v")}, ` +
    `the receiver speaks v${PROTOCOL_VERSION}; use the same phonehome release on both sides.`;
}
