/**
 * The relay's connection to the receiver: connects (retrying with backoff and
 * jitter until a deadline), says hello, resumes from the receiver's offsets,
 * sends frames as the outbox fills, applies acknowledgements, and delivers
 * FINISHED until a verdict comes back. It gives up, with a reason, only when
 * a deadline passes or the receiver refuses for good.
 *
 * @module
 */

import { authorizationHeader } from "../receiver/auth.ts";
import { formatDuration } from "../format.ts";
import {
  CloseCode,
  closeReason,
  encodeControl,
  type FinishedMessage,
  parseReceiverMessage,
  PING_TIMEOUT_INTERVALS,
  PROTOCOL_VERSION,
  ProtocolError,
  type RelayMessage,
  type VerdictMessage,
} from "../protocol.ts";
import type { Timer } from "../timing.ts";
import type { Outbox } from "./outbox.ts";

/** First retry delay; it doubles up to {@linkcode MAX_BACKOFF_MS}. */
const INITIAL_BACKOFF_MS = 100;

/** How long the relay waits for the close handshake after the verdict. */
const CLOSE_HANDSHAKE_TIMEOUT_MS = 2_000;

/** Shortest time a connection attempt gets to be welcomed before it is abandoned. */
const MIN_HANDSHAKE_TIMEOUT_MS = 5_000;

/** Longest pause between two connection attempts. */
const MAX_BACKOFF_MS = 2_000;

/** Settings of a phone line. */
export interface PhoneLineOptions {
  /** The receiver's URL. */
  url: string;
  /** The per-build secret. */
  token: string;
  /** Identifies this relay process across reconnects. */
  relayId: string;
  /** Output waiting to be sent. */
  outbox: Outbox;
  /** How long to keep trying before the first connection succeeds. */
  connectTimeoutMs: number;
  /** How long to keep trying after an established connection drops. */
  reconnectGraceMs: number;
  /** How often to ping the receiver; silence for four intervals counts as a drop. */
  pingIntervalMs: number;
  /** Reports a line about the connection (to the relay's stderr). */
  log: (text: string) => void;
}

/** What became of one connection attempt. */
interface AttemptResult {
  /** The receiver welcomed us on this connection. */
  established: boolean;
  /** Retrying cannot help (wrong secret, version mismatch, fenced). */
  permanent: boolean;
  /** Why the connection ended, in a sentence. */
  reason: string;
  /** The receiver said it is going away for good (close 4004). */
  receiverGone?: boolean;
}

/** Exponential backoff with full jitter over the upper half. */
function backoffMs(attempt: number): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, INITIAL_BACKOFF_MS * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** HTTP statuses after which retrying is pointless. */
const PERMANENT_HTTP_STATUSES: Record<number, string> = {
  401: "the receiver refused the secret (HTTP 401); check PHONEHOME_TOKEN",
  404: "the receiver does not serve this path (HTTP 404); check PHONEHOME_URL",
  410: "the receiver says this build's stream is already over (HTTP 410)",
};

/** Close codes after which retrying is pointless. */
const PERMANENT_CLOSE_CODES = new Set<number>([
  CloseCode.versionMismatch,
  CloseCode.protocolViolation,
  CloseCode.superseded,
  CloseCode.receiverGone,
]);

/** The relay's side of the conversation with one receiver. */
export class PhoneLine {
  #options: PhoneLineOptions;
  #socket: WebSocket | undefined;
  #established = false;
  #finished: FinishedMessage | undefined;
  #verdict: VerdictMessage | undefined;
  #failure: string | undefined;
  #settle!: () => void;
  #wakeRetry: (() => void) | undefined;
  #attempts = 0;
  #resentBytes = 0;
  #reconnects = 0;
  #welcomed = false;
  #closeTimer: Timer | undefined;
  #latestDeadlineMs = Infinity;
  #receiverGone!: (reason: string) => void;
  /** Settles when a verdict arrived or the line gave up; see {@linkcode verdict} and {@linkcode failure}. */
  readonly settled: Promise<void>;
  /**
   * Resolves, with a sentence fragment, if the receiver says it is going away
   * (close 4004): nobody can receive the build's output any more.
   */
  readonly receiverGone: Promise<string>;

  /** Creates a line; nothing happens until {@linkcode start}. */
  constructor(options: PhoneLineOptions) {
    this.#options = options;
    this.settled = new Promise((resolve) => {
      this.#settle = () => {
        clearTimeout(this.#closeTimer);
        resolve();
      };
    });
    this.receiverGone = new Promise((resolve) => (this.#receiverGone = resolve));
    options.outbox.onFrame(() => this.#sendFrames());
  }

  /** Gives up phoning home now, for `reason`; the build's output stays in the pod log only. */
  abandon(reason: string): void {
    this.#giveUp(reason);
  }

  /** The receiver's verdict on FINISHED, once it arrived. */
  get verdict(): VerdictMessage | undefined {
    return this.#verdict;
  }

  /** How often the line resumed after a drop, and how many bytes it sent again. */
  get stats(): { reconnects: number; resentBytes: number } {
    return { reconnects: this.#reconnects, resentBytes: this.#resentBytes };
  }

  /** Why the line gave up, if it did. */
  get failure(): string | undefined {
    return this.#failure;
  }

  /**
   * Stops retrying within `ms`, whatever the grace periods say: the relay is
   * being stopped (the pod is being deleted) and has little time left.
   */
  hurry(ms: number): void {
    this.#latestDeadlineMs = Math.min(this.#latestDeadlineMs, performance.now() + ms);
  }

  /** Starts connecting in the background. */
  start(): void {
    this.#run().catch((error) => this.#giveUp(`Internal error: ${(error as Error).message}`));
  }

  /** Sends FINISHED (now, or once connected) and resolves with the verdict, or undefined on failure. */
  async finish(message: FinishedMessage): Promise<VerdictMessage | undefined> {
    this.#finished = message;
    if (this.#established) this.#sendFinished();
    await this.settled;
    return this.#verdict;
  }

  async #run(): Promise<void> {
    const started = performance.now();
    let deadline = started + this.#options.connectTimeoutMs;
    let everConnected = false;
    let attempt = 0;
    let lastReason = "no attempt was made";
    while (this.#failure === undefined && this.#verdict === undefined) {
      const result = await this.#attempt();
      if (this.#verdict !== undefined || this.#failure !== undefined) return;
      lastReason = result.reason;
      if (result.permanent) {
        this.#giveUp(result.reason);
        if (result.receiverGone) this.#receiverGone(result.reason);
        return;
      }
      if (!everConnected && attempt === 0 && !result.established) {
        this.#options.log(
          `Cannot reach the receiver yet (${result.reason}); retrying for up to ` +
            `${formatDuration(Math.max(0, deadline - performance.now()))}.`,
        );
      }
      if (result.established) {
        everConnected = true;
        attempt = 0;
        deadline = performance.now() + this.#options.reconnectGraceMs;
        this.#options.log(
          `Lost the connection to the receiver (${result.reason}); reconnecting for up to ` +
            `${formatDuration(this.#options.reconnectGraceMs)}.`,
        );
      }
      const now = performance.now();
      deadline = Math.min(deadline, this.#latestDeadlineMs);
      if (now >= deadline) {
        this.#giveUp(
          now >= this.#latestDeadlineMs
            ? `The relay was told to stop before the receiver could be reached (last: ${lastReason})`
            : everConnected
            ? `The receiver did not come back within ${
              formatDuration(this.#options.reconnectGraceMs)
            } (last: ${lastReason})`
            : `No connection within ${formatDuration(this.#options.connectTimeoutMs)} ` +
              `(last: ${lastReason})`,
        );
        return;
      }
      await this.#pause(Math.min(backoffMs(attempt++), deadline - now));
    }
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wakeRetry = done;
    });
  }

  #attempt(): Promise<AttemptResult> {
    this.#attempts++;
    return new Promise((resolve) => {
      let socket: WebSocket;
      try {
        socket = new WebSocket(this.#options.url, {
          headers: { authorization: authorizationHeader(this.#options.token) },
        });
      } catch (error) {
        resolve({ established: false, permanent: true, reason: (error as Error).message });
        return;
      }
      socket.binaryType = "arraybuffer";
      this.#socket = socket;
      let established = false;
      let errorText = "";
      let lastHeardMs = performance.now();
      const pingTimeoutMs = this.#options.pingIntervalMs * PING_TIMEOUT_INTERVALS;
      // Connecting may need a SYN retransmission (1 s, then 3 s): allow for it however short the pings.
      const handshakeTimeoutMs = Math.max(pingTimeoutMs, MIN_HANDSHAKE_TIMEOUT_MS);
      const end = (result: AttemptResult): void => {
        clearInterval(pinger);
        if (this.#verdict !== undefined) this.#settle();
        socket.onopen =
          socket.onmessage =
          socket.onerror =
          socket.onclose =
            null;
        if (this.#socket === socket) this.#socket = undefined;
        this.#established = false;
        resolve(result);
      };
      // A half-open connection never closes by itself: judge it by pings, not by output.
      const pinger = setInterval(() => {
        const silentMs = performance.now() - lastHeardMs;
        if (silentMs > (established ? pingTimeoutMs : handshakeTimeoutMs)) {
          const reason = established
            ? `no answer to pings for ${formatDuration(Math.round(silentMs))}`
            : `no answer to the handshake within ${formatDuration(Math.round(silentMs))}`;
          try {
            socket.close(CloseCode.peerUnresponsive, closeReason("No answer to pings."));
          } catch {
            // Closing a socket that never opened can throw; it is abandoned either way.
          }
          end({ established, permanent: false, reason });
        } else if (established) {
          socket.send(encodeControl({ type: "ping" }));
        }
      }, this.#options.pingIntervalMs);
      socket.onopen = () => {
        lastHeardMs = performance.now();
        const hello: RelayMessage = {
          type: "hello",
          versions: [PROTOCOL_VERSION],
          relay: this.#options.relayId,
          attempt: this.#attempts,
          window: this.#options.outbox.windowBytes,
        };
        socket.send(encodeControl(hello));
      };
      socket.onerror = (event) => {
        errorText = event instanceof ErrorEvent ? event.message : "connection error";
      };
      socket.onmessage = (event) => {
        lastHeardMs = performance.now();
        try {
          if (typeof event.data !== "string") {
            throw new ProtocolError("The receiver sent a binary frame.");
          }
          if (this.#onControl(event.data)) established = true;
        } catch (error) {
          const violation = error instanceof ProtocolError ? error : new ProtocolError(
            `Cannot handle the receiver's message: ${(error as Error).message}`,
          );
          this.#options.log(`Closing the connection: ${violation.message}`);
          socket.close(violation.closeCode, closeReason(violation.message));
        }
      };
      socket.onclose = (event) => end(this.#describeClose(event, established, errorText));
    });
  }

  #describeClose(event: CloseEvent, established: boolean, errorText: string): AttemptResult {
    const status = /status code: (\d{3})/.exec(errorText);
    if (status !== null) {
      const code = Number(status[1]);
      const permanent = PERMANENT_HTTP_STATUSES[code];
      return {
        established,
        permanent: permanent !== undefined,
        reason: permanent ?? `the receiver answered HTTP ${code}`,
      };
    }
    if (event.code !== 0 && event.code !== 1005 && event.code !== 1006) {
      return {
        established,
        permanent: PERMANENT_CLOSE_CODES.has(event.code),
        receiverGone: event.code === CloseCode.receiverGone,
        reason: `the receiver closed the connection with code ${event.code}${
          event.reason ? ` (${event.reason.replace(/\.$/, "")})` : ""
        }`,
      };
    }
    const detail = errorText.replace(/^NetworkError: /, "") || "the connection closed";
    return { established, permanent: false, reason: detail };
  }

  /** Handles one control message; returns true when it established the connection. */
  #onControl(text: string): boolean {
    const message = parseReceiverMessage(text);
    switch (message.type) {
      case "welcome": {
        if (this.#established) throw new ProtocolError("Welcome sent twice.");
        if (message.version !== PROTOCOL_VERSION) {
          throw new ProtocolError(
            `The receiver answered with protocol v${message.version}; this relay speaks ` +
              `v${PROTOCOL_VERSION}.`,
            CloseCode.versionMismatch,
          );
        }
        const resent = this.#options.outbox.resume(message.acked);
        if (this.#welcomed) {
          this.#reconnects++;
          this.#resentBytes += resent;
        }
        this.#welcomed = true;
        this.#established = true;
        this.#sendFrames();
        if (this.#finished !== undefined) this.#sendFinished();
        return true;
      }
      case "ack":
        if (!this.#established) throw new ProtocolError("Acknowledgement before welcome.");
        this.#options.outbox.acknowledge(message);
        return false;
      case "verdict":
        if (this.#finished === undefined) throw new ProtocolError("Verdict before FINISHED.");
        this.#verdict = message;
        this.#socket?.close(CloseCode.normal, closeReason("Done."));
        // Settle once the close handshake is done, so the receiver sees a clean 1000 and
        // knows the verdict arrived; but never wait long for it.
        this.#closeTimer = setTimeout(() => this.#settle(), CLOSE_HANDSHAKE_TIMEOUT_MS);
        return false;
      case "ping":
        this.#socket?.send(encodeControl({ type: "pong" }));
        return false;
      case "pong":
        return false;
    }
  }

  #sendFrames(): void {
    const socket = this.#socket;
    if (!this.#established || socket === undefined) return;
    for (const frame of this.#options.outbox.takeUnsent()) socket.send(frame.bytes);
  }

  #sendFinished(): void {
    this.#sendFrames();
    if (this.#finished !== undefined) this.#socket?.send(encodeControl(this.#finished));
  }

  #giveUp(reason: string): void {
    if (this.#failure !== undefined || this.#verdict !== undefined) return;
    this.#failure = reason;
    this.#options.outbox.abandon();
    try {
      this.#socket?.close(CloseCode.normal, "Giving up.");
    } catch {
      // A socket still connecting cannot be closed with a code; it is dropped either way.
    }
    this.#wakeRetry?.();
    this.#settle();
  }
}
