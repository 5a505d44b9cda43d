/**
 * Test support: tar archives built entry by entry, hostile ones included (a
 * `../` path, an absolute path, a link out of the tree), which no well-behaved
 * tar tool would write.
 *
 * @module
 */

import { concatBytes } from "../../src/io.ts";
import { BLOCK_BYTES, encodeHeader, EntryType, paddingOf } from "../../src/archive/tar_format.ts";

/** One entry to write. */
export interface TestEntry {
  name: string;
  /** A file's content; omit for a directory or a link. */
  content?: string | Uint8Array;
  /** `0` file (default with content), `5` directory, `2` symlink, `1` hard link. */
  type?: string;
  linkName?: string;
  mode?: number;
}

/** A tar archive holding `entries`, in order. */
export function tarOf(entries: readonly TestEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const entry of entries) {
    const content = typeof entry.content === "string"
      ? new TextEncoder().encode(entry.content)
      : entry.content ?? new Uint8Array();
    parts.push(encodeHeader({
      name: entry.name,
      mode: entry.mode ?? (entry.type === EntryType.directory ? 0o755 : 0o644),
      size: content.byteLength,
      mtimeSeconds: 1_700_000_000,
      type: entry.type ?? EntryType.file,
      linkName: entry.linkName ?? "",
    }));
    parts.push(content, new Uint8Array(paddingOf(content.byteLength)));
  }
  parts.push(new Uint8Array(2 * BLOCK_BYTES));
  return concatBytes(parts);
}
