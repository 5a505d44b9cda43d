/**
 * The end-to-end check of each output stream: CRC-32 (the IEEE polynomial,
 * as zlib computes it) of every byte, alongside the byte count. It guards
 * against phonehome's own mistakes on an authenticated connection, not
 * against an attacker, and costs next to nothing: zlib's CRC runs at tens of
 * GB/s where SHA-256 ran at about 1.2 GB/s and cost each side 0.8 CPU-seconds
 * per gigabyte.
 *
 * @module
 */

import { crc32 } from "node:zlib";

/** An incremental CRC-32. */
export class Crc32 {
  #value = 0;

  /** Adds `bytes` to the checksum. */
  update(bytes: Uint8Array): void {
    this.#value = crc32(bytes, this.#value);
  }

  /** The checksum so far, as 8 lower-case hex digits (as FINISHED carries it). */
  hex(): string {
    return (this.#value >>> 0).toString(16).padStart(8, "0");
  }
}

/** The CRC-32 of no bytes at all. */
export const EMPTY_CRC32 = "00000000";
