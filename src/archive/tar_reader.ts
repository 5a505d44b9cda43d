/**
 * Unpacks a tar archive into a work directory without letting it reach
 * anything outside: no absolute paths, no `..`, nothing written through a
 * link, no link that resolves outside, no devices. Files keep their
 * permission bits (set-id bits dropped) and times. The archive is read a
 * block at a time, never whole.
 *
 * @module
 */

import { dirname, join, normalize, relative, resolve } from "node:path";
import {
  ArchiveError,
  BLOCK_BYTES,
  EntryType,
  isZeroBlock,
  paddingOf,
  parseHeader,
  parsePaxRecords,
  type TarHeader,
} from "./tar_format.ts";

/** Bytes read from the archive at a time. */
const READ_BYTES = 256 * 1024;

/** What an unpack made. */
export interface Unpacked {
  files: number;
  directories: number;
  links: number;
}

/** Reads an archive file in exact pieces. */
class BlockReader {
  #file: Deno.FsFile;

  constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  /** Fills `into` completely; false when the archive ended before its first byte. */
  async fill(into: Uint8Array): Promise<boolean> {
    let filled = 0;
    while (filled < into.byteLength) {
      const read = await this.#file.read(into.subarray(filled));
      if (read === null) {
        if (filled === 0) return false;
        throw new ArchiveError("The archive ends in the middle of an entry.");
      }
      filled += read;
    }
    return true;
  }

  async skip(bytes: number): Promise<void> {
    await this.#file.seek(bytes, Deno.SeekMode.Current);
  }
}

/**
 * The entry's path relative to the work directory, checked: relative, without
 * `..` or NUL, not empty.
 */
function checkedPath(name: string): string {
  if (name.includes("\0")) throw new ArchiveError("An entry's name holds a NUL byte.");
  if (name.startsWith("/")) {
    throw new ArchiveError(`The entry ${JSON.stringify(name)} has an absolute path.`);
  }
  const parts = name.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) {
    throw new ArchiveError(`The entry ${JSON.stringify(name)} climbs out with "..".`);
  }
  return parts.join("/");
}

/** Whether `path` (absolute) is `root` or inside it. */
function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === "" || (!rel.startsWith("..") && !rel.startsWith("/"));
}

/**
 * Unpacks the archive at `archivePath` into `workDir`, which must exist.
 * Throws {@linkcode ArchiveError} for an archive that would reach outside it
 * or that phonehome does not unpack (devices, FIFOs, sparse files).
 */
export async function unpackArchive(archivePath: string, workDir: string): Promise<Unpacked> {
  const root = await Deno.realPath(workDir);
  using file = await Deno.open(archivePath, { read: true });
  const reader = new BlockReader(file);
  const unpacked: Unpacked = { files: 0, directories: 0, links: 0 };
  // Links are made last, so that nothing is ever written through one.
  const links: Array<{ path: string; target: string }> = [];
  const directories: Array<{ path: string; header: TarHeader }> = [];
  let pending: Record<string, string> = {};
  const block = new Uint8Array(BLOCK_BYTES);
  while (await reader.fill(block)) {
    if (isZeroBlock(block)) break;
    const header = parseHeader(block);
    if (
      header.type === EntryType.paxExtended || header.type === EntryType.gnuLongName ||
      header.type === EntryType.gnuLongLink || header.type === EntryType.paxGlobal
    ) {
      const content = await readContent(reader, header.size);
      if (header.type === EntryType.paxExtended) {
        pending = { ...pending, ...parsePaxRecords(content) };
      }
      if (header.type === EntryType.gnuLongName) pending.path = cString(content);
      if (header.type === EntryType.gnuLongLink) pending.linkpath = cString(content);
      continue;
    }
    const entry = {
      ...header,
      name: pending.path ?? header.name,
      linkName: pending.linkpath ?? header.linkName,
    };
    if (pending.size !== undefined) entry.size = Number(pending.size);
    pending = {};
    const path = checkedPath(entry.name);
    const target = join(root, path);
    if (path === "") {
      // The work directory itself ("./"): nothing to make.
      await reader.skip(entry.size + paddingOf(entry.size));
      continue;
    }
    await makeParents(root, path);
    switch (entry.type) {
      case EntryType.file:
      case EntryType.oldFile:
      case EntryType.contiguousFile:
        await writeFile(reader, target, entry);
        unpacked.files++;
        break;
      case EntryType.directory:
        await ensureDirectory(root, path);
        directories.push({ path: target, header: entry });
        unpacked.directories++;
        await reader.skip(entry.size + paddingOf(entry.size));
        break;
      case EntryType.symlink:
        links.push({ path, target: entry.linkName });
        break;
      case EntryType.hardLink: {
        const existing = join(root, checkedPath(entry.linkName));
        const info = await Deno.lstat(existing).catch(() => undefined);
        if (info === undefined || !info.isFile) {
          throw new ArchiveError(`The hard link ${path} names no file unpacked before it.`);
        }
        await Deno.remove(target).catch(() => {});
        await Deno.link(existing, target);
        unpacked.links++;
        break;
      }
      default:
        throw new ArchiveError(
          `The entry ${JSON.stringify(path)} is of a kind phonehome does not unpack ` +
            `(type ${JSON.stringify(entry.type)}): only files, directories and links are.`,
        );
    }
  }
  for (const link of links) await makeLink(root, link.path, link.target);
  // Only with every link in place does each resolve as it will for the build.
  for (const link of links) {
    const resolved = await Deno.realPath(join(root, link.path)).catch(() => undefined);
    if (resolved !== undefined && !isInside(root, normalize(resolved))) {
      throw new ArchiveError(`The link ${link.path} resolves outside the work directory.`);
    }
  }
  unpacked.links += links.length;
  // Directory modes last, so that a read-only one did not stop its contents being written.
  for (const { path, header } of directories.reverse()) {
    await Deno.chmod(path, header.mode & 0o777);
    await Deno.utime(path, header.mtimeSeconds, header.mtimeSeconds).catch(() => {});
  }
  return unpacked;
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end === -1 ? bytes : bytes.subarray(0, end));
}

async function readContent(reader: BlockReader, size: number): Promise<Uint8Array> {
  if (size > 1024 * 1024) throw new ArchiveError("An extended header is over 1 MiB.");
  const content = new Uint8Array(size + paddingOf(size));
  if (!(await reader.fill(content))) throw new ArchiveError("The archive ends in a header.");
  return content.subarray(0, size);
}

/**
 * Makes the directories above `path`; fails if any of them, or the path itself,
 * already exists as a link (a work directory used before), since writing there
 * would go through it.
 */
async function makeParents(root: string, path: string): Promise<void> {
  const parts = path.split("/");
  let current = root;
  for (const [i, part] of parts.entries()) {
    current = join(current, part);
    const info = await Deno.lstat(current).catch(() => undefined);
    if (info?.isSymlink) {
      throw new ArchiveError(
        `Unpacking ${path} would go through the link ${relative(root, current)}.`,
      );
    }
    if (i < parts.length - 1 && info === undefined) await Deno.mkdir(current);
  }
}

async function ensureDirectory(root: string, path: string): Promise<void> {
  const target = join(root, path);
  const info = await Deno.lstat(target).catch(() => undefined);
  if (info === undefined) await Deno.mkdir(target);
  else if (!info.isDirectory) throw new ArchiveError(`${path} is both a file and a directory.`);
}

async function writeFile(reader: BlockReader, target: string, header: TarHeader): Promise<void> {
  await Deno.remove(target).catch(() => {});
  {
    using file = await Deno.open(target, { write: true, createNew: true, mode: 0o600 });
    const buffer = new Uint8Array(READ_BYTES);
    let left = header.size;
    while (left > 0) {
      const piece = buffer.subarray(0, Math.min(READ_BYTES, left));
      if (!(await reader.fill(piece))) throw new ArchiveError("The archive ends in a file.");
      let done = 0;
      while (done < piece.byteLength) done += await file.write(piece.subarray(done));
      left -= piece.byteLength;
    }
  }
  await reader.skip(paddingOf(header.size));
  // Permission bits survive (the executable bit matters to a build); set-id bits do not.
  await Deno.chmod(target, header.mode & 0o777);
  await Deno.utime(target, header.mtimeSeconds, header.mtimeSeconds);
}

/** Makes a symbolic link, refusing one whose text points outside the work directory. */
async function makeLink(root: string, path: string, target: string): Promise<void> {
  const at = join(root, path);
  if (target === "" || target.startsWith("/") || !isInside(root, resolve(dirname(at), target))) {
    throw new ArchiveError(`The link ${path} points outside the work directory (${target}).`);
  }
  const existing = await Deno.lstat(at).catch(() => undefined);
  if (existing?.isDirectory) {
    throw new ArchiveError(`The link ${path} would replace a directory of the archive.`);
  }
  await Deno.remove(at).catch(() => {});
  await Deno.symlink(target, at);
}
