/**
 * The sending half of a server-side WebSocket: a queue of encoded frames
 * written to the connection in order, with a bound on what a peer that does
 * not read can make it hold, and one pending pong that answers every ping.
 *
 * @module
 */

import { concatBytes, releaseBuffer } from "../../io.ts";
import { encodeFrame, MAX_CONTROL_PAYLOAD_BYTES, Opcode } from "./frames.ts";

/** Frames up to this size are gathered into one write; larger ones are written alone. */
const BATCH_BYTES = 64 * 1024;

/** Settings of a {@linkcode FrameWriter}. */
export interface FrameWriterOptions {
  /** Where the frames go. */
  conn: Deno.Conn;
  /** Most bytes queued for a peer that does not read. */
  maxUnsentBytes: number;
  /** The peer left `unsentBytes` unread, past the bound; the frame was not queued. */
  onOverflow: (unsentBytes: number) => void;
  /** A write failed; nothing more is written. */
  onError: (error: unknown) => void;
  /** Everything queued has been written. */
  onIdle: () => void;
}

/** Writes frames to one connection, in the order they were queued. */
export class FrameWriter {
  #options: FrameWriterOptions;
  #queue: Uint8Array[] = [];
  #unsentBytes = 0;
  #writing = false;
  #stopped = false;
  /** The payload of the latest ping not answered yet (RFC 6455 5.5.3 lets one pong answer all). */
  #pongPayload = new Uint8Array(MAX_CONTROL_PAYLOAD_BYTES);
  /** Bytes of {@linkcode #pongPayload} to send, or undefined when no pong is due. */
  #pongBytes: number | undefined;

  /** Writes to `options.conn` from now on. */
  constructor(options: FrameWriterOptions) {
    this.#options = options;
  }

  /** Bytes queued and not yet written. */
  get unsentBytes(): number {
    return this.#unsentBytes;
  }

  /** Whether a write is under way. */
  get writing(): boolean {
    return this.#writing;
  }

  /**
   * Queues `frame`. Past the bound the frame is refused and `onOverflow`
   * called, unless `always` (a close frame, which must go out regardless).
   */
  enqueue(frame: Uint8Array, always = false): void {
    if (this.#stopped) return;
    this.#unsentBytes += frame.byteLength;
    if (!always && this.#unsentBytes > this.#options.maxUnsentBytes) {
      this.#options.onOverflow(this.#unsentBytes);
      return;
    }
    this.#queue.push(frame);
    if (!this.#writing) this.#writeQueued();
  }

  /**
   * Answers a ping with the first `length` bytes of `payload`, copied: the
   * pong replaces any not yet sent.
   */
  pong(payload: Uint8Array, length: number): void {
    if (this.#stopped) return;
    // Copied by hand: a view per ping is what a flood of them would cost in garbage.
    for (let i = 0; i < length; i++) this.#pongPayload[i] = payload[i];
    this.#pongBytes = length;
    if (!this.#writing) this.#writeQueued();
  }

  /** Drops whatever is queued and writes nothing more. */
  stop(): void {
    this.#stopped = true;
    this.#queue = [];
    this.#pongBytes = undefined;
  }

  async #writeQueued(): Promise<void> {
    this.#writing = true;
    try {
      while ((this.#queue.length > 0 || this.#pongBytes !== undefined) && !this.#isStopped()) {
        const frames = this.#queue.splice(0);
        if (this.#pongBytes !== undefined) {
          const pong = encodeFrame(Opcode.pong, this.#pongPayload.subarray(0, this.#pongBytes));
          this.#pongBytes = undefined;
          this.#unsentBytes += pong.byteLength;
          frames.push(pong);
        }
        for (const bytes of writeBatches(frames)) {
          let done = 0;
          while (done < bytes.byteLength) {
            done += await this.#options.conn.write(bytes.subarray(done));
          }
          this.#unsentBytes -= bytes.byteLength;
          // The frame was made for this write: free a large one now, not at V8's next collection.
          if (bytes.byteLength >= BATCH_BYTES) releaseBuffer(bytes);
        }
      }
    } catch (error) {
      this.#writing = false;
      this.#options.onError(error);
      return;
    }
    this.#writing = false;
    if (!this.#stopped) this.#options.onIdle();
  }

  /** Whether writing has stopped (a method, so that checks after awaits are not narrowed away). */
  #isStopped(): boolean {
    return this.#stopped;
  }
}

/**
 * The writes for `frames`, in order: runs of small frames joined, so that
 * acknowledgements and pongs cost one system call, and each large frame on
 * its own, so that it is never copied.
 */
function* writeBatches(frames: Uint8Array[]): Generator<Uint8Array> {
  let run: Uint8Array[] = [];
  let runBytes = 0;
  for (const frame of frames) {
    if (frame.byteLength >= BATCH_BYTES || runBytes + frame.byteLength > BATCH_BYTES) {
      if (run.length > 0) yield run.length === 1 ? run[0] : concatBytes(run);
      run = [];
      runBytes = 0;
    }
    if (frame.byteLength >= BATCH_BYTES) {
      yield frame;
    } else {
      run.push(frame);
      runBytes += frame.byteLength;
    }
  }
  if (run.length > 0) yield run.length === 1 ? run[0] : concatBytes(run);
}
