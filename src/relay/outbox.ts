/**
 * The relay's flow control: every DATA frame it has read but the receiver has
 * not acknowledged as written, bounded by a window of bytes and a limit on
 * frames. When the window is full
 * the relay stops reading the build's pipes, so the build blocks instead of
 * memory growing; after a reconnect the retained frames are resent from the
 * receiver's offsets.
 *
 * @module
 */

import {
  DATA_HEADER_BYTES,
  encodeDataFrame,
  MAX_FRAME_PAYLOAD_BYTES,
  MAX_UNACKNOWLEDGED_FRAMES,
  ProtocolError,
  STREAM_NAMES,
  type StreamName,
  type StreamOffsets,
} from "../protocol/mod.ts";

/** A DATA frame held until acknowledged. */
export interface OutFrame {
  stream: StreamName;
  /** Offset of the first payload byte in its stream. */
  offset: number;
  /** The whole frame: header then payload. */
  bytes: Uint8Array;
}

/** Bytes of a whole-frame buffer: the header and the largest payload. */
export const FRAME_BUFFER_BYTES = DATA_HEADER_BYTES + MAX_FRAME_PAYLOAD_BYTES;

/**
 * Whole-frame buffers kept for reuse once acknowledged. A few suffice: at full
 * speed one comes back for each one the pumps take.
 */
const MAX_SPARE_FRAME_BUFFERS = 4;

function frameEnd(frame: OutFrame): number {
  return frame.offset + frame.bytes.byteLength - DATA_HEADER_BYTES;
}

/** Unacknowledged output of both streams, and the window that bounds it. */
export class Outbox {
  #windowBytes: number;
  #retained: Record<StreamName, OutFrame[]> = { stdout: [], stderr: [] };
  #pushed: StreamOffsets = { stdout: 0, stderr: 0 };
  #acked: StreamOffsets = { stdout: 0, stderr: 0 };
  #unsent: OutFrame[] = [];
  #order = new WeakMap<OutFrame, number>();
  #sequence = 0;
  #unbounded = false;
  #roomWaiters: Array<() => void> = [];
  #onFrame: () => void = () => {};
  #spareBuffers: Uint8Array[] = [];

  /** Creates an outbox that holds at most `windowBytes` unacknowledged bytes before blocking. */
  constructor(windowBytes: number) {
    this.#windowBytes = windowBytes;
  }

  /** The window in bytes. */
  get windowBytes(): number {
    return this.#windowBytes;
  }

  /** Bytes pushed but not acknowledged, across both streams. */
  get unacknowledgedBytes(): number {
    return STREAM_NAMES.reduce((sum, name) => sum + this.#pushed[name] - this.#acked[name], 0);
  }

  /** Bytes of each stream acknowledged so far. */
  get acknowledged(): StreamOffsets {
    return { ...this.#acked };
  }

  /** Calls `listener` whenever a frame becomes ready to send. */
  onFrame(listener: () => void): void {
    this.#onFrame = listener;
  }

  /**
   * A buffer of {@linkcode FRAME_BUFFER_BYTES} for the next frame: one an
   * acknowledgement released, or a new one. Reusing them keeps the relay's
   * memory flat: fresh 256 KiB buffers would pile up as garbage faster than
   * V8 collects it, and each would cost page faults to fill.
   */
  takeFrameBuffer(): Uint8Array {
    return this.#spareBuffers.pop() ?? new Uint8Array(FRAME_BUFFER_BYTES);
  }

  /** Whether the window has room for more output now. */
  get hasRoom(): boolean {
    return this.#hasRoom();
  }

  /** Resolves once there is room in the window for more output. */
  waitForRoom(): Promise<void> {
    if (this.#hasRoom()) return Promise.resolve();
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  #hasRoom(): boolean {
    return this.#unbounded ||
      (this.unacknowledgedBytes < this.#windowBytes &&
        this.#retained.stdout.length + this.#retained.stderr.length < MAX_UNACKNOWLEDGED_FRAMES);
  }

  #wakeWaiters(): void {
    if (!this.#hasRoom()) return;
    const waiters = this.#roomWaiters;
    this.#roomWaiters = [];
    for (const wake of waiters) wake();
  }

  /**
   * Adds a frame whose header is already written. Its offset must continue the
   * stream exactly where the previous frame ended.
   */
  push(frame: OutFrame): void {
    if (frame.offset !== this.#pushed[frame.stream]) {
      throw new RangeError(
        `Frame of ${frame.stream} at ${frame.offset} does not continue the stream.`,
      );
    }
    this.#pushed[frame.stream] = frameEnd(frame);
    if (this.#unbounded) return;
    this.#order.set(frame, this.#sequence++);
    this.#retained[frame.stream].push(frame);
    this.#unsent.push(frame);
    this.#onFrame();
  }

  /** Takes the frames not yet sent on the current connection, in the order they were read. */
  takeUnsent(): OutFrame[] {
    const frames = this.#unsent;
    this.#unsent = [];
    return frames;
  }

  /** Whether every pushed frame has been handed out for sending. */
  get allSent(): boolean {
    return this.#unsent.length === 0;
  }

  /**
   * Records a cumulative acknowledgement. Throws {@linkcode ProtocolError} when
   * it goes backwards or acknowledges bytes never sent.
   */
  acknowledge(offsets: StreamOffsets): void {
    for (const name of STREAM_NAMES) {
      const offset = offsets[name];
      if (offset < this.#acked[name]) {
        throw new ProtocolError(
          `The receiver acknowledged ${offset} bytes of ${name} after ${this.#acked[name]}.`,
        );
      }
      if (offset > this.#pushed[name]) {
        throw new ProtocolError(
          `The receiver acknowledged ${offset} bytes of ${name}, but only ${
            this.#pushed[name]
          } were sent.`,
        );
      }
      this.#acked[name] = offset;
      const retained = this.#retained[name];
      let drop = 0;
      while (drop < retained.length && frameEnd(retained[drop]) <= offset) drop++;
      if (drop > 0) this.#release(retained.splice(0, drop));
    }
    this.#wakeWaiters();
  }

  /**
   * Frees the memory of acknowledged frames now instead of at the garbage
   * collector's next run: whole-frame buffers go back for reuse, others are
   * detached, which frees them at once. `socket.send` copies what it sends, so
   * a sent frame holds nothing the connection still needs; a frame not yet
   * handed out for sending (only a receiver that acknowledges bytes it never
   * got could cause that) is left alone.
   */
  #release(frames: readonly OutFrame[]): void {
    const unsent = this.#unsent.length > 0 ? new Set(this.#unsent) : undefined;
    for (const frame of frames) {
      if (unsent?.has(frame)) continue;
      const buffer = frame.bytes.buffer;
      if (!(buffer instanceof ArrayBuffer) || buffer.detached) continue;
      if (
        buffer.byteLength === FRAME_BUFFER_BYTES &&
        this.#spareBuffers.length < MAX_SPARE_FRAME_BUFFERS
      ) {
        this.#spareBuffers.push(new Uint8Array(buffer));
      } else {
        buffer.transfer(0);
      }
    }
  }

  /**
   * Prepares a resend after a reconnect: acknowledges up to the receiver's
   * offsets, then queues every byte after them, in the original order, cutting
   * the first frame of a stream where the receiver stands. Returns how many of
   * the queued bytes had been sent before (the resend).
   */
  resume(offsets: StreamOffsets): number {
    this.acknowledge(offsets);
    const neverSent = new Set(this.#unsent);
    const frames: OutFrame[] = [];
    for (const name of STREAM_NAMES) {
      for (const frame of this.#retained[name]) {
        if (frame.offset >= offsets[name]) {
          frames.push(frame);
          continue;
        }
        const skip = offsets[name] - frame.offset;
        const cut: OutFrame = {
          stream: name,
          offset: offsets[name],
          bytes: encodeDataFrame(
            name,
            offsets[name],
            frame.bytes.subarray(DATA_HEADER_BYTES + skip),
          ),
        };
        this.#order.set(cut, this.#order.get(frame) ?? 0);
        frames.push(cut);
      }
    }
    frames.sort((a, b) => (this.#order.get(a) ?? 0) - (this.#order.get(b) ?? 0));
    this.#unsent = frames;
    let resent = 0;
    for (const frame of frames) {
      if (!neverSent.has(frame)) resent += frame.bytes.byteLength - DATA_HEADER_BYTES;
    }
    return resent;
  }

  /**
   * Drops every retained frame and lifts the window: used when the relay has
   * given up phoning home, so the build runs on with its output only in the
   * pod's log.
   */
  abandon(): void {
    this.#unbounded = true;
    this.#retained = { stdout: [], stderr: [] };
    this.#unsent = [];
    this.#roomWaiters.splice(0).forEach((wake) => wake());
  }
}
