/**
 * The numbers of the wire contract: the version, the path, the streams, and
 * every limit either side holds the other to (frame and message sizes, the
 * window, timeouts, the handshake cap). docs/protocol.md explains each.
 *
 * @module
 */

/** The protocol version this build of phonehome speaks. */
export const PROTOCOL_VERSION = 2;

/** The HTTP path a relay connects to; the version is negotiated in the hello, not here. */
export const STREAM_PATH = "/phonehome/stream";

/** Identifies one of the build's two output streams. */
export type StreamName = "stdout" | "stderr";

/** Both stream names, in wire-id order. */
export const STREAM_NAMES: readonly StreamName[] = ["stdout", "stderr"];

/** The wire id of each stream, as carried in a DATA frame. */
export const STREAM_IDS: Readonly<Record<StreamName, number>> = { stdout: 0, stderr: 1 };

/** Frame kind byte of a DATA frame (relay to receiver: the build's output). */
export const FRAME_KIND_DATA = 0x01;

/** Frame kind byte of a SOURCE frame (receiver to relay: a piece of the build's source). */
export const FRAME_KIND_SOURCE = 0x02;

/** Bytes before the payload of a DATA or SOURCE frame: kind, stream id (0 for SOURCE), 64-bit offset. */
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

/** Longest relay id a hello may carry, in characters. */
export const MAX_RELAY_ID_LENGTH = 128;

/** How long an upgraded connection may take to send its hello. */
export const HELLO_TIMEOUT_MS = 10_000;

/** Upgraded connections that have not said hello yet, at most; more get HTTP 503. */
export const MAX_PENDING_HANDSHAKES = 16;

/**
 * WebSocket pings a connection may send before its hello: a relay sends its
 * hello first, so more are a flood.
 */
export const MAX_PINGS_BEFORE_HELLO = 4;

/** Longest message accepted before hello: a hello is tiny. */
export const MAX_HELLO_MESSAGE_BYTES = 4096;

/** Longest message accepted after hello: a whole DATA frame; control messages are far shorter. */
export const MAX_MESSAGE_BYTES = DATA_HEADER_BYTES + MAX_FRAME_PAYLOAD_BYTES;

/**
 * Most bytes of replies (acknowledgements, pongs) a receiver queues for a relay
 * that does not read them, besides the source it asked for, before it drops
 * the connection.
 */
export const MAX_UNREAD_REPLY_BYTES = 1024 * 1024;

/**
 * Most source bytes a relay may have asked for and not yet received: what
 * bounds the relay's memory while it fetches the source, and what the
 * receiver queues for it.
 */
export const SOURCE_WINDOW_BYTES = 4 * 1024 * 1024;

/**
 * Most bytes a receiver queues for one relay: its replies, and a whole source
 * window in SOURCE frames (with their headers, 14 + 10 bytes for each 256 KiB).
 */
export const MAX_UNSENT_BYTES = MAX_UNREAD_REPLY_BYTES + SOURCE_WINDOW_BYTES +
  (SOURCE_WINDOW_BYTES / MAX_FRAME_PAYLOAD_BYTES) * 24;
