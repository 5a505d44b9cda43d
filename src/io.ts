/**
 * Ordered, whole writes to one output (stdout or stderr of either side), so
 * that a chunk of the build's output and a message from phonehome are each
 * written whole, in order, never one inside the other.
 *
 * @module
 */

/** Anything with Deno's low-level `write`, such as `Deno.stdout`. */
export interface ByteSink {
  /** Writes some of `p`, resolving to how many bytes were written. */
  write(p: Uint8Array): Promise<number>;
}

/** Writes every byte of `bytes` to `sink`, looping over short writes. */
export async function writeAll(sink: ByteSink, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    done += await sink.write(bytes.subarray(done));
  }
}

/**
 * Frees the memory behind `bytes` now, for a buffer its owner is done with.
 * A fresh buffer per message or read is freed by V8 only at its next
 * collection, and at hundreds of MB/s the garbage piles up to tens of MB
 * before it is; detaching frees it at once. Only for bytes that are a whole
 * buffer of their own, or a view whose buffer nobody else uses.
 */
export function releaseBuffer(bytes: Uint8Array): void {
  const buffer = bytes.buffer;
  if (buffer instanceof ArrayBuffer && !buffer.detached) buffer.transfer(0);
}

/** `parts` joined into one new buffer. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** A queue of whole writes to one sink; each resolves once its bytes are out. */
export class OrderedWriter {
  #sink: ByteSink;
  #tail: Promise<void> = Promise.resolve();
  #failure: Error | undefined;

  /** Wraps `sink`; nothing else should write to it. */
  constructor(sink: ByteSink) {
    this.#sink = sink;
  }

  /** The first write error, after which every write fails the same way. */
  get failure(): Error | undefined {
    return this.#failure;
  }

  /** Queues `bytes` after everything queued before; resolves when written. */
  write(bytes: Uint8Array): Promise<void> {
    const next = this.#tail.then(async () => {
      if (this.#failure !== undefined) throw this.#failure;
      try {
        await writeAll(this.#sink, bytes);
      } catch (error) {
        this.#failure = error instanceof Error ? error : new Error(String(error));
        throw this.#failure;
      }
    });
    // The chain must survive a failed write so later writes report the same failure.
    this.#tail = next.catch(() => {});
    return next;
  }

  /** Resolves once everything queued so far has been written or has failed. */
  drained(): Promise<void> {
    return this.#tail;
  }
}
