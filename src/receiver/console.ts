/**
 * The builder's console: where the build's output and phonehome's own
 * messages reach the user. One queue serves both outputs, and each write
 * completes before the next starts, so what arrived in order is written in
 * order even across stdout and stderr. Queued pieces bound for the same
 * output go out in one write, so a build that prints in tiny pieces costs
 * one system call per batch, not per piece. phonehome's messages always start on a
 * line of their own; they (and the newline that may precede them) are the
 * only bytes phonehome adds.
 *
 * @module
 */

import { type ByteSink, writeAll } from "../io.ts";
import type { StreamName } from "../protocol/mod.ts";

/** Settings of a {@linkcode BuilderConsole}. */
export interface ConsoleOptions {
  /** Where the build's stdout goes. */
  stdout: ByteSink;
  /** Where the build's stderr and phonehome's messages go. */
  stderr: ByteSink;
  /** Write the build's stderr to stdout too. */
  merge: boolean;
  /** Whether stdout and stderr are one open file (a terminal, `>log 2>&1`, a hook's pipe). */
  sameFile: boolean;
  /** Print `...` on stderr after this much silence, so idle sessions stay open; 0 turns it off. */
  idleIntervalMs: number;
}

const NEWLINE = 0x0a;

/** Most bytes, and most pieces, gathered into one write. */
const BATCH_MAX_BYTES = 256 * 1024;
const BATCH_MAX_PIECES = 1024;

/** A piece of output waiting in the queue. */
interface Piece {
  sink: ByteSink;
  bytes: Uint8Array;
  /** Whether it must start on a line of its own (phonehome's messages). */
  ownLine: boolean;
  done: PromiseWithResolvers<void>;
}

/** The one ordered way to write to the builder's stdout and stderr. */
export class BuilderConsole {
  #options: ConsoleOptions;
  #queue: Piece[] = [];
  #writing = false;
  /** Settles once the last piece queued so far has been written or has failed. */
  #tail: Promise<void> = Promise.resolve();
  /** The first write error of each output; later writes to it fail the same way. */
  #failures = new Map<ByteSink, Error>();
  /** Whether the last byte written to each destination ended a line; one entry when they are one file. */
  #atLineStart: Map<ByteSink, boolean>;
  #lastActivityMs = performance.now();
  #idleTimer: ReturnType<typeof setInterval> | undefined;
  #silenced = false;

  /** Creates the console and starts its idle ticker. */
  constructor(options: ConsoleOptions) {
    this.#options = options;
    this.#atLineStart = new Map([[options.stdout, true], [options.stderr, true]]);
    const interval = options.idleIntervalMs;
    if (interval > 0) {
      this.#idleTimer = setInterval(() => {
        if (performance.now() - this.#lastActivityMs >= interval * 0.9) {
          this.#enqueue(this.#options.stderr, encoder.encode("...\n"), true).catch(() => {});
        }
      }, interval);
    }
  }

  /** Writes bytes of one of the build's streams, after everything queued before. */
  writeBuild(stream: StreamName, bytes: Uint8Array): Promise<void> {
    const sink = stream === "stdout" || this.#options.merge
      ? this.#options.stdout
      : this.#options.stderr;
    return this.#enqueue(sink, bytes, false);
  }

  /** Writes one of phonehome's own messages on stderr, on a line of its own. */
  message(text: string): Promise<void> {
    return this.writeLine(`phonehome: ${text}`);
  }

  /** Writes a line that already says where it comes from (the old builder's banners). */
  writeLine(line: string): Promise<void> {
    if (this.#silenced) return Promise.resolve();
    return this.#enqueue(this.#options.stderr, encoder.encode(`${line}\n`), true).catch(() => {});
  }

  /** Writes bytes that are not part of the stream (a pod log shown as a fallback) to stdout. */
  writeStdout(bytes: Uint8Array): Promise<void> {
    return this.#enqueue(this.#options.stdout, bytes, false);
  }

  /** Resolves once everything queued so far has been written or has failed. */
  drained(): Promise<void> {
    return this.#tail;
  }

  /**
   * Stops the idle ticker; with `outputGone`, also drops phonehome's messages
   * from now on: nobody reads them, and a write to a full pipe nobody drains
   * would never return.
   */
  stop(outputGone = false): void {
    clearInterval(this.#idleTimer);
    this.#idleTimer = undefined;
    if (outputGone) this.#silenced = true;
  }

  #enqueue(sink: ByteSink, bytes: Uint8Array, ownLine: boolean): Promise<void> {
    this.#lastActivityMs = performance.now();
    const done = Promise.withResolvers<void>();
    this.#queue.push({ sink, bytes, ownLine, done });
    // The tail must survive a failed write so that drained() still settles.
    this.#tail = done.promise.catch(() => {});
    if (!this.#writing) this.#writeQueued();
    return done.promise;
  }

  async #writeQueued(): Promise<void> {
    this.#writing = true;
    while (this.#queue.length > 0) {
      const batch = this.#takeBatch();
      const sink = batch[0].sink;
      let failure = this.#failures.get(sink);
      if (failure === undefined) {
        try {
          await writeAll(sink, this.#lay(batch));
        } catch (error) {
          failure = error instanceof Error ? error : new Error(String(error));
          this.#failures.set(sink, failure);
        }
      }
      for (const piece of batch) {
        if (failure === undefined) piece.done.resolve();
        else piece.done.reject(failure);
      }
    }
    this.#writing = false;
  }

  /** Takes the first piece and those after it bound for the same output, within the batch limits. */
  #takeBatch(): Piece[] {
    const sink = this.#queue[0].sink;
    let count = 0;
    let bytes = 0;
    while (
      count < this.#queue.length && count < BATCH_MAX_PIECES && this.#queue[count].sink === sink &&
      (count === 0 || bytes + this.#queue[count].bytes.byteLength <= BATCH_MAX_BYTES)
    ) {
      bytes += this.#queue[count].bytes.byteLength;
      count++;
    }
    return this.#queue.splice(0, count);
  }

  /** The bytes of `batch` as written: a message not at a line's start gets a newline first. */
  #lay(batch: Piece[]): Uint8Array {
    const key = this.#lineKey(batch[0].sink);
    let atLineStart = this.#atLineStart.get(key) ?? true;
    const parts: Uint8Array[] = [];
    let total = 0;
    for (const { bytes, ownLine } of batch) {
      if (ownLine && !atLineStart) {
        parts.push(NEWLINE_BYTES);
        total++;
      }
      parts.push(bytes);
      total += bytes.byteLength;
      if (bytes.byteLength > 0) atLineStart = bytes[bytes.byteLength - 1] === NEWLINE;
    }
    // Written or not, what follows is laid out as if it was: a failed output takes no more.
    this.#atLineStart.set(key, atLineStart);
    if (parts.length === 1) return parts[0];
    const out = new Uint8Array(total);
    let offset = 0;
    for (const part of parts) {
      out.set(part, offset);
      offset += part.byteLength;
    }
    return out;
  }

  /** Which line tracker a sink uses: one shared tracker when both are one file. */
  #lineKey(sink: ByteSink): ByteSink {
    return this.#options.sameFile ? this.#options.stdout : sink;
  }
}

const encoder = new TextEncoder();
const NEWLINE_BYTES = new Uint8Array([NEWLINE]);
