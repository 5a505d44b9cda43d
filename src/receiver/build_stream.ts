/**
 * The receiver's record of one build's output: where each stream stands, the
 * writes in flight, the checksums of what was written, and the check of
 * FINISHED against all of it. Connections come and go; this outlives them.
 *
 * @module
 */

import {
  Crc32,
  type DataFrame,
  type FinishedMessage,
  MAX_FRAME_PAYLOAD_BYTES,
  maxUnacknowledgedBytes,
  maxUnacknowledgedFrames,
  ProtocolError,
  STREAM_NAMES,
  type StreamName,
  type StreamOffsets,
} from "../protocol/mod.ts";
import type { BuilderConsole } from "./console.ts";

interface StreamState {
  /** Bytes accepted from the wire and queued for writing. */
  received: number;
  /** Bytes whose write has completed. */
  written: number;
  /** Bytes covered by the last acknowledgement sent. */
  acknowledged: number;
  /** Where each accepted frame ends, from the first not yet acknowledged (at `firstFrame`). */
  frameEnds: number[];
  firstFrame: number;
  checksum: Crc32;
}

/** The result of checking FINISHED against what was written. */
export interface Verification {
  ok: boolean;
  /** One sentence saying what disagreed, when not ok. */
  message?: string;
}

/** Where one build's streams stand on the receiver. */
export class BuildStream {
  #streams: Record<StreamName, StreamState>;
  #console: BuilderConsole;
  #onWritten: () => void;
  #onWriteError: (error: Error) => void;
  #release: (payload: Uint8Array) => void;
  #sealed = false;

  /**
   * Creates the record. `onWritten` runs after each completed write (to send an
   * acknowledgement); `onWriteError` runs once if an output cannot be written;
   * `release` is handed each frame's payload once its bytes are written.
   */
  constructor(options: {
    console: BuilderConsole;
    onWritten: () => void;
    onWriteError: (error: Error) => void;
    release: (payload: Uint8Array) => void;
  }) {
    const state = (): StreamState => ({
      received: 0,
      written: 0,
      acknowledged: 0,
      frameEnds: [],
      firstFrame: 0,
      checksum: new Crc32(),
    });
    this.#streams = { stdout: state(), stderr: state() };
    this.#console = options.console;
    this.#onWritten = options.onWritten;
    this.#onWriteError = options.onWriteError;
    this.#release = options.release;
  }

  /** Bytes of each stream written to the receiver's outputs. */
  written(): StreamOffsets {
    return { stdout: this.#streams.stdout.written, stderr: this.#streams.stderr.written };
  }

  /** Bytes of each stream accepted from the wire (written or being written). */
  received(): StreamOffsets {
    return { stdout: this.#streams.stdout.received, stderr: this.#streams.stderr.received };
  }

  /** Total bytes written across both streams. */
  totalWritten(): number {
    return this.#streams.stdout.written + this.#streams.stderr.written;
  }

  /** Takes the written offsets for an acknowledgement; undefined when nothing changed. */
  takeAcknowledgement(): StreamOffsets | undefined {
    let changed = false;
    for (const name of STREAM_NAMES) {
      const state = this.#streams[name];
      if (state.written !== state.acknowledged) changed = true;
      state.acknowledged = state.written;
      while (
        state.firstFrame < state.frameEnds.length &&
        state.frameEnds[state.firstFrame] <= state.written
      ) {
        state.firstFrame++;
      }
      if (state.firstFrame > 1024 && state.firstFrame * 2 > state.frameEnds.length) {
        state.frameEnds = state.frameEnds.slice(state.firstFrame);
        state.firstFrame = 0;
      }
    }
    return changed ? this.written() : undefined;
  }

  /**
   * Marks the stream complete (FINISHED arrived): a resend of bytes already
   * here is still skipped, but a byte beyond them is a violation.
   */
  seal(): void {
    this.#sealed = true;
  }

  /**
   * Accepts a DATA frame: bytes already received (a resend after a reconnect)
   * are skipped, the rest is queued for writing. A gap, a sender beyond its
   * window (in bytes or in frames), or new bytes after FINISHED are protocol
   * violations. The frame's buffer becomes the stream's: it is detached
   * (freed) once its bytes are written, so the caller must not use it
   * afterwards.
   */
  accept(frame: DataFrame, windowBytes: number): void {
    const state = this.#streams[frame.stream];
    const length = frame.payload.byteLength;
    if (length > MAX_FRAME_PAYLOAD_BYTES) {
      throw new ProtocolError(
        `DATA frame of ${length} bytes exceeds the ${MAX_FRAME_PAYLOAD_BYTES}-byte frame limit.`,
      );
    }
    if (frame.offset > state.received) {
      throw new ProtocolError(
        `DATA for ${frame.stream} starts at byte ${frame.offset}, but only ${state.received} ` +
          `bytes have arrived: bytes are missing.`,
      );
    }
    const end = frame.offset + length;
    if (end <= state.received) return;
    if (this.#sealed) {
      throw new ProtocolError(
        `DATA for ${frame.stream} reaches byte ${end} after FINISHED said the stream has ` +
          `${state.received}.`,
      );
    }
    const fresh = frame.payload.subarray(state.received - frame.offset);
    let unacknowledged = fresh.byteLength;
    let frames = 1;
    for (const name of STREAM_NAMES) {
      const other = this.#streams[name];
      unacknowledged += other.received - other.acknowledged;
      frames += other.frameEnds.length - other.firstFrame;
    }
    if (unacknowledged > maxUnacknowledgedBytes(windowBytes)) {
      throw new ProtocolError(
        `The relay sent ${unacknowledged} unacknowledged bytes, beyond its ${windowBytes}-byte window.`,
      );
    }
    if (frames > maxUnacknowledgedFrames()) {
      throw new ProtocolError(
        `The relay sent ${frames} unacknowledged frames, beyond the limit of ` +
          `${maxUnacknowledgedFrames()}.`,
      );
    }
    state.received = end;
    state.frameEnds.push(end);
    this.#console.writeBuild(frame.stream, fresh).then(
      () => {
        state.written += fresh.byteLength;
        state.checksum.update(fresh);
        this.#release(fresh);
        this.#onWritten();
      },
      (error: Error) => this.#onWriteError(error),
    );
  }

  /**
   * Waits for every queued write, then compares byte counts and checksums with
   * FINISHED. Call it only after FINISHED arrived on the current connection.
   */
  async verify(finished: FinishedMessage): Promise<Verification> {
    const problems: string[] = [];
    for (const name of STREAM_NAMES) {
      const expected = finished.streams[name].bytes;
      const received = this.#streams[name].received;
      if (received < expected) {
        problems.push(`${received} of the ${expected} bytes of ${name} arrived`);
      } else if (received > expected) {
        problems.push(`${received} bytes of ${name} arrived, but FINISHED reports ${expected}`);
      }
    }
    if (problems.length > 0) {
      return { ok: false, message: `The stream is incomplete: ${problems.join(", ")}.` };
    }
    await this.#console.drained();
    for (const name of STREAM_NAMES) {
      const state = this.#streams[name];
      if (state.written !== state.received) {
        return {
          ok: false,
          message: `Only ${state.written} of ${state.received} bytes of ${name} could be written.`,
        };
      }
      const crc32 = state.checksum.hex();
      if (crc32 !== finished.streams[name].crc32) {
        problems.push(
          `${name} has the CRC-32 ${crc32}, the relay's is ${finished.streams[name].crc32}`,
        );
      }
    }
    if (problems.length > 0) {
      return { ok: false, message: `The stream is corrupt: ${problems.join("; ")}.` };
    }
    return { ok: true };
  }
}
