/**
 * The source tree of the source-transfer case, generated from a seed: many
 * small files in nested directories, some medium ones and a few large ones,
 * as a pushed application with its assets and vendored archives is. Small
 * files weigh on per-entry costs (headers, creating files), large ones on
 * the bytes per second.
 *
 * @module
 */

import { join } from "node:path";
import { Random } from "./random.ts";
import { BYTES_PER_MB } from "./stats.ts";

/** Shares of the total size by kind of file; the large ones take the rest. */
const SMALL_SHARE = 0.4;
const MEDIUM_SHARE = 0.2;

/** Small files: 200 B to 16 KiB, a hundred to a directory. */
const SMALL_FILE_BYTES = { min: 200, max: 16 * 1024 } as const;
const SMALL_FILES_PER_DIRECTORY = 100;

/** Medium files: 256 KiB to 2 MiB. */
const MEDIUM_FILE_BYTES = { min: 256 * 1024, max: 2 * 1024 * 1024 } as const;

/** Large files: about this size each (fewer when the tree is small). */
const LARGE_FILE_BYTES = 25 * BYTES_PER_MB;

/** Random bytes that file contents are cut from. */
const POOL_BYTES = 4 * 1024 * 1024;

/** What was generated. */
export interface SourceTree {
  /** The tree's root directory. */
  path: string;
  /** Regular files in it. */
  files: number;
  /** Their total size in bytes (the archive adds headers and padding). */
  bytes: number;
  /** Files by kind. */
  small: number;
  medium: number;
  large: number;
}

/** Writes files of random content and draws their sizes, from one seed. */
class TreeWriter {
  #random: Random;
  /** Random bytes every file's content is cut from, at a random offset. */
  #pool: Uint8Array;

  constructor(seed: number) {
    this.#random = new Random(seed);
    const words = new Uint32Array(POOL_BYTES / 4);
    for (let i = 0; i < words.length; i++) words[i] = Math.floor(this.#random.next() * 2 ** 32);
    this.#pool = new Uint8Array(words.buffer);
  }

  /** Sizes between `range.min` and `range.max` adding up to `total` (the last takes the rest). */
  sizes(total: number, range: { min: number; max: number }): number[] {
    const out: number[] = [];
    let left = total;
    while (left > 0) {
      const size = Math.min(left, range.min + this.#random.below(range.max - range.min + 1));
      out.push(size);
      left -= size;
    }
    return out;
  }

  /** Writes `bytes` bytes of the pool to `path`, from a random offset, wrapping around. */
  async write(path: string, bytes: number): Promise<void> {
    using file = await Deno.open(path, { write: true, create: true, truncate: true });
    let offset = this.#random.below(this.#pool.byteLength);
    let left = bytes;
    while (left > 0) {
      const end = offset + Math.min(left, this.#pool.byteLength - offset);
      const piece = this.#pool.subarray(offset, end);
      let done = 0;
      while (done < piece.byteLength) done += await file.write(piece.subarray(done));
      left -= piece.byteLength;
      offset = 0;
    }
  }
}

/** Generates a tree of `bytes` bytes of files under `path` (which must not exist yet). */
export async function writeSourceTree(
  path: string,
  options: { bytes: number; seed: number },
): Promise<SourceTree> {
  const writer = new TreeWriter(options.seed);
  const smallBytes = Math.floor(options.bytes * SMALL_SHARE);
  const mediumBytes = Math.floor(options.bytes * MEDIUM_SHARE);
  const largeBytes = options.bytes - smallBytes - mediumBytes;
  const largeCount = Math.max(1, Math.round(largeBytes / LARGE_FILE_BYTES));
  const large = Array.from(
    { length: largeCount },
    (_, i) => Math.floor(largeBytes / largeCount) + (i < largeBytes % largeCount ? 1 : 0),
  );
  const small = writer.sizes(smallBytes, SMALL_FILE_BYTES);
  const medium = writer.sizes(mediumBytes, MEDIUM_FILE_BYTES);

  for (const [i, size] of small.entries()) {
    const directory = join(
      path,
      "app",
      `module-${Math.floor(i / SMALL_FILES_PER_DIRECTORY / 10)}`,
      `part-${Math.floor(i / SMALL_FILES_PER_DIRECTORY)}`,
    );
    if (i % SMALL_FILES_PER_DIRECTORY === 0) await Deno.mkdir(directory, { recursive: true });
    await writer.write(join(directory, `file-${i}.src`), size);
  }
  await Deno.mkdir(join(path, "assets"), { recursive: true });
  for (const [i, size] of medium.entries()) {
    await writer.write(join(path, "assets", `asset-${i}.bin`), size);
  }
  await Deno.mkdir(join(path, "vendor"), { recursive: true });
  for (const [i, size] of large.entries()) {
    await writer.write(join(path, "vendor", `archive-${i}.tar.gz`), size);
  }
  return {
    path,
    files: small.length + medium.length + large.length,
    bytes: options.bytes,
    small: small.length,
    medium: medium.length,
    large: large.length,
  };
}
