/**
 * The lines of the many-small-writes case: 80 bytes each, numbered, so that
 * the writer can patch one buffer in place (cheap enough that the writer is
 * not what is measured) and the bench can compute the expected checksum.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { CorpusDigest } from "./corpus.ts";

/** Bytes per line, newline included. */
export const SMALL_LINE_BYTES = 80;

/** Where the ten-digit line number sits in the template. */
const NUMBER_OFFSET = 1;
const NUMBER_DIGITS = 10;

const TEMPLATE = "[0000000000]   CC      src/generated/module.c -> build/generated/module.o  ok";

/** A fresh line buffer holding the template (with its newline). */
export function smallLineTemplate(): Uint8Array {
  const text = `${TEMPLATE.padEnd(SMALL_LINE_BYTES - 1, " ")}\n`;
  const bytes = new TextEncoder().encode(text);
  if (bytes.byteLength !== SMALL_LINE_BYTES) throw new Error("The template is not 80 bytes.");
  return bytes;
}

/** Writes line number `index` into `line` (a buffer from {@linkcode smallLineTemplate}). */
export function numberSmallLine(line: Uint8Array, index: number): void {
  let rest = index;
  for (let at = NUMBER_OFFSET + NUMBER_DIGITS - 1; at >= NUMBER_OFFSET; at--) {
    line[at] = 48 + (rest % 10);
    rest = Math.floor(rest / 10);
  }
}

/** The size and checksum of `count` lines, computed in large batches. */
export function smallLinesDigest(count: number): CorpusDigest {
  const hash = createHash("sha256");
  const linesPerBatch = 16_384;
  const batch = new Uint8Array(linesPerBatch * SMALL_LINE_BYTES);
  const template = smallLineTemplate();
  for (let i = 0; i < linesPerBatch; i++) batch.set(template, i * SMALL_LINE_BYTES);
  for (let first = 0; first < count; first += linesPerBatch) {
    const lines = Math.min(linesPerBatch, count - first);
    for (let i = 0; i < lines; i++) {
      numberSmallLine(batch.subarray(i * SMALL_LINE_BYTES, (i + 1) * SMALL_LINE_BYTES), first + i);
    }
    hash.update(batch.subarray(0, lines * SMALL_LINE_BYTES));
  }
  return { bytes: count * SMALL_LINE_BYTES, sha256: hash.digest("hex") };
}
