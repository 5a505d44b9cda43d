/**
 * The build's source as the receiver offers it to the relay: one tar archive
 * on disk (a directory is packed into a temporary one; a `.tar` is used as it
 * is), with its size and SHA-256 known before the relay asks, and read back a
 * piece at a time, from any offset, so that a fetch can resume after a
 * dropped connection.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { errorMessage, PhonehomeError } from "../errors.ts";
import { ExitCode } from "../exit_codes.ts";
import { formatBytes } from "../format.ts";
import { releaseBuffer } from "../io.ts";
import {
  DATA_HEADER_BYTES,
  ProtocolError,
  SOURCE_WINDOW_BYTES,
  type SourceOffer,
  writeSourceHeader,
} from "../protocol/mod.ts";
import { packDirectory } from "../archive/tar_writer.ts";

/** Bytes hashed at a time when the archive is given as a file. */
const HASH_CHUNK_BYTES = 256 * 1024;

/** A source archive ready to be served; dispose of it when the build is over. */
export class SourceArchive implements AsyncDisposable {
  #path: string;
  #temporary: boolean;
  #file: Deno.FsFile;
  /** Reads one at a time: each seeks the one file. */
  #reads: Promise<unknown> = Promise.resolve();
  /** Size and SHA-256, as the welcome carries them. */
  readonly offer: SourceOffer;

  private constructor(path: string, temporary: boolean, file: Deno.FsFile, offer: SourceOffer) {
    this.#path = path;
    this.#temporary = temporary;
    this.#file = file;
    this.offer = offer;
  }

  /**
   * Prepares `path`, a directory or a tar archive. Throws
   * {@linkcode PhonehomeError} (status 65) when it cannot be read, cannot be
   * packed, or is over `limitBytes`.
   */
  static async prepare(path: string, limitBytes: number): Promise<SourceArchive> {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch (error) {
      throw sourceError(`Cannot read the source ${path}: ${errorMessage(error)}.`);
    }
    if (info.isDirectory) {
      const temporary = await Deno.makeTempFile({ prefix: "phonehome-source-", suffix: ".tar" });
      try {
        const out = await Deno.open(temporary, { write: true, truncate: true });
        const packed = await packDirectory(path, out, limitBytes).finally(() => out.close());
        return new SourceArchive(temporary, true, await Deno.open(temporary), packed);
      } catch (error) {
        await Deno.remove(temporary).catch(() => {});
        throw sourceError(`Cannot pack the source ${path}: ${errorMessage(error)}`);
      }
    }
    if (info.size > limitBytes) {
      throw sourceError(
        `The source ${path} is ${formatBytes(info.size)}, over the limit of ` +
          `${formatBytes(limitBytes)} (--source-limit).`,
      );
    }
    const file = await Deno.open(path);
    const hash = createHash("sha256");
    const buffer = new Uint8Array(HASH_CHUNK_BYTES);
    let bytes = 0;
    for (let read = await file.read(buffer); read !== null; read = await file.read(buffer)) {
      hash.update(buffer.subarray(0, read));
      bytes += read;
    }
    return new SourceArchive(path, false, file, { bytes, sha256: hash.digest("hex") });
  }

  /** Fills `into` with the archive's bytes from `offset`, which must all exist. */
  readInto(offset: number, into: Uint8Array): Promise<void> {
    const next = this.#reads.then(() => this.#readNow(offset, into));
    this.#reads = next.catch(() => {});
    return next;
  }

  async #readNow(offset: number, into: Uint8Array): Promise<void> {
    await this.#file.seek(offset, Deno.SeekMode.Start);
    let filled = 0;
    while (filled < into.byteLength) {
      const read = await this.#file.read(into.subarray(filled));
      if (read === null) throw new Error(`The source ${this.#path} shrank while being served.`);
      filled += read;
    }
  }

  /** Closes the archive, and removes it when it was packed for this build. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#file.close();
    if (this.#temporary) await Deno.remove(this.#path).catch(() => {});
  }
}

function sourceError(message: string): PhonehomeError {
  return new PhonehomeError(message, ExitCode.sourceFailed);
}

/** Bytes of the source in one SOURCE frame. */
const SOURCE_FRAME_BYTES = 256 * 1024;

/**
 * Serves one connection's fetches of `archive`, in order, a frame at a time;
 * never more than the source window at once, which is what bounds the
 * receiver's queue for that connection.
 */
export class SourceSender {
  #archive: SourceArchive;
  #send: (frame: Uint8Array) => boolean;
  #onError: (error: unknown) => void;
  #outstanding = 0;
  #chain: Promise<void> = Promise.resolve();

  /**
   * Creates a sender; `send` returns false once the connection cannot take
   * more, and `onError` hears of an archive that cannot be read.
   */
  constructor({ archive, send, onError }: {
    archive: SourceArchive;
    send: (frame: Uint8Array) => boolean;
    onError: (error: unknown) => void;
  }) {
    this.#archive = archive;
    this.#send = send;
    this.#onError = onError;
  }

  /** Queues a fetch; throws {@linkcode ProtocolError} for one the protocol does not allow. */
  request(offset: number, length: number): void {
    const { bytes } = this.#archive.offer;
    if (offset + length > bytes) {
      throw new ProtocolError(`The fetch asks for bytes past the source's ${bytes}.`);
    }
    if (this.#outstanding + length > SOURCE_WINDOW_BYTES) {
      throw new ProtocolError(
        `The relay asked for more than ${SOURCE_WINDOW_BYTES} bytes of the source at once.`,
      );
    }
    this.#outstanding += length;
    this.#chain = this.#chain.then(async () => {
      for (let at = offset; at < offset + length; at += SOURCE_FRAME_BYTES) {
        // The archive is read straight into the frame, after its header.
        const pieceBytes = Math.min(SOURCE_FRAME_BYTES, offset + length - at);
        const frame = new Uint8Array(DATA_HEADER_BYTES + pieceBytes);
        await this.#archive.readInto(at, frame.subarray(DATA_HEADER_BYTES));
        writeSourceHeader(frame, at);
        const sent = this.#send(frame);
        // The connection copied it into a WebSocket frame; nothing else holds it.
        releaseBuffer(frame);
        if (!sent) return;
        this.#outstanding -= pieceBytes;
      }
    }).catch((error) => this.#onError(error));
  }
}
