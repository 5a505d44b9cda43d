/**
 * Binary frames: DATA, which carry the build's output, and SOURCE, which
 * carry its source to the relay; their byte layout, encoded and decoded here
 * and nowhere else.
 *
 * @module
 */

import {
  DATA_HEADER_BYTES,
  FRAME_KIND_DATA,
  FRAME_KIND_SOURCE,
  STREAM_IDS,
  STREAM_NAMES,
  type StreamName,
} from "./limits.ts";
import { ProtocolError } from "./close_codes.ts";

/** A decoded DATA frame. `payload` is a view into the frame, not a copy. */
export interface DataFrame {
  stream: StreamName;
  offset: number;
  payload: Uint8Array;
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

/** A decoded SOURCE frame: `payload` (a view) holds the source's bytes from `offset`. */
export interface SourceFrame {
  offset: number;
  payload: Uint8Array;
}

/**
 * Writes a SOURCE header (the DATA header's layout, kind 0x02, stream byte 0)
 * into the first {@linkcode DATA_HEADER_BYTES} bytes of `frame`, whose
 * payload already follows: the receiver reads the archive straight into it.
 */
export function writeSourceHeader(frame: Uint8Array, offset: number): void {
  const view = new DataView(frame.buffer, frame.byteOffset, DATA_HEADER_BYTES);
  view.setUint8(0, FRAME_KIND_SOURCE);
  view.setUint8(1, 0);
  view.setBigUint64(2, BigInt(offset));
}

/** Decodes a binary frame from the receiver; throws {@linkcode ProtocolError} unless it is SOURCE. */
export function decodeSourceFrame(frame: Uint8Array): SourceFrame {
  if (frame.byteLength < DATA_HEADER_BYTES || frame[0] !== FRAME_KIND_SOURCE || frame[1] !== 0) {
    throw new ProtocolError("The receiver sent a binary frame that is not SOURCE.");
  }
  const offset = new DataView(frame.buffer, frame.byteOffset, DATA_HEADER_BYTES).getBigUint64(2);
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ProtocolError(`The source offset ${offset} is beyond what phonehome supports.`);
  }
  return { offset: Number(offset), payload: frame.subarray(DATA_HEADER_BYTES) };
}
