/**
 * One connection of the relay to the receiver, from dialling to its end: it
 * presents the secret, says hello once the socket opens, judges liveness by
 * pings (never by output), and says in a sentence why it ended and whether
 * retrying can help. What the messages mean is the phone line's business.
 *
 * @module
 */

import { errorMessage } from "../errors.ts";
import { formatDuration } from "../format.ts";
import {
  authorizationHeader,
  CloseCode,
  closeReason,
  encodeControl,
  FINAL_CLOSE_CODES,
  type HelloMessage,
  parseReceiverMessage,
  PING_TIMEOUT_INTERVALS,
  ProtocolError,
  type ReceiverMessage,
  type RelayMessage,
} from "../protocol/mod.ts";
import type { Clock, ClockHandle } from "./clock.ts";
import { disableNagle } from "./no_delay.ts";

/** Shortest time a connection gets to be welcomed before it is abandoned. */
export const MIN_HANDSHAKE_TIMEOUT_MS = 5_000;

/** HTTP statuses after which retrying is pointless, with what to check. */
const FINAL_HTTP_STATUSES: Readonly<Record<number, string>> = {
  401: "the receiver refused the secret (HTTP 401); check PHONEHOME_TOKEN",
  404: "the receiver does not serve this path (HTTP 404); check PHONEHOME_URL",
  410: "the receiver says this build's stream is already over (HTTP 410)",
};

/** How one connection ended. */
export interface AttemptResult {
  /** The receiver welcomed the relay on this connection. */
  established: boolean;
  /** Retrying cannot help (wrong secret, version mismatch, fenced, the receiver is gone). */
  final: boolean;
  /** The receiver said it is going away for good (close 4004). */
  receiverGone: boolean;
  /** Why the connection ended, as a sentence fragment. */
  reason: string;
}

/** The parts of a WebSocket a connection uses; a test can play them. */
export interface SocketLike {
  binaryType: BinaryType;
  readonly readyState: number;
  send(data: string | ArrayBufferLike | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
}

/** Opens a WebSocket to `url` that presents `authorization`. */
export type SocketOpener = (url: string, authorization: string) => SocketLike;

/** Deno's WebSocket client, which accepts the `Authorization` header. */
export const openWebSocket: SocketOpener = (url, authorization) =>
  new WebSocket(url, { headers: { authorization } });

/**
 * Deno's WebSocket client, trusting `caPem` for wss:// (beside Deno's
 * built-in roots, which certify no pod IP). The header is sent only once the
 * TLS handshake has verified the receiver's certificate, so a receiver
 * without a certificate for its address from that CA never learns the secret.
 */
export function trustingWebSocketOpener(caPem: string): SocketOpener {
  const client = Deno.createHttpClient({ caCerts: [caPem] });
  return (url, authorization) => new WebSocket(url, { headers: { authorization }, client });
}

/** A failed TLS verification, as Deno words it. */
const CERTIFICATE_ERROR = /invalid peer certificate: ([A-Za-z]+)/;

/** Settings of a {@linkcode ConnectionAttempt}. */
export interface AttemptOptions {
  url: string;
  token: string;
  /** How often to ping; four silent intervals count as a drop. */
  pingIntervalMs: number;
  clock: Clock;
  openSocket: SocketOpener;
  /** The hello to send once the socket opens. */
  hello: HelloMessage;
  /**
   * Handles one control message; returns true when it established the
   * connection. Throws {@linkcode ProtocolError} for a violation.
   */
  onControl: (message: ReceiverMessage) => boolean;
  /** Handles a binary frame; throws {@linkcode ProtocolError} for one not allowed now. */
  onBinary: (frame: Uint8Array) => void;
  /** Reports a line about the connection. */
  log: (text: string) => void;
}

/** One connection; it starts dialling when created. */
export class ConnectionAttempt {
  #options: AttemptOptions;
  #socket: SocketLike | undefined;
  #established = false;
  #ended = false;
  #errorText = "";
  #lastHeardMs: number;
  #pinger: ClockHandle | undefined;
  #resolve!: (result: AttemptResult) => void;
  /** Settles once the connection has ended. */
  readonly result: Promise<AttemptResult>;

  /** Dials at once. */
  constructor(options: AttemptOptions) {
    this.#options = options;
    this.#lastHeardMs = options.clock.now();
    this.result = new Promise((resolve) => (this.#resolve = resolve));
    try {
      this.#socket = options.openSocket(options.url, authorizationHeader(options.token));
    } catch (error) {
      this.#end({
        established: false,
        final: true,
        receiverGone: false,
        reason: errorMessage(error),
      });
      return;
    }
    const socket = this.#socket;
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      // Deno's client leaves Nagle's algorithm on: see no_delay.ts.
      disableNagle();
      this.#lastHeardMs = options.clock.now();
      this.#send(options.hello);
    };
    socket.onerror = (event) => {
      this.#errorText = event instanceof ErrorEvent ? event.message : "connection error";
    };
    socket.onmessage = (event) => this.#onMessage(event);
    socket.onclose = (event) => this.#end(this.#describeClose(event));
    this.#schedulePing();
  }

  /** Whether the receiver has welcomed the relay on this connection. */
  get established(): boolean {
    return this.#established && !this.#ended;
  }

  /** Sends raw bytes (a DATA frame) or a control message, if the connection is up. */
  send(data: Uint8Array | RelayMessage): void {
    if (this.#ended || this.#socket?.readyState !== WebSocket.OPEN) return;
    if (data instanceof Uint8Array) this.#socket.send(data);
    else this.#send(data);
  }

  /** Closes the connection with `code`, and ends it at once when it could not be closed. */
  close(code: CloseCode, reason: string): void {
    try {
      this.#socket?.close(code, closeReason(reason));
    } catch {
      // A socket still connecting cannot be closed with a code; it is abandoned either way.
      this.#end({ established: this.#established, final: false, receiverGone: false, reason });
    }
  }

  #send(message: RelayMessage): void {
    this.#socket?.send(encodeControl(message));
  }

  /** Pings each interval, and gives the connection up when it has been silent too long. */
  #schedulePing(): void {
    const { clock, pingIntervalMs } = this.#options;
    this.#pinger = clock.after(pingIntervalMs, () => {
      if (this.#ended) return;
      const pingTimeoutMs = pingIntervalMs * PING_TIMEOUT_INTERVALS;
      // Connecting may need a SYN retransmission (1 s, then 3 s): allow for it however short the pings.
      const limitMs = this.#established
        ? pingTimeoutMs
        : Math.max(pingTimeoutMs, MIN_HANDSHAKE_TIMEOUT_MS);
      const silentMs = clock.now() - this.#lastHeardMs;
      if (silentMs > limitMs) {
        const reason = this.#established
          ? `no answer to pings for ${formatDuration(silentMs)}`
          : `no answer to the handshake within ${formatDuration(silentMs)}`;
        this.close(CloseCode.peerUnresponsive, "No answer to pings.");
        // A half-open connection never closes by itself: do not wait for it.
        this.#end({ established: this.#established, final: false, receiverGone: false, reason });
        return;
      }
      if (this.#established) this.#send({ type: "ping" });
      this.#schedulePing();
    });
  }

  #onMessage(event: MessageEvent): void {
    this.#lastHeardMs = this.#options.clock.now();
    try {
      if (typeof event.data !== "string") {
        this.#options.onBinary(new Uint8Array(event.data as ArrayBuffer));
      } else if (this.#options.onControl(parseReceiverMessage(event.data))) {
        this.#established = true;
      }
    } catch (error) {
      const violation = error instanceof ProtocolError
        ? error
        : new ProtocolError(`Cannot handle the receiver's message: ${errorMessage(error)}`);
      this.#options.log(`Closing the connection: ${violation.message}`);
      this.close(violation.closeCode, violation.message);
    }
  }

  #describeClose(event: CloseEvent): AttemptResult {
    const established = this.#established;
    const status = /status code: (\d{3})/.exec(this.#errorText);
    if (status !== null) {
      const code = Number(status[1]);
      const final = FINAL_HTTP_STATUSES[code];
      return {
        established,
        final: final !== undefined,
        receiverGone: false,
        reason: final ?? `the receiver answered HTTP ${code}`,
      };
    }
    if (event.code !== 0 && event.code !== 1005 && event.code !== 1006) {
      return {
        established,
        final: FINAL_CLOSE_CODES.has(event.code as CloseCode),
        receiverGone: event.code === CloseCode.receiverGone,
        reason: `the receiver closed the connection with code ${event.code}${
          event.reason ? ` (${event.reason.replace(/\.$/, "")})` : ""
        }`,
      };
    }
    const certificate = CERTIFICATE_ERROR.exec(this.#errorText);
    if (certificate !== null) {
      // Possibly another pod at that address, possibly someone in between: the secret was not
      // sent, and trying again is harmless.
      return {
        established,
        final: false,
        receiverGone: false,
        reason: "the builder's certificate is not the one this build was given " +
          `(${certificate[1]}); the secret was not sent`,
      };
    }
    const detail = this.#errorText.replace(/^NetworkError: /, "") || "the connection closed";
    return { established, final: false, receiverGone: false, reason: detail };
  }

  #end(result: AttemptResult): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#options.clock.cancel(this.#pinger);
    const socket = this.#socket;
    if (socket !== undefined) {
      socket.onopen =
        socket.onmessage =
        socket.onerror =
        socket.onclose =
          null;
    }
    this.#resolve(result);
  }
}
