/**
 * The relay's fetch of the build's source: asks the receiver for the archive
 * a window at a time, writes it to a temporary file in order, resumes from
 * what it has after a dropped connection, and checks its size and SHA-256
 * before anything is unpacked.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { formatBytes } from "../format.ts";
import { releaseBuffer } from "../io.ts";
import {
  ProtocolError,
  SOURCE_WINDOW_BYTES,
  type SourceFrame,
  type SourceOffer,
} from "../protocol/mod.ts";

/**
 * Most source bytes this relay holds at once, asked for and not yet written:
 * half what the protocol allows, which on loopback fetches as fast and keeps
 * the relay's memory within the output path's bound.
 */
const FETCH_WINDOW_BYTES = SOURCE_WINDOW_BYTES / 2;

/** The source could not be fetched; the message says why, in a sentence. */
export class SourceFetchError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "SourceFetchError";
  }
}

/** The fetched archive, verified. */
export interface FetchedSource {
  /** A temporary file the caller removes. */
  path: string;
  bytes: number;
}

/** One fetch of the source, across as many connections as it takes. */
export class SourceFetch {
  #limitBytes: number;
  #offer: SourceOffer | undefined;
  #path: string | undefined;
  #file: Deno.FsFile | undefined;
  #hash = createHash("sha256");
  /** Bytes received and queued for writing, in order. */
  #received = 0;
  /** Bytes written to the file: what has left the relay's memory. */
  #written = 0;
  /** Bytes asked for on the current connection. */
  #requested = 0;
  #writes: Promise<void> = Promise.resolve();
  #request: ((offset: number, length: number) => void) | undefined;
  #resolve!: (source: FetchedSource) => void;
  #reject!: (error: SourceFetchError) => void;
  #settled = false;
  /** Settles with the verified archive, or with why it could not be had. */
  readonly done: Promise<FetchedSource>;

  /** Creates a fetch that refuses a source over `limitBytes`. */
  constructor(limitBytes: number) {
    this.#limitBytes = limitBytes;
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // Nobody may be waiting yet when it fails.
    this.done.catch(() => {});
  }

  /**
   * A connection was welcomed with `offer`: fetching starts, or resumes from
   * what has arrived, with `request` sending a fetch on that connection.
   */
  begin(offer: SourceOffer | undefined, request: (offset: number, length: number) => void): void {
    if (this.#settled) return;
    if (offer === undefined) {
      this.fail("The receiver offers no source, though the relay was told to fetch one.");
      return;
    }
    if (this.#offer === undefined) {
      if (offer.bytes > this.#limitBytes) {
        this.fail(
          `The source is ${formatBytes(offer.bytes)}, over this relay's limit of ` +
            `${formatBytes(this.#limitBytes)} (--source-limit).`,
        );
        return;
      }
      this.#offer = offer;
    } else if (offer.bytes !== this.#offer.bytes || offer.sha256 !== this.#offer.sha256) {
      this.fail("The receiver offered another source after a reconnect.");
      return;
    }
    this.#request = request;
    this.#requested = this.#received;
    if (offer.bytes === 0) this.#finish(offer);
    else this.#askForMore();
  }

  /** The connection that carried the fetch ended; the next welcome resumes it. */
  pause(): void {
    this.#request = undefined;
  }

  /** Takes a SOURCE frame; throws {@linkcode ProtocolError} for one nobody asked for. */
  accept(frame: SourceFrame): void {
    if (this.#settled) return;
    const offer = this.#offer;
    if (offer === undefined || this.#request === undefined) {
      throw new ProtocolError("A SOURCE frame arrived that was not asked for.");
    }
    const end = frame.offset + frame.payload.byteLength;
    if (frame.offset !== this.#received || end > this.#requested) {
      throw new ProtocolError(
        `A SOURCE frame covers bytes ${frame.offset} to ${end}, not the next ones asked for ` +
          `(${this.#received} on).`,
      );
    }
    this.#received = end;
    // The frame's memory is the fetch's until it is written.
    const bytes = frame.payload;
    this.#hash.update(bytes);
    this.#writes = this.#writes.then(async () => {
      await this.#write(bytes);
      this.#written += bytes.byteLength;
      releaseBuffer(bytes);
      // More is asked for only as the file takes it, so a disk slower than the
      // connection holds the relay's memory to one window.
      this.#askForMore();
    });
    this.#writes.catch(() => {});
    if (end === offer.bytes) this.#finish(offer);
  }

  /** Gives up for `reason`; the fetch's file is removed. */
  fail(reason: string): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#file?.close();
    if (this.#path !== undefined) Deno.remove(this.#path).catch(() => {});
    this.#reject(new SourceFetchError(reason));
  }

  /** Asks for the rest of the window, in one request, once half of it has been written. */
  #askForMore(): void {
    const offer = this.#offer;
    if (offer === undefined || this.#request === undefined || this.#settled) return;
    const outstanding = this.#requested - this.#written;
    if (outstanding > FETCH_WINDOW_BYTES / 2 || this.#requested >= offer.bytes) return;
    const length = Math.min(FETCH_WINDOW_BYTES - outstanding, offer.bytes - this.#requested);
    this.#request(this.#requested, length);
    this.#requested += length;
  }

  async #write(bytes: Uint8Array): Promise<void> {
    if (this.#file === undefined) {
      this.#path = await Deno.makeTempFile({ prefix: "phonehome-source-", suffix: ".tar" });
      this.#file = await Deno.open(this.#path, { write: true, truncate: true });
    }
    let done = 0;
    while (done < bytes.byteLength) done += await this.#file.write(bytes.subarray(done));
  }

  async #finish(offer: SourceOffer): Promise<void> {
    try {
      if (offer.bytes === 0) await this.#write(new Uint8Array());
      await this.#writes;
    } catch (error) {
      this.fail(`Cannot store the source: ${error instanceof Error ? error.message : error}.`);
      return;
    }
    const sha256 = this.#hash.digest("hex");
    if (sha256 !== offer.sha256) {
      this.fail(
        `The source arrived with the SHA-256 ${sha256.slice(0, 12)}…, not the ` +
          `${offer.sha256.slice(0, 12)}… the receiver announced.`,
      );
      return;
    }
    this.#settled = true;
    this.#file?.close();
    this.#resolve({ path: this.#path ?? "", bytes: offer.bytes });
  }
}
