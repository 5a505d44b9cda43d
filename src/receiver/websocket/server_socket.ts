/**
 * The server side of one WebSocket connection (RFC 6455), over a TCP or TLS
 * connection whose upgrade has been answered. The receiver owns this layer,
 * rather than taking Deno.serve's, for what that cannot do: refuse a message
 * by the length its header announces, before any of it is buffered (Deno's
 * buffers up to 64 MiB, twice over, first); and bound what a peer that never
 * reads can make it queue.
 *
 * @module
 */

import { FrameWriter } from "./frame_writer.ts";
import { MessageAssembler } from "./message_assembler.ts";
import {
  decodeClosePayload,
  encodeClosePayload,
  encodeFrame,
  FrameHeader,
  MAX_CONTROL_PAYLOAD_BYTES,
  MAX_FRAME_HEADER_BYTES,
  Opcode,
  TransportCloseCode,
  unmask,
  WebSocketError,
} from "./frames.ts";

/** Bytes asked of the connection per read, at most. */
const READ_BUFFER_BYTES = 256 * 1024 + MAX_FRAME_HEADER_BYTES;

/**
 * Bytes asked per read while messages must be short: a connection that has
 * not been allowed long messages yet costs no more, so that hundreds of them
 * a second (a flood of connections that never say hello) stay cheap.
 */
const SMALL_READ_BUFFER_BYTES = 16 * 1024;

/**
 * Most frames read past, while waiting for the peer's answer to a close: a
 * relay may have a window's worth in flight (at most 4098 frames), but a peer
 * that keeps sending tiny frames is dropped rather than parsed for the whole
 * close timeout. Bytes are not counted: skipping a long message costs nothing.
 */
const MAX_FRAMES_WHILE_CLOSING = 16_384;

/** Payload bytes still to come that make a read go straight into the payload. */
const DIRECT_READ_MIN_BYTES = 16 * 1024;

/** How a connection ended. */
export interface SocketClose {
  /** The code of the peer's close frame; 1006 when the connection ended without one. */
  code: number;
  /** The reason in the peer's close frame, or what ended the connection. */
  reason: string;
  /** True when this side dropped the connection because the peer broke the rules. */
  dropped?: boolean;
}

/** Settings of a {@linkcode ServerSocket}. */
export interface ServerSocketOptions {
  /** The connection, its upgrade already answered. */
  conn: Deno.Conn;
  /** Bytes read past the request head, which belong to the first frames. */
  leftover: Uint8Array;
  /** Longest message accepted at first; see {@linkcode ServerSocket.maxMessageBytes}. */
  maxMessageBytes: number;
  /** Most bytes queued for a peer that does not read before it is dropped. */
  maxUnsentBytes: number;
  /** How long the peer gets to answer a close frame before the connection is dropped. */
  closeTimeoutMs: number;
  /** Memory for a data frame's payload of `length` bytes; a fresh buffer when absent. */
  allocate?: (length: number) => Uint8Array;
  /** A whole text (string) or binary (bytes, owned by the callee) message. */
  onMessage: (message: string | Uint8Array) => void;
  /** A message's header announced `length` bytes, beyond the limit; the socket waits for a close. */
  onTooLarge: (length: number, limit: number) => void;
  /** The peer sent more pings than {@linkcode ServerSocket.pingBudget} allowed (none by default). */
  onTooManyPings?: () => void;
  /** Called once when the connection has ended. */
  onClose: (close: SocketClose) => void;
}

/** One server-side WebSocket connection. */
export class ServerSocket {
  #options: ServerSocketOptions;
  #state: "open" | "closing" | "closed" = "open";
  /** The header of the frame being read; one object, reused for every frame. */
  #header = new FrameHeader();
  /** Whether the payload of {@linkcode #header} is being read. */
  #inPayload = false;
  /** Where that payload goes, or undefined while it is skipped. */
  #target: Uint8Array | undefined;
  /** Payload bytes of the current frame read so far. */
  #filled = 0;
  /** Frames begun since this side started closing. */
  #framesWhileClosing = 0;
  #messages: MessageAssembler;
  #writer: FrameWriter;
  /** How the connection ends once the queued frames (a close) are written. */
  #endAfterWrites: SocketClose | undefined;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  /** Where control frames' payloads are read: they are short, and a flood must not allocate. */
  #controlPayload = new Uint8Array(MAX_CONTROL_PAYLOAD_BYTES);
  /** How many more pings the peer may send before {@linkcode ServerSocketOptions.onTooManyPings}. */
  pingBudget = Infinity;

  /** Takes over `conn` and starts reading at once. */
  constructor(options: ServerSocketOptions) {
    this.#options = options;
    this.#messages = new MessageAssembler(options);
    this.#writer = new FrameWriter({
      conn: options.conn,
      maxUnsentBytes: options.maxUnsentBytes,
      onOverflow: (unsentBytes) =>
        // A peer that sends but never reads would make the queue grow without end.
        this.#end({
          code: TransportCloseCode.abnormal,
          reason: `it left ${unsentBytes} bytes of replies unread.`,
          dropped: true,
        }),
      onError: (error) => this.#end(abnormal(error)),
      onIdle: () => {
        if (this.#endAfterWrites !== undefined) this.#end(this.#endAfterWrites);
      },
    });
    // Reading starts on the next microtask, so the owner is set up before the first message.
    queueMicrotask(() => {
      this.#readLoop(options.leftover).catch((error) => this.#end(abnormal(error)));
    });
  }

  /** Longest message (the sum of its frames) accepted from now on. */
  get maxMessageBytes(): number {
    return this.#messages.maxMessageBytes;
  }

  set maxMessageBytes(bytes: number) {
    this.#messages.maxMessageBytes = bytes;
  }

  /** Whether messages can still be sent and are still delivered. */
  get open(): boolean {
    return this.#state === "open";
  }

  /** Bytes queued for the peer and not yet written to the connection. */
  get bufferedAmount(): number {
    return this.#writer.unsentBytes;
  }

  /** Queues a text (string) or binary message; ignored once closing. */
  send(message: string | Uint8Array): void {
    if (this.#state !== "open") return;
    const isText = typeof message === "string";
    const payload = isText ? new TextEncoder().encode(message) : message;
    this.#writer.enqueue(encodeFrame(isText ? Opcode.text : Opcode.binary, payload));
  }

  /**
   * Starts the closing handshake: sends a close frame and stops delivering
   * messages; the connection ends when the peer answers, or after the close
   * timeout. `reason` must fit in 123 bytes of UTF-8.
   */
  close(code: number, reason: string): void {
    if (this.#state !== "open") return;
    this.#state = "closing";
    this.#writer.enqueue(encodeFrame(Opcode.close, encodeClosePayload(code, reason)), true);
    this.#closeTimer = setTimeout(
      () => this.#end({ code: TransportCloseCode.abnormal, reason: "no answer to the close" }),
      this.#options.closeTimeoutMs,
    );
  }

  /** Drops the connection now, without a closing handshake. */
  abort(reason: string): void {
    this.#end({ code: TransportCloseCode.abnormal, reason });
  }

  async #readLoop(leftover: Uint8Array): Promise<void> {
    let buffer = new Uint8Array(Math.max(this.#readBufferBytes(), leftover.byteLength));
    buffer.set(leftover);
    let start = 0;
    let end = leftover.byteLength;
    while (!this.#isClosed()) {
      start = this.#consume(buffer, start, end);
      if (this.#isClosed()) return;
      if (buffer.byteLength < this.#readBufferBytes()) {
        // Long messages are allowed now: read in bigger pieces from here on.
        const larger = new Uint8Array(this.#readBufferBytes());
        larger.set(buffer.subarray(start, end));
        buffer = larger;
        end -= start;
        start = 0;
      } else if (start === end) {
        start = end = 0;
        const payload = this.#directReadTarget();
        if (payload !== undefined) {
          if (!(await this.#readPayload(payload))) return;
          continue;
        }
      } else if (buffer.byteLength - end < MAX_FRAME_HEADER_BYTES) {
        buffer.copyWithin(0, start, end);
        end -= start;
        start = 0;
      }
      const read = await this.#options.conn.read(buffer.subarray(end));
      if (read === null) {
        this.#end({ code: TransportCloseCode.abnormal, reason: "the connection closed" });
        return;
      }
      end += read;
    }
  }

  /**
   * The payload the next read goes straight into, if any: a long one, with
   * nothing of it buffered, is then read without a copy.
   */
  #directReadTarget(): Uint8Array | undefined {
    const target = this.#target;
    const direct = this.#inPayload && target !== undefined && target !== this.#controlPayload &&
      this.#header.length - this.#filled >= DIRECT_READ_MIN_BYTES;
    return direct ? target : undefined;
  }

  /** Reads into `payload`, the current frame's; false when the connection ended. */
  async #readPayload(payload: Uint8Array): Promise<boolean> {
    const header = this.#header;
    const into = payload.subarray(this.#filled, header.length);
    const read = await this.#options.conn.read(into);
    if (read === null) {
      this.#end({ code: TransportCloseCode.abnormal, reason: "the connection closed" });
      return false;
    }
    if (this.#isClosed()) return false;
    unmask(into.subarray(0, read), header.mask, this.#filled);
    this.#filled += read;
    if (this.#filled === header.length) {
      try {
        this.#endFrame();
      } catch (error) {
        if (!(error instanceof WebSocketError)) throw error;
        this.#fail(error);
      }
    }
    return !this.#isClosed();
  }

  #readBufferBytes(): number {
    return this.maxMessageBytes > SMALL_READ_BUFFER_BYTES
      ? READ_BUFFER_BYTES
      : SMALL_READ_BUFFER_BYTES;
  }

  /** Whether the connection has ended (a method, so that checks after calls are not narrowed away). */
  #isClosed(): boolean {
    return this.#state === "closed";
  }

  /** Handles every whole header and payload byte in buffer[start, end); returns the new start. */
  #consume(buffer: Uint8Array, start: number, end: number): number {
    const filled = buffer.subarray(0, end);
    try {
      while (start < end && this.#state !== "closed") {
        const header = this.#header;
        if (!this.#inPayload) {
          if (!header.read(filled, start)) return start;
          start += header.headerBytes;
          this.#beginFrame();
          continue;
        }
        const take = Math.min(end - start, header.length - this.#filled);
        const target = this.#target;
        if (target === this.#controlPayload) {
          // At most 125 bytes: copied by hand, since a view per ping is what a flood of them
          // would cost in garbage.
          for (let i = 0; i < take; i++) {
            const at = this.#filled + i;
            target[at] = buffer[start + i] ^ ((header.mask >>> ((at & 3) * 8)) & 0xff);
          }
        } else if (target !== undefined) {
          const chunk = target.subarray(this.#filled, this.#filled + take);
          chunk.set(buffer.subarray(start, start + take));
          unmask(chunk, header.mask, this.#filled);
        }
        this.#filled += take;
        start += take;
        if (this.#filled === header.length) this.#endFrame();
      }
    } catch (error) {
      if (!(error instanceof WebSocketError)) throw error;
      this.#fail(error);
      return end;
    }
    return start;
  }

  #beginFrame(): void {
    if (this.#state === "closing" && ++this.#framesWhileClosing > MAX_FRAMES_WHILE_CLOSING) {
      this.#end({ code: TransportCloseCode.abnormal, reason: "it kept sending after the close" });
      return;
    }
    const header = this.#header;
    const isData = header.opcode < Opcode.close;
    // Once closing, only the peer's close frame matters.
    const keep = isData
      ? this.#messages.begin(header, this.#state === "open")
      : this.#state === "open" || header.opcode === Opcode.close;
    this.#target = !keep
      ? undefined
      : isData
      ? (this.#options.allocate?.(header.length) ?? new Uint8Array(header.length))
      : this.#controlPayload;
    this.#filled = 0;
    this.#inPayload = true;
    if (header.length === 0) this.#endFrame();
  }

  #endFrame(): void {
    this.#inPayload = false;
    const { fin, opcode: frameOpcode, length } = this.#header;
    const target = this.#target;
    this.#target = undefined;
    switch (frameOpcode) {
      case Opcode.close:
        this.#onPeerClose(decodeClosePayload(this.#controlPayload.subarray(0, length)));
        return;
      case Opcode.ping:
        if (target === undefined) return;
        if (--this.pingBudget < 0) {
          this.#options.onTooManyPings?.();
          return;
        }
        // One pong answers every ping not answered yet, so a peer that pings and never reads
        // cannot make the queue grow.
        this.#writer.pong(target, length);
        return;
      case Opcode.pong:
        return;
    }
    if (target === undefined || this.#state !== "open") return;
    const message = this.#messages.end({ opcode: frameOpcode, fin }, target);
    if (message !== undefined) this.#options.onMessage(message);
  }

  #onPeerClose(close: SocketClose): void {
    if (this.#state === "closing") {
      // The peer answered our close frame (or closed while we failed the connection).
      this.#end(this.#endAfterWrites ?? close);
      return;
    }
    this.#state = "closing";
    // Echo the peer's code, then end once the echo is written.
    const payload = close.code === TransportCloseCode.noStatus
      ? empty
      : encodeClosePayload(close.code, "");
    this.#endAfterWrites = close;
    this.#writer.enqueue(encodeFrame(Opcode.close, payload), true);
  }

  /** Fails the connection for a framing error: a close frame with its code, then the end. */
  #fail(error: WebSocketError): void {
    const close = { code: error.closeCode, reason: error.message, dropped: true };
    if (this.#state === "open") {
      this.close(error.closeCode, error.message.slice(0, 120));
      // Nothing after a framing error can be trusted, not even a close frame: end once sent.
      this.#endAfterWrites = close;
      if (!this.#writer.writing) this.#end(close);
    } else {
      this.#end(close);
    }
  }

  /** Ends the connection, once, and reports how. */
  #end(close: SocketClose): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    clearTimeout(this.#closeTimer);
    this.#writer.stop();
    try {
      this.#options.conn.close();
    } catch {
      // Already closed.
    }
    this.#options.onClose(close);
  }
}

function abnormal(error: unknown): SocketClose {
  const message = error instanceof Error ? error.message : String(error);
  return { code: TransportCloseCode.abnormal, reason: message };
}

const empty = new Uint8Array();
