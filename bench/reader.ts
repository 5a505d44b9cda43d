/**
 * The benchmarks' reader: drains a pipe as fast as it can (or at a fixed
 * rate), hashing what it reads so that lost or altered bytes show, noting
 * when the first and last bytes arrived and, for the latency cases, how long
 * each timestamped line took to arrive.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** Bytes asked of the pipe per read. */
const READ_BYTES = 256 * 1024;

/** How to read. */
export interface ReadOptions {
  /** Read no faster than this many bytes per second; undefined for full speed. */
  throttleBytesPerSecond?: number;
  /** When given, each complete line's latency (arrival minus its leading timestamp) is pushed here. */
  latenciesMs?: number[];
  /**
   * Hash what is read (default true). A timed throughput run turns it off: the
   * reader then only counts, as a reader that discards the output would, and
   * the hashing does not take CPU from the processes measured.
   */
  hash?: boolean;
  /** Called once, when the first byte has arrived (a build is under way). */
  onFirstByte?: () => void;
}

/** What the reader saw. */
export interface ReadResult {
  /** Bytes read. */
  bytes: number;
  /** Lower-case hex SHA-256 of them; "" when not hashed. */
  sha256: string;
  /** `performance.now()` when the first byte arrived (NaN if none did). */
  firstByteAt: number;
  /** `performance.now()` when the last byte arrived (NaN if none did). */
  lastByteAt: number;
}

/** Parses the timestamps that open lines, carrying a partial line between reads. */
class LineClock {
  #decoder = new TextDecoder();
  #carry = "";
  #latencies: number[];

  constructor(latencies: number[]) {
    this.#latencies = latencies;
  }

  take(chunk: Uint8Array, arrivedEpochMs: number): void {
    const lines = (this.#carry + this.#decoder.decode(chunk, { stream: true })).split("\n");
    this.#carry = lines.pop() ?? "";
    for (const line of lines) {
      const stamp = Number(line.slice(0, line.indexOf(" ")));
      if (Number.isFinite(stamp) && stamp > 0) this.#latencies.push(arrivedEpochMs - stamp);
    }
  }
}

/** Reads `stream` to its end. */
export async function readOutput(
  stream: ReadableStream<Uint8Array>,
  options: ReadOptions = {},
): Promise<ReadResult> {
  const reader = stream.getReader({ mode: "byob" });
  const hash = options.hash === false ? undefined : createHash("sha256");
  const clock = options.latenciesMs === undefined ? undefined : new LineClock(options.latenciesMs);
  let buffer = new Uint8Array(READ_BYTES);
  let bytes = 0;
  let firstByteAt = Number.NaN;
  let lastByteAt = Number.NaN;
  try {
    while (true) {
      const { value, done } = await reader.read(buffer);
      if (done || value === undefined) break;
      const now = performance.now();
      clock?.take(value, performance.timeOrigin + now);
      if (bytes === 0) {
        firstByteAt = now;
        options.onFirstByte?.();
      }
      lastByteAt = now;
      bytes += value.byteLength;
      hash?.update(value);
      buffer = new Uint8Array(value.buffer);
      const rate = options.throttleBytesPerSecond;
      if (rate !== undefined) {
        // Stay no further ahead than the rate allows since the first byte.
        const wait = firstByteAt + (bytes / rate) * 1000 - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  } finally {
    reader.releaseLock();
  }
  return { bytes, sha256: hash?.digest("hex") ?? "", firstByteAt, lastByteAt };
}
