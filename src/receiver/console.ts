/**
 * The builder's console: where the build's output and phonehome's own
 * messages reach the user. One queue serves both outputs, and each write
 * completes before the next starts, so what arrived in order is written in
 * order even across stdout and stderr. phonehome's messages always start on a
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

/** The one ordered way to write to the builder's stdout and stderr. */
export class BuilderConsole {
  #options: ConsoleOptions;
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
    const next = this.#tail.then(async () => {
      const failure = this.#failures.get(sink);
      if (failure !== undefined) throw failure;
      const key = this.#lineKey(sink);
      let out = bytes;
      if (ownLine && this.#atLineStart.get(key) === false) {
        out = new Uint8Array(bytes.byteLength + 1);
        out[0] = NEWLINE;
        out.set(bytes, 1);
      }
      try {
        await writeAll(sink, out);
      } catch (error) {
        const failure = error instanceof Error ? error : new Error(String(error));
        this.#failures.set(sink, failure);
        throw failure;
      }
      if (out.byteLength > 0) this.#atLineStart.set(key, out[out.byteLength - 1] === NEWLINE);
    });
    // The chain must survive a failed write so later writes report the same failure.
    this.#tail = next.catch(() => {});
    return next;
  }

  /** Which line tracker a sink uses: one shared tracker when both are one file. */
  #lineKey(sink: ByteSink): ByteSink {
    return this.#options.sameFile ? this.#options.stdout : sink;
  }
}

const encoder = new TextEncoder();
