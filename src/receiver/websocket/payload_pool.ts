/**
 * Memory for incoming messages, reused: a stream at full speed receives a
 * 256 KiB DATA frame every few hundred microseconds, and a fresh buffer for
 * each costs page faults and zeroing (a tenth of the receiver's CPU), then
 * an unmapping when it is freed.
 *
 * @module
 */

/** Settings of a {@linkcode PayloadPool}. */
export interface PayloadPoolOptions {
  /** Size of each pooled buffer: the longest message it serves. */
  bufferBytes: number;
  /** Messages shorter than this get memory of their own, so as not to hold a large buffer. */
  minimumBytes: number;
  /** Most free buffers kept; more are let go. */
  maxFreeBuffers: number;
}

/** Buffers for long messages, taken for a message and given back once its bytes are written. */
export class PayloadPool {
  #options: PayloadPoolOptions;
  #free: ArrayBuffer[] = [];

  /** Creates an empty pool. */
  constructor(options: PayloadPoolOptions) {
    this.#options = options;
  }

  /** Memory for a message of `length` bytes. */
  take(length: number): Uint8Array {
    const { bufferBytes, minimumBytes } = this.#options;
    if (length < minimumBytes || length > bufferBytes) return new Uint8Array(length);
    return new Uint8Array(this.#free.pop() ?? new ArrayBuffer(bufferBytes), 0, length);
  }

  /**
   * Gives back memory that {@linkcode take} handed out (any view of it), once
   * nothing reads it any more; other memory is left to the collector.
   */
  give(bytes: Uint8Array): void {
    const buffer = bytes.buffer;
    if (!(buffer instanceof ArrayBuffer) || buffer.byteLength !== this.#options.bufferBytes) return;
    if (this.#free.length < this.#options.maxFreeBuffers && !this.#free.includes(buffer)) {
      this.#free.push(buffer);
    }
  }
}
