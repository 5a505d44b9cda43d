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

/** Bytes read from a file at a time. */
const CHUNK_BYTES = 256 * 1024;

/** What was written. */
export interface PackedArchive {
  bytes: number;
  sha256: string;
}

/** Writes every piece it is given to a file, counting and hashing them. */
class ArchiveSink {
  #file: Deno.FsFile;
  #hash = createHash("sha256");
  #bytes = 0;
  #limitBytes: number;

  constructor(file: Deno.FsFile, limitBytes: number) {
    this.#file = file;
    this.#limitBytes = limitBytes;
  }

  async write(bytes: Uint8Array): Promise<void> {
    this.#bytes += bytes.byteLength;
    if (this.#bytes > this.#limitBytes) {
      throw new ArchiveError(`The source is larger than ${this.#limitBytes} bytes.`);
    }
    this.#hash.update(bytes);
    let done = 0;
    while (done < bytes.byteLength) done += await this.#file.write(bytes.subarray(done));
  }

  result(): PackedArchive {
    return { bytes: this.#bytes, sha256: this.#hash.digest("hex") };
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
  await sink.write(new Uint8Array(2 * BLOCK_BYTES));
  return sink.result();
}

async function packEntries(root: string, relative: string, sink: ArchiveSink): Promise<void> {
  const entries = [...Deno.readDirSync(relative === "" ? root : `${root}/${relative}`)]
    .map((entry) => entry.name).sort();
  for (const name of entries) {
    const path = relative === "" ? name : `${relative}/${name}`;
    const full = `${root}/${path}`;
    const info = Deno.lstatSync(full);
    const common = { mode: (info.mode ?? 0o644) & 0o7777, mtimeSeconds: mtimeOf(info) };
    if (info.isSymlink) {
      await writeHeader(sink, {
        ...common,
        name: path,
        size: 0,
        type: EntryType.symlink,
        linkName: Deno.readLinkSync(full),
      });
    } else if (info.isDirectory) {
      await writeHeader(sink, {
        ...common,
        name: `${path}/`,
        size: 0,
        type: EntryType.directory,
        linkName: "",
      });
      await packEntries(root, path, sink);
    } else if (info.isFile) {
      await writeHeader(sink, {
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
async function writeHeader(sink: ArchiveSink, header: TarHeader): Promise<void> {
  const records: Record<string, string> = {};
  if (!fitsField(header.name)) records.path = header.name;
  if (!fitsField(header.linkName)) records.linkpath = header.linkName;
  if (Object.keys(records).length > 0) {
    const pax = encodePaxRecords(records);
    await sink.write(encodeHeader({
      name: "PaxHeader",
      mode: 0o644,
      size: pax.byteLength,
      mtimeSeconds: header.mtimeSeconds,
      type: EntryType.paxExtended,
      linkName: "",
    }));
    await sink.write(pax);
    await sink.write(new Uint8Array(paddingOf(pax.byteLength)));
  }
  await sink.write(encodeHeader({
    ...header,
    name: records.path === undefined ? header.name : header.name.slice(-99).replace(/^\/+/, ""),
    linkName: records.linkpath === undefined ? header.linkName : "",
  }));
}

async function copyFile(path: string, size: number, sink: ArchiveSink): Promise<void> {
  using file = await Deno.open(path, { read: true });
  const buffer = new Uint8Array(CHUNK_BYTES);
  let copied = 0;
  while (copied < size) {
    const read = await file.read(buffer.subarray(0, Math.min(CHUNK_BYTES, size - copied)));
    if (read === null) throw new ArchiveError(`${path} shrank while it was being packed.`);
    await sink.write(buffer.subarray(0, read));
    copied += read;
  }
  await sink.write(new Uint8Array(paddingOf(size)));
}
