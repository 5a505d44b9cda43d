/**
 * Packs a directory into a tar archive on disk, streamed (a file at a time,
 * in pieces), with the archive's size and SHA-256 computed as it is written:
 * what the builder offers a relay when `--source` names a directory.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  ArchiveError,
  BLOCK_BYTES,
  encodeHeader,
  encodePaxRecords,
  EntryType,
  fitsField,
  paddingOf,
  type TarHeader,
} from "./tar_format.ts";
import { Pacer } from "../timing.ts";

/** Bytes gathered before each write to the archive. */
const BUFFER_BYTES = 256 * 1024;

/** What was written. */
export interface PackedArchive {
  bytes: number;
  sha256: string;
}

/**
 * Gathers the archive in one buffer and writes it out when full, counting and
 * hashing it: thousands of small files then cost a few large writes, and the
 * files are read straight into the buffer. Calls are synchronous (local
 * files), paced so the process still gets a turn.
 */
class ArchiveSink {
  #file: Deno.FsFile;
  #hash = createHash("sha256");
  #buffer = new Uint8Array(BUFFER_BYTES);
  #filled = 0;
  #bytes = 0;
  #limitBytes: number;
  readonly pacer = new Pacer();

  constructor(file: Deno.FsFile, limitBytes: number) {
    this.#file = file;
    this.#limitBytes = limitBytes;
  }

  /** Adds `bytes` to the archive. */
  write(bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.byteLength) {
      const take = Math.min(bytes.byteLength - done, this.#space());
      this.#buffer.set(bytes.subarray(done, done + take), this.#filled);
      this.#advance(take);
      done += take;
    }
  }

  /** Adds `count` zero bytes (padding). */
  zeros(count: number): void {
    let left = count;
    while (left > 0) {
      const take = Math.min(left, this.#space());
      this.#buffer.fill(0, this.#filled, this.#filled + take);
      this.#advance(take);
      left -= take;
    }
  }

  /** Adds at most `most` bytes read from `file`; the count read, or null at its end. */
  readFrom(file: Deno.FsFile, most: number): number | null {
    const space = this.#space();
    const read = file.readSync(
      this.#buffer.subarray(this.#filled, this.#filled + Math.min(most, space)),
    );
    if (read !== null) this.#advance(read);
    return read;
  }

  /** Writes what is left and returns the archive's size and digest. */
  finish(): PackedArchive {
    this.#flush();
    return { bytes: this.#bytes, sha256: this.#hash.digest("hex") };
  }

  /** Room left in the buffer, after writing it out if it is full. */
  #space(): number {
    if (this.#filled === BUFFER_BYTES) this.#flush();
    return BUFFER_BYTES - this.#filled;
  }

  #advance(bytes: number): void {
    this.#bytes += bytes;
    if (this.#bytes > this.#limitBytes) {
      throw new ArchiveError(`The source is larger than ${this.#limitBytes} bytes.`);
    }
    this.#filled += bytes;
  }

  #flush(): void {
    const bytes = this.#buffer.subarray(0, this.#filled);
    this.#hash.update(bytes);
    let done = 0;
    while (done < bytes.byteLength) done += this.#file.writeSync(bytes.subarray(done));
    this.#filled = 0;
  }
}

/**
 * Packs `dir` (its contents, not the directory itself) into `out`. Regular
 * files, directories and symbolic links are kept with their permission bits;
 * anything else (a socket, a device) is an {@linkcode ArchiveError}, and so is
 * an archive past `limitBytes`.
 */
export async function packDirectory(
  dir: string,
  out: Deno.FsFile,
  limitBytes: number,
): Promise<PackedArchive> {
  const sink = new ArchiveSink(out, limitBytes);
  await packEntries(dir, "", sink);
  sink.zeros(2 * BLOCK_BYTES);
  return sink.finish();
}

async function packEntries(root: string, relative: string, sink: ArchiveSink): Promise<void> {
  const entries = [...Deno.readDirSync(relative === "" ? root : `${root}/${relative}`)]
    .map((entry) => entry.name).sort();
  for (const name of entries) {
    await sink.pacer.turn();
    const path = relative === "" ? name : `${relative}/${name}`;
    const full = `${root}/${path}`;
    const info = Deno.lstatSync(full);
    const common = { mode: (info.mode ?? 0o644) & 0o7777, mtimeSeconds: mtimeOf(info) };
    if (info.isSymlink) {
      writeHeader(sink, {
        ...common,
        name: path,
        size: 0,
        type: EntryType.symlink,
        linkName: Deno.readLinkSync(full),
      });
    } else if (info.isDirectory) {
      writeHeader(sink, {
        ...common,
        name: `${path}/`,
        size: 0,
        type: EntryType.directory,
        linkName: "",
      });
      await packEntries(root, path, sink);
    } else if (info.isFile) {
      writeHeader(sink, {
        ...common,
        name: path,
        size: info.size,
        type: EntryType.file,
        linkName: "",
      });
      await copyFile(full, info.size, sink);
    } else {
      throw new ArchiveError(`Cannot pack ${path}: only files, directories and links can be.`);
    }
  }
}

function mtimeOf(info: Deno.FileInfo): number {
  return Math.floor((info.mtime?.getTime() ?? 0) / 1000);
}

/** A header, preceded by a pax header for a name or link too long for ustar. */
function writeHeader(sink: ArchiveSink, header: TarHeader): void {
  const records: Record<string, string> = {};
  if (!fitsField(header.name)) records.path = header.name;
  if (!fitsField(header.linkName)) records.linkpath = header.linkName;
  if (Object.keys(records).length > 0) {
    const pax = encodePaxRecords(records);
    sink.write(encodeHeader({
      name: "PaxHeader",
      mode: 0o644,
      size: pax.byteLength,
      mtimeSeconds: header.mtimeSeconds,
      type: EntryType.paxExtended,
      linkName: "",
    }));
    sink.write(pax);
    sink.zeros(paddingOf(pax.byteLength));
  }
  sink.write(encodeHeader({
    ...header,
    name: records.path === undefined ? header.name : header.name.slice(-99).replace(/^\/+/, ""),
    linkName: records.linkpath === undefined ? header.linkName : "",
  }));
}

async function copyFile(path: string, size: number, sink: ArchiveSink): Promise<void> {
  using file = Deno.openSync(path, { read: true });
  let copied = 0;
  while (copied < size) {
    await sink.pacer.turn();
    const read = sink.readFrom(file, size - copied);
    if (read === null) throw new ArchiveError(`${path} shrank while it was being packed.`);
    copied += read;
  }
  sink.zeros(paddingOf(size));
}
