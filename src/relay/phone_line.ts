/**
 * The relay's connection to the receiver over time: connects (retrying with
 * backoff and jitter until a deadline), resumes from the receiver's offsets,
 * sends frames as the outbox fills, applies acknowledgements, and delivers
 * FINISHED until a verdict comes back. It gives up, with a reason, only when
 * a deadline passes or the receiver refuses for good. Each connection is a
 * {@linkcode ConnectionAttempt}.
 *
 * @module
 */

import { errorMessage } from "../errors.ts";
import { formatDuration } from "../format.ts";
import {
  CloseCode,
  decodeSourceFrame,
  type FinishedMessage,
  type HelloMessage,
  PROTOCOL_VERSION,
  ProtocolError,
  type ReceiverMessage,
  type VerdictMessage,
} from "../protocol/mod.ts";
import { type Clock, type ClockHandle, systemClock } from "./clock.ts";
import {
  type AttemptResult,
  ConnectionAttempt,
  openWebSocket,
  type SocketOpener,
} from "./connection_attempt.ts";
import type { Outbox } from "./outbox.ts";
import type { SourceFetch } from "./source_fetch.ts";

/** First pause before reconnecting; it doubles up to {@linkcode MAX_BACKOFF_MS}. */
export const INITIAL_BACKOFF_MS = 100;

/** Longest pause between two connection attempts. */
export const MAX_BACKOFF_MS = 2_000;

/** How long the relay waits for the close handshake after the verdict. */
const CLOSE_HANDSHAKE_TIMEOUT_MS = 2_000;

/**
 * The pause before reconnecting after `failures` failed connections in a row:
 * exponential, capped, with jitter over its upper half so that many relays
 * cut off at once do not come back at once.
 */
export function backoffMs(failures: number, random: () => number): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, INITIAL_BACKOFF_MS * 2 ** failures);
  return ceiling / 2 + random() * (ceiling / 2);
}

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
  /** Time and chance; the real ones unless a test plays them. */
  clock?: Clock;
  /** How connections are opened; Deno's WebSocket unless a test plays the receiver. */
  openSocket?: SocketOpener;
  /** The fetch of the build's source, when the relay was told to fetch one. */
  source?: SourceFetch;
}

/** The relay's side of the conversation with one receiver. */
export class PhoneLine {
  #options: PhoneLineOptions;
  #clock: Clock;
  /** The connection open now, if any. */
  #current: ConnectionAttempt | undefined;
  /** The connection the receiver welcomed, while it lasts: frames go out on it. */
  #live: ConnectionAttempt | undefined;
  /** Connections opened so far; the next hello carries one more (the fencing token). */
  #connections = 0;
  #finished: FinishedMessage | undefined;
  #verdict: VerdictMessage | undefined;
  #failure: string | undefined;
  #settle!: () => void;
  #wakeRetry: (() => void) | undefined;
  #resentBytes = 0;
  #reconnects = 0;
  #welcomedBefore = false;
  #closeTimer: ClockHandle | undefined;
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
    this.#clock = options.clock ?? systemClock;
    this.settled = new Promise((resolve) => {
      this.#settle = () => {
        this.#clock.cancel(this.#closeTimer);
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
    this.#latestDeadlineMs = Math.min(this.#latestDeadlineMs, this.#clock.now() + ms);
  }

  /** Starts connecting in the background. */
  start(): void {
    this.#run().catch((error) => this.#giveUp(`Internal error: ${errorMessage(error)}`));
  }

  /** Sends FINISHED (now, or once connected) and resolves with the verdict, or undefined on failure. */
  async finish(message: FinishedMessage): Promise<VerdictMessage | undefined> {
    this.#finished = message;
    this.#sendFinished();
    await this.settled;
    return this.#verdict;
  }

  #over(): boolean {
    return this.#failure !== undefined || this.#verdict !== undefined;
  }

  async #run(): Promise<void> {
    const clock = this.#clock;
    let deadline = clock.now() + this.#options.connectTimeoutMs;
    let everConnected = false;
    let failures = 0;
    let lastReason = "no attempt was made";
    while (!this.#over()) {
      const result = await this.#connect();
      if (this.#verdict !== undefined) {
        this.#settle();
        return;
      }
      if (this.#failure !== undefined) return;
      lastReason = result.reason;
      if (result.final) {
        this.#giveUp(result.reason);
        if (result.receiverGone) this.#receiverGone(result.reason);
        return;
      }
      if (!everConnected && failures === 0 && !result.established) {
        this.#options.log(
          `Cannot reach the receiver yet (${result.reason}); retrying for up to ` +
            `${formatDuration(Math.max(0, deadline - clock.now()))}.`,
        );
      }
      if (result.established) {
        everConnected = true;
        failures = 0;
        deadline = clock.now() + this.#options.reconnectGraceMs;
        this.#options.log(
          `Lost the connection to the receiver (${result.reason}); reconnecting for up to ` +
            `${formatDuration(this.#options.reconnectGraceMs)}.`,
        );
      }
      const now = clock.now();
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
      await this.#pause(Math.min(backoffMs(failures++, () => clock.random()), deadline - now));
    }
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.#clock.cancel(timer);
        this.#wakeRetry = undefined;
        resolve();
      };
      const timer = this.#clock.after(ms, done);
      this.#wakeRetry = done;
    });
  }

  /** Opens one connection and resolves with how it ended. */
  async #connect(): Promise<AttemptResult> {
    const hello: HelloMessage = {
      type: "hello",
      versions: [PROTOCOL_VERSION],
      relay: this.#options.relayId,
      attempt: ++this.#connections,
      window: this.#options.outbox.windowBytes,
    };
    const attempt: ConnectionAttempt = new ConnectionAttempt({
      url: this.#options.url,
      token: this.#options.token,
      pingIntervalMs: this.#options.pingIntervalMs,
      clock: this.#clock,
      openSocket: this.#options.openSocket ?? openWebSocket,
      hello,
      onControl: (message) => this.#onControl(message, attempt),
      onBinary: (frame) => {
        const source = this.#options.source;
        if (source === undefined || this.#live !== attempt) {
          throw new ProtocolError("The receiver sent a binary frame nobody asked for.");
        }
        source.accept(decodeSourceFrame(frame));
      },
      log: this.#options.log,
    });
    this.#current = attempt;
    try {
      return await attempt.result;
    } finally {
      this.#current = undefined;
      if (this.#live === attempt) this.#live = undefined;
      this.#options.source?.pause();
    }
  }

  /** Handles one control message on `attempt`; returns true when it established the connection. */
  #onControl(message: ReceiverMessage, attempt: ConnectionAttempt): boolean {
    switch (message.type) {
      case "welcome": {
        if (this.#live === attempt) throw new ProtocolError("Welcome sent twice.");
        if (message.version !== PROTOCOL_VERSION) {
          throw new ProtocolError(
            `The receiver answered with protocol v${message.version}; this relay speaks ` +
              `v${PROTOCOL_VERSION}.`,
            CloseCode.versionMismatch,
          );
        }
        const resent = this.#options.outbox.resume(message.acked);
        if (this.#welcomedBefore) {
          this.#reconnects++;
          this.#resentBytes += resent;
        }
        this.#welcomedBefore = true;
        this.#live = attempt;
        this.#options.source?.begin(
          message.source,
          (offset, length) => attempt.send({ type: "fetch", offset, length }),
        );
        this.#sendFinished();
        return true;
      }
      case "ack":
        if (this.#live !== attempt) throw new ProtocolError("Acknowledgement before welcome.");
        this.#options.outbox.acknowledge(message.acked);
        return false;
      case "verdict":
        if (this.#finished === undefined) throw new ProtocolError("Verdict before FINISHED.");
        this.#verdict = message;
        attempt.close(CloseCode.normal, "Done.");
        // Settle once the close handshake is done, so the receiver sees a clean 1000 and
        // knows the verdict arrived; but never wait long for it.
        this.#closeTimer = this.#clock.after(CLOSE_HANDSHAKE_TIMEOUT_MS, () => this.#settle());
        return false;
      case "ping":
        attempt.send({ type: "pong" });
        return false;
      case "pong":
        return false;
    }
  }

  #sendFrames(): void {
    const live = this.#live;
    if (live === undefined) return;
    for (const frame of this.#options.outbox.takeUnsent()) live.send(frame.bytes);
  }

  #sendFinished(): void {
    this.#sendFrames();
    if (this.#finished !== undefined) this.#live?.send(this.#finished);
  }

  #giveUp(reason: string): void {
    if (this.#over()) return;
    this.#failure = reason;
    this.#options.source?.fail(`Could not phone home to fetch the source: ${reason}.`);
    this.#options.outbox.abandon();
    this.#current?.close(CloseCode.normal, "Giving up.");
    this.#wakeRetry?.();
    this.#settle();
  }
}
