/**
 * Reads one of the build's pipes, byte-exact: copies each read to the relay's
 * own output (the pod log), checksums it, and coalesces reads into DATA frames so
 * that many tiny writes become few frames while a lone line leaves at once.
 *
 * @module
 */

import type { OrderedWriter } from "../io.ts";
import {
  Crc32,
  DATA_HEADER_BYTES,
  MAX_FRAME_PAYLOAD_BYTES,
  type StreamName,
  type StreamSummary,
  writeDataHeader,
} from "../protocol/mod.ts";
import type { Outbox } from "./outbox.ts";
import type { Timer } from "../timing.ts";

/** Settings of a pump. */
export interface StreamPumpOptions {
  /** Which of the build's streams this is. */
  stream: StreamName;
  /** The pipe to read. */
  readable: ReadableStream<Uint8Array>;
  /** Where frames go. */
  outbox: Outbox;
  /** Where each read is copied as is (the pod log); undefined to copy nowhere. */
  tee: OrderedWriter | undefined;
  /** How long a partial frame may wait for more output before it is sent. */
  coalesceDelayMs: number;
}

/** Moves one pipe's bytes into the outbox until the pipe ends or is cancelled. */
export class StreamPump {
  #options: StreamPumpOptions;
  #reader: ReadableStreamBYOBReader;
  #checksum = new Crc32();
  #bytes = 0;
  #frame: Uint8Array;
  #fill = 0;
  #flushed = 0;
  #lastFlushAt = Number.NEGATIVE_INFINITY;
  #timer: Timer | undefined;
  #peer: StreamPump | undefined;
  #cancelled = false;
  #wakeWaiter: (() => void) | undefined;
  /** Settles when the pipe has ended (or was cancelled) and every byte is in the outbox. */
  readonly done: Promise<void>;

  /** Starts pumping at once. */
  constructor(options: StreamPumpOptions) {
    this.#options = options;
    this.#frame = options.outbox.takeFrameBuffer();
    this.#reader = options.readable.getReader({ mode: "byob" });
    this.done = this.#run();
  }

  /** What FINISHED reports for this stream; valid once {@linkcode done} settled. */
  summary(): StreamSummary {
    return { bytes: this.#bytes, crc32: this.#checksum.hex() };
  }

  /**
   * Pairs this pump with the other stream's. Before either takes new bytes, the
   * other's coalesced bytes are sent, so frames leave in the order the pipes
   * were read and a stderr line does not overtake the stdout written before it.
   */
  pairWith(peer: StreamPump): void {
    this.#peer = peer;
    peer.#peer = this;
  }

  /**
   * Stops reading: the pipe is held open by a process that outlived the build,
   * or the window is full and nobody will acknowledge it any more.
   */
  async cancel(): Promise<void> {
    this.#cancelled = true;
    this.#wakeWaiter?.();
    await this.#reader.cancel().catch(() => {});
  }

  /**
   * Waits for room in the window or for {@linkcode cancel}. Each wait makes
   * its own promise: racing a promise that lives as long as the pump would
   * leave one reaction on it per wait, a leak that grew with the output.
   */
  async #roomOrCancel(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#wakeWaiter = resolve;
      this.#options.outbox.waitForRoom().then(resolve);
    });
    this.#wakeWaiter = undefined;
  }

  async #run(): Promise<void> {
    let spare = new Uint8Array(MAX_FRAME_PAYLOAD_BYTES);
    try {
      while (true) {
        // Checked first, so that a read with room to spare costs no extra turn of the loop.
        if (!this.#options.outbox.hasRoom && !this.#cancelled) await this.#roomOrCancel();
        if (this.#cancelled) break;
        const room = MAX_FRAME_PAYLOAD_BYTES - this.#fill;
        if (this.#fill === 0) {
          // An empty frame takes the read itself, saving a copy of every byte at full speed.
          // A BYOB read detaches the buffer it is given until it returns, which is safe only
          // while the frame holds nothing that a timer or the other pump may flush.
          const into = this.#frame.subarray(DATA_HEADER_BYTES, DATA_HEADER_BYTES + room);
          const { value, done } = await this.#reader.read(into);
          if (value !== undefined) this.#frame = new Uint8Array(value.buffer);
          if (done || value === undefined) break;
          await this.#take(value, value.byteLength < room);
        } else {
          const { value, done } = await this.#reader.read(spare.subarray(0, room));
          if (done || value === undefined) break;
          spare = new Uint8Array(value.buffer);
          // A timer may have sent the frame meanwhile: the bytes go after whatever it holds now.
          const at = DATA_HEADER_BYTES + this.#fill;
          this.#frame.set(value, at);
          await this.#take(
            this.#frame.subarray(at, at + value.byteLength),
            value.byteLength < room,
          );
        }
      }
    } catch (error) {
      // A read interrupted by our own cancel, or by the pipe's closing under it, ends the
      // stream; anything else is a real failure.
      const closed = error instanceof Deno.errors.BadResource ||
        error instanceof Deno.errors.Interrupted;
      if (!this.#cancelled && !closed) throw error;
    } finally {
      clearTimeout(this.#timer);
      this.#flush();
    }
  }

  /**
   * Counts `chunk`, already in the frame after its earlier bytes, and decides
   * when the frame leaves; `drained` when the read did not fill its room.
   */
  async #take(chunk: Uint8Array, drained: boolean): Promise<void> {
    if (this.#peer !== undefined) this.#peer.#flush();
    this.#checksum.update(chunk);
    this.#bytes += chunk.byteLength;
    const tee = this.#options.tee?.write(chunk);
    this.#fill += chunk.byteLength;
    if (this.#fill === MAX_FRAME_PAYLOAD_BYTES) {
      this.#flush();
    } else if (this.#timer === undefined) {
      if (drained && performance.now() - this.#lastFlushAt >= this.#options.coalesceDelayMs) {
        // Output after a quiet spell leaves at once: Deno's timers fire 2 ms or more after
        // a 1 ms request, which a lone line would pay. Frames still go out at most once per
        // delay this way, so a stream of tiny writes keeps being coalesced by the timer; and
        // a full read means more is waiting in the pipe, so it is coalesced too.
        this.#flush();
      } else {
        this.#timer = setTimeout(() => this.#flush(), this.#options.coalesceDelayMs);
      }
    }
    // A slow pod log should pace the reads.
    await tee?.catch(() => {});
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#fill === 0) return;
    const length = DATA_HEADER_BYTES + this.#fill;
    let bytes: Uint8Array;
    if (this.#fill * 2 >= MAX_FRAME_PAYLOAD_BYTES) {
      // A well-filled buffer is handed over whole; the outbox gives it back once acknowledged.
      bytes = this.#frame.subarray(0, length);
      this.#frame = this.#options.outbox.takeFrameBuffer();
    } else {
      // A small frame is copied out so it does not pin the large buffer.
      bytes = this.#frame.slice(0, length);
    }
    writeDataHeader(bytes, this.#options.stream, this.#flushed);
    this.#options.outbox.push({ stream: this.#options.stream, offset: this.#flushed, bytes });
    this.#flushed += this.#fill;
    this.#fill = 0;
    this.#lastFlushAt = performance.now();
  }
}
