/**
 * One upgraded connection as the receiver's session sees it: its socket, the
 * hello it owes, when it was last heard from, why this side closed it, and the
 * source fetches it makes.
 *
 * @module
 */

import { formatDuration } from "../format.ts";
import {
  closeReason,
  encodeControl,
  HELLO_TIMEOUT_MS,
  MAX_HELLO_MESSAGE_BYTES,
  MAX_MESSAGE_BYTES,
  MAX_PINGS_BEFORE_HELLO,
  MAX_UNSENT_BYTES,
  type ReceiverMessage,
} from "../protocol/mod.ts";
import type { Upgrade } from "./admission.ts";
import { type SourceArchive, SourceSender } from "./source_archive.ts";
import { PayloadPool } from "./websocket/payload_pool.ts";
import { ServerSocket, type SocketClose } from "./websocket/server_socket.ts";

/** How long a close handshake may take before the connection is dropped. */
const CLOSE_TIMEOUT_MS = 2_000;

/**
 * Memory for a stream's DATA frames: those of 64 KiB or more are read into
 * reused buffers, of which 8 MiB are kept at most (a window's worth).
 */
export function dataFramePool(): PayloadPool {
  return new PayloadPool({
    bufferBytes: MAX_MESSAGE_BYTES,
    minimumBytes: 64 * 1024,
    maxFreeBuffers: 32,
  });
}

/** What a {@linkcode RelayConnection} reports to its session. */
export interface ConnectionEvents {
  /** A whole message arrived. */
  onMessage: (connection: RelayConnection, data: string | Uint8Array) => void;
  /**
   * The peer broke a rule of the connection itself (a message over its
   * limit, more pings than {@linkcode MAX_PINGS_BEFORE_HELLO} before the
   * hello, no hello within {@linkcode HELLO_TIMEOUT_MS}); `reason` says which.
   * The session closes it with 4002.
   */
  onViolation: (connection: RelayConnection, reason: string) => void;
  /** The connection is closed, by either side or by a broken socket. */
  onClose: (connection: RelayConnection, close: SocketClose) => void;
}

/** One relay's connection; see the module comment. */
export class RelayConnection {
  /** The peer's address, `IP:PORT`, for messages. */
  readonly remote: string;
  /** Resolves once the connection is closed. */
  readonly closed: Promise<void>;
  /** Whether this connection completed the handshake. */
  greeted = false;
  /** Set once it has been handled as lost (closed, or given up on). */
  lost = false;
  /** When a message last arrived, from `performance.now()`. */
  lastHeardMs = performance.now();
  #socket: ServerSocket;
  #closedBecause: string | undefined;
  #helloTimer: ReturnType<typeof setTimeout> | undefined;
  #sourceSender: SourceSender | undefined;

  /**
   * Takes over `upgrade`; the hello timeout starts now. Long messages are
   * read into memory from `payloads`.
   */
  constructor(upgrade: Upgrade, events: ConnectionEvents, payloads: PayloadPool) {
    this.remote = upgrade.remote;
    let resolveClosed!: () => void;
    this.closed = new Promise((resolve) => (resolveClosed = resolve));
    this.#socket = new ServerSocket({
      conn: upgrade.conn,
      leftover: upgrade.leftover,
      maxMessageBytes: MAX_HELLO_MESSAGE_BYTES,
      maxUnsentBytes: MAX_UNSENT_BYTES,
      closeTimeoutMs: CLOSE_TIMEOUT_MS,
      allocate: (length) => payloads.take(length),
      onMessage: (message) => {
        this.lastHeardMs = performance.now();
        events.onMessage(this, message);
      },
      onTooLarge: (length, limit) =>
        events.onViolation(
          this,
          `A message of ${length} bytes is over the ${limit}-byte limit` +
            `${this.greeted ? "" : " before hello"}.`,
        ),
      onTooManyPings: () =>
        events.onViolation(this, `More than ${MAX_PINGS_BEFORE_HELLO} pings before hello.`),
      onClose: (close) => {
        this.stopHelloTimer();
        upgrade.release();
        events.onClose(this, close);
        resolveClosed();
      },
    });
    this.#socket.pingBudget = MAX_PINGS_BEFORE_HELLO;
    this.#helloTimer = setTimeout(
      () => events.onViolation(this, `No hello within ${formatDuration(HELLO_TIMEOUT_MS)}.`),
      HELLO_TIMEOUT_MS,
    );
  }

  /** Whether messages can still be sent. */
  get open(): boolean {
    return this.#socket.open;
  }

  /** Bytes of replies queued and not yet written to the connection. */
  get unsentBytes(): number {
    return this.#socket.bufferedAmount;
  }

  /** The reason this side gave when it closed the connection, if it did. */
  get closedBecause(): string | undefined {
    return this.#closedBecause;
  }

  /** Marks the handshake done: the hello timer stops and whole DATA frames are allowed. */
  greet(): void {
    this.greeted = true;
    this.stopHelloTimer();
    this.#socket.maxMessageBytes = MAX_MESSAGE_BYTES;
    this.#socket.pingBudget = Infinity;
  }

  /** Stops the hello timer, for a connection that said hello or is closing. */
  stopHelloTimer(): void {
    clearTimeout(this.#helloTimer);
    this.#helloTimer = undefined;
  }

  /** Sends a control message. */
  send(message: ReceiverMessage): void {
    this.#socket.send(encodeControl(message));
  }

  /**
   * Closes with `code`, giving `reason` (kept whole for messages, shortened
   * on the wire); false when it was already closing.
   */
  close(code: number, reason: string): boolean {
    if (this.#closedBecause !== undefined || !this.#socket.open) return false;
    this.stopHelloTimer();
    this.#closedBecause = reason;
    this.#socket.close(code, closeReason(reason));
    return true;
  }

  /** Closes as the receiver shuts down, whatever state the connection is in. */
  shutDown(code: number, reason: string): void {
    this.stopHelloTimer();
    this.#socket.close(code, reason);
  }

  /**
   * Serves a fetch of `source`, in order after this connection's earlier
   * ones; throws a `ProtocolError` for a fetch the protocol does not allow.
   */
  serveFetch(
    { source, offset, length, onError }: {
      source: SourceArchive;
      offset: number;
      length: number;
      onError: (error: unknown) => void;
    },
  ): void {
    this.#sourceSender ??= new SourceSender({
      archive: source,
      send: (frame) => {
        if (!this.#socket.open) return false;
        this.#socket.send(frame);
        return true;
      },
      onError,
    });
    this.#sourceSender.request(offset, length);
  }
}

/** A close as a user reads it. */
export function describeClose(close: SocketClose): string {
  if (close.dropped) return close.reason;
  if (close.code === 1006) return `the connection broke: ${close.reason}`;
  return close.reason ? `closed with code ${close.code}: ${close.reason}` : `code ${close.code}`;
}
