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
import { Pacer } from "../timing.ts";

/** Bytes read from the archive at a time. */
const READ_BYTES = 256 * 1024;

/** What an unpack made. */
export interface Unpacked {
  files: number;
  directories: number;
  links: number;
}

/**
 * Reads an archive file through one buffer, in exact pieces: a header or a
 * small file costs no system call of its own. Reads are synchronous (a local
 * file), paced so that the process still gets a turn.
 */
class BlockReader {
  #file: Deno.FsFile;
  #buffer = new Uint8Array(READ_BYTES);
  #start = 0;
  #end = 0;
  readonly pacer = new Pacer();

  constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  /**
   * The next bytes of the archive, at most `most` of them, as a view valid
   * until the next call; empty at the end of the archive.
   */
  async take(most: number): Promise<Uint8Array> {
    if (this.#start === this.#end) {
      await this.pacer.turn();
      const read = this.#file.readSync(this.#buffer);
      if (read === null) return this.#buffer.subarray(0, 0);
      this.#start = 0;
      this.#end = read;
    }
    const length = Math.min(most, this.#end - this.#start);
    const piece = this.#buffer.subarray(this.#start, this.#start + length);
    this.#start += length;
    return piece;
  }

  /** Fills `into` completely; false when the archive ended before its first byte. */
  async fill(into: Uint8Array): Promise<boolean> {
    let filled = 0;
    while (filled < into.byteLength) {
      const piece = await this.take(into.byteLength - filled);
      if (piece.byteLength === 0) {
        if (filled === 0) return false;
        throw new ArchiveError("The archive ends in the middle of an entry.");
      }
      into.set(piece, filled);
      filled += piece.byteLength;
    }
    return true;
  }

  /** Passes over `bytes` bytes, which may run past the end. */
  skip(bytes: number): void {
    const buffered = this.#end - this.#start;
    if (bytes <= buffered) {
      this.#start += bytes;
      return;
    }
    this.#file.seekSync(bytes - buffered, Deno.SeekMode.Current);
    this.#start = this.#end = 0;
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
  const tree = new WorkTree(root);
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
      reader.skip(entry.size + paddingOf(entry.size));
      continue;
    }
    tree.makeParents(path);
    switch (entry.type) {
      case EntryType.file:
      case EntryType.oldFile:
      case EntryType.contiguousFile:
        await writeFile(reader, tree, path, entry);
        unpacked.files++;
        break;
      case EntryType.directory:
        tree.makeDirectory(path);
        directories.push({ path: target, header: entry });
        unpacked.directories++;
        reader.skip(entry.size + paddingOf(entry.size));
        break;
      case EntryType.symlink:
        tree.refuseLink(path);
        links.push({ path, target: entry.linkName });
        break;
      case EntryType.hardLink: {
        tree.refuseLink(path);
        const existing = join(root, checkedPath(entry.linkName));
        const info = lstatOrUndefined(existing);
        if (info === undefined || !info.isFile) {
          throw new ArchiveError(`The hard link ${path} names no file unpacked before it.`);
        }
        removeIfPresent(target);
        Deno.linkSync(existing, target);
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
  for (const link of links) makeLink(root, link.path, link.target);
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
    await reader.pacer.turn();
    Deno.chmodSync(path, header.mode & 0o777);
    try {
      Deno.utimeSync(path, header.mtimeSeconds, header.mtimeSeconds);
    } catch {
      // A time is a nicety; the build does not depend on it.
    }
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

function lstatOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

function removeIfPresent(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/**
 * The work directory as this unpack has made it: which directories are known
 * to be real directories (made or checked here), so that each is checked
 * once, not once per file below it.
 */
class WorkTree {
  #root: string;
  #directories = new Set<string>();

  constructor(root: string) {
    this.#root = root;
  }

  /** The work directory's real path. */
  get root(): string {
    return this.#root;
  }

  /**
   * Makes the directories above `path`; fails if any of them already exists
   * as a link (a work directory used before), since writing there would go
   * through it, or as something other than a directory.
   */
  makeParents(path: string): void {
    const parts = path.split("/");
    let current = "";
    for (const part of parts.slice(0, -1)) {
      current = current === "" ? part : `${current}/${part}`;
      this.makeDirectory(current, path);
    }
  }

  /** Makes the directory `dir` unless it is one already; `path` is the entry being unpacked. */
  makeDirectory(dir: string, path = dir): void {
    if (this.#directories.has(dir)) return;
    const full = join(this.#root, dir);
    const info = lstatOrUndefined(full);
    if (info?.isSymlink) this.#throughLink(path, dir);
    if (info === undefined) Deno.mkdirSync(full);
    else if (!info.isDirectory) throw new ArchiveError(`${dir} is both a file and a directory.`);
    this.#directories.add(dir);
  }

  /** Fails when `path` exists as a link: unpacking it would go through the link. */
  refuseLink(path: string): void {
    if (lstatOrUndefined(join(this.#root, path))?.isSymlink) this.#throughLink(path, path);
  }

  /**
   * Removes what is in the way of the file `path`, with one look: fails for a
   * link (writing would go through it) or a directory.
   */
  clearForFile(path: string): void {
    const full = join(this.#root, path);
    const info = lstatOrUndefined(full);
    if (info?.isSymlink) this.#throughLink(path, path);
    if (info?.isDirectory) throw new ArchiveError(`${path} is both a file and a directory.`);
    removeIfPresent(full);
  }

  #throughLink(path: string, link: string): never {
    throw new ArchiveError(`Unpacking ${path} would go through the link ${link}.`);
  }
}

/**
 * Writes one file's contents straight from the archive's buffer. A new file
 * is made without a look first; only when something is in the way is it
 * checked (a link is refused, a directory too) and replaced.
 */
async function writeFile(
  reader: BlockReader,
  tree: WorkTree,
  path: string,
  header: TarHeader,
): Promise<void> {
  const target = join(tree.root, path);
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(target, { write: true, createNew: true, mode: 0o600 });
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    tree.clearForFile(path);
    file = Deno.openSync(target, { write: true, createNew: true, mode: 0o600 });
  }
  try {
    let left = header.size;
    while (left > 0) {
      const piece = await reader.take(left);
      if (piece.byteLength === 0) throw new ArchiveError("The archive ends in a file.");
      let done = 0;
      while (done < piece.byteLength) done += file.writeSync(piece.subarray(done));
      left -= piece.byteLength;
    }
    file.utimeSync(header.mtimeSeconds, header.mtimeSeconds);
  } finally {
    file.close();
  }
  reader.skip(paddingOf(header.size));
  // Permission bits survive (the executable bit matters to a build); set-id bits do not.
  Deno.chmodSync(target, header.mode & 0o777);
}

/** Makes a symbolic link, refusing one whose text points outside the work directory. */
function makeLink(root: string, path: string, target: string): void {
  const at = join(root, path);
  if (target === "" || target.startsWith("/") || !isInside(root, resolve(dirname(at), target))) {
    throw new ArchiveError(`The link ${path} points outside the work directory (${target}).`);
  }
  if (lstatOrUndefined(at)?.isDirectory) {
    throw new ArchiveError(`The link ${path} would replace a directory of the archive.`);
  }
  removeIfPresent(at);
  Deno.symlinkSync(target, at);
}
