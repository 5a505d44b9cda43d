/**
 * One build's stream on the receiver, as a state machine: waiting for the
 * relay, streaming (with the relay connected or away), verifying FINISHED,
 * answered (the verdict sent), and over. Connections come and go; the
 * session decides which one owns the stream, what it may send, and when the
 * build's outcome is settled.
 *
 * @module
 */

import { errorMessage } from "../errors.ts";
import { ExitCode } from "../exit_codes.ts";
import { formatBytes, formatDuration } from "../format.ts";
import {
  CloseCode,
  decodeDataFrame,
  type ExitStatus,
  type FinishedMessage,
  MAX_PENDING_HANDSHAKES,
  parseRelayMessage,
  PING_TIMEOUT_INTERVALS,
  PROTOCOL_VERSION,
  ProtocolError,
  type VerdictMessage,
  type WelcomeMessage,
} from "../protocol/mod.ts";
import type { Timer } from "../timing.ts";
import type { Refusal, Upgrade } from "./admission.ts";
import { BuildStream } from "./build_stream.ts";
import type { BuilderConsole } from "./console.ts";
import { dataFramePool, describeClose, RelayConnection } from "./relay_connection.ts";
import type { SourceArchive } from "./source_archive.ts";
import { StreamOwner } from "./stream_owner.ts";
import type { SocketClose } from "./websocket/server_socket.ts";

/** How long the receiver waits for the relay to close after the verdict. */
export const VERDICT_LINGER_MS = 5_000;

/** Where the stream stands. */
export type Phase = "waiting" | "streaming" | "verifying" | "answered" | "over";

/** How a session ended. */
export interface SessionOutcome {
  /** The status to exit with: the build's own, or one of {@linkcode ExitCode}. */
  exitCode: number;
  /** The build's exit status, when FINISHED arrived and checked out. */
  exit?: ExitStatus;
  /** Whether a relay ever completed the handshake. */
  connected: boolean;
  /** A sentence for the user, when the session ended other than by a good verdict. */
  message?: string;
}

/** Settings of a {@linkcode Session}. */
export interface SessionOptions {
  console: BuilderConsole;
  /** The URL relays dial, for messages. */
  url: string;
  connectTimeoutMs: number;
  reconnectGraceMs: number;
  pingIntervalMs: number;
  /** Report connections, not only failures. */
  verbose: boolean;
  /** The build's source, offered to the relay in the welcome; none when undefined. */
  source?: SourceArchive;
  /** Tells the user, rate-limited, about a connection closed for breaking the rules. */
  note: (remote: string, reason: string) => void;
  /** Called once, when the outcome is settled; the session's connections are closing. */
  onOver: (outcome: SessionOutcome, closed: Promise<void>) => void;
}

/** One build's stream; see the module comment. */
export class Session {
  #options: SessionOptions;
  #build: BuildStream;
  #phase: Phase = "waiting";
  #current: RelayConnection | undefined;
  #pending = new Set<RelayConnection>();
  #connections = new Set<RelayConnection>();
  #owner = new StreamOwner();
  #payloads = dataFramePool();
  #windowBytes = 0;
  #finished: FinishedMessage | undefined;
  #verdict: VerdictMessage | undefined;
  #verdictCode: number | undefined;
  #connectTimer: Timer;
  #graceTimer: Timer | undefined;
  #lingerTimer: Timer | undefined;
  /** Whether an acknowledgement is queued to go out at the end of this turn. */
  #ackDue = false;
  #pinger: ReturnType<typeof setInterval>;

  /** Starts waiting for a relay. */
  constructor(options: SessionOptions) {
    this.#options = options;
    this.#build = new BuildStream({
      console: options.console,
      release: (payload) => this.#payloads.give(payload),
      onWritten: () => this.#scheduleAck(),
      onWriteError: (error) => this.#outputFailed(error),
    });
    this.#connectTimer = setTimeout(() => {
      this.end(
        ExitCode.neverConnected,
        `No relay phoned home within ${formatDuration(options.connectTimeoutMs)}; ` +
          `check that the build started and can reach ${options.url}.`,
      );
    }, options.connectTimeoutMs);
    this.#pinger = setInterval(() => this.#checkLiveness(), options.pingIntervalMs);
  }

  /** Where the stream stands. */
  get phase(): Phase {
    return this.#phase;
  }

  /** Whether a relay has ever completed the handshake. */
  get connected(): boolean {
    return this.#owner.known;
  }

  /** Whether FINISHED has arrived, so that everything the build wrote is here or being written. */
  get finishedArrived(): boolean {
    return this.#finished !== undefined;
  }

  /** Says whether an authenticated upgrade may go ahead now (admission asks before 101). */
  check(): Refusal | undefined {
    if (this.#phase === "over") {
      return { status: 410, reason: "This build's stream is already over." };
    }
    if (this.#pending.size >= MAX_PENDING_HANDSHAKES) {
      return {
        status: 503,
        reason: `${MAX_PENDING_HANDSHAKES} upgraded connections have not said hello yet.`,
      };
    }
    return undefined;
  }

  /** Takes over an upgraded connection; it must say hello within the hello timeout. */
  accept(upgrade: Upgrade): void {
    const connection = new RelayConnection(upgrade, {
      onMessage: (connection, message) => this.#onMessage(connection, message),
      onViolation: (connection, reason) =>
        this.#closeConnection(connection, CloseCode.protocolViolation, reason),
      onClose: (connection, close) => this.#onClose(connection, close),
    }, this.#payloads);
    this.#connections.add(connection);
    this.#pending.add(connection);
  }

  /** Sends the latest acknowledgement now, if one is due. */
  #flushAck(): void {
    this.#ackDue = false;
    if (this.#current === undefined) return;
    const offsets = this.#build.takeAcknowledgement();
    if (offsets !== undefined) this.#current.send({ type: "ack", acked: offsets });
  }

  /**
   * Settles the outcome (once) and closes every connection; `message`, when
   * given, is for the user.
   */
  end(exitCode: number, message?: string): void {
    if (this.#phase === "over") return;
    this.#phase = "over";
    this.#ackDue = false;
    for (const timer of [this.#connectTimer, this.#graceTimer, this.#lingerTimer]) {
      clearTimeout(timer);
    }
    clearInterval(this.#pinger);
    for (const connection of this.#connections) {
      connection.shutDown(CloseCode.receiverGone, "The receiver is shutting down.");
    }
    const closed = Promise.all([...this.#connections].map((c) => c.closed)).then(() => {});
    this.#options.onOver({
      exitCode,
      exit: this.#verdict?.ok ? this.#finished?.exit : undefined,
      connected: this.connected,
      message,
    }, closed);
  }

  #message(text: string): void {
    this.#options.console.message(text);
  }

  /** Pings the current relay, and handles it as lost when it has been silent too long. */
  #checkLiveness(): void {
    const connection = this.#current;
    if (connection === undefined) return;
    const silentMs = performance.now() - connection.lastHeardMs;
    if (silentMs > this.#options.pingIntervalMs * PING_TIMEOUT_INTERVALS) {
      const reason = `no answer to pings for ${formatDuration(silentMs)}`;
      this.#closeConnection(connection, CloseCode.peerUnresponsive, `${reason}.`);
      // A half-open connection may never report its close: do not wait for it.
      this.#lost(connection, reason);
    } else {
      connection.send({ type: "ping" });
    }
  }

  #closeConnection(connection: RelayConnection, code: number, reason: string): void {
    if (!connection.close(code, reason)) return;
    this.#pending.delete(connection);
    if (connection !== this.#current) {
      this.#options.note(connection.remote, reason);
      return;
    }
    this.#message(`Closed the connection from ${connection.remote}: ${reason}`);
    if (code === CloseCode.protocolViolation && this.#phase !== "answered") {
      // A relay does not come back after 4002, and a stream whose owner broke the rules
      // cannot be trusted: waiting for a return would only let it try again.
      this.end(
        ExitCode.incompleteStream,
        "The relay broke the protocol; the build's result cannot be trusted.",
      );
    }
  }

  #onMessage(connection: RelayConnection, data: string | Uint8Array): void {
    if (this.#phase === "over" || connection.closedBecause !== undefined) return;
    if (connection.greeted && connection !== this.#current) return;
    try {
      if (typeof data === "string") {
        this.#onControl(connection, data);
      } else {
        if (!connection.greeted) throw new ProtocolError("DATA arrived before hello.");
        this.#build.accept(decodeDataFrame(data), this.#windowBytes);
      }
    } catch (error) {
      // Whatever a peer sends, the receiver closes that one connection and carries on.
      const violation = error instanceof ProtocolError
        ? error
        : new ProtocolError(`Cannot handle the message: ${errorMessage(error)}`);
      this.#closeConnection(connection, violation.closeCode, violation.message);
    }
  }

  #onControl(connection: RelayConnection, text: string): void {
    const message = parseRelayMessage(text);
    if (!connection.greeted && message.type !== "hello") {
      const what = message.type === "finished" ? "FINISHED" : `A ${message.type} message`;
      throw new ProtocolError(`${what} arrived before hello.`);
    }
    switch (message.type) {
      case "hello":
        if (connection.greeted) throw new ProtocolError("Hello sent twice.");
        this.#owner.admit(message);
        this.#greet(connection, message.window);
        return;
      case "finished":
        if (this.#finished !== undefined) {
          // A relay that reconnected before it had the verdict sends FINISHED again.
          if (this.#verdict !== undefined) connection.send(this.#verdict);
          return;
        }
        this.#finished = message;
        this.#build.seal();
        this.#phase = "verifying";
        this.#verifyAndAnswer(message);
        return;
      case "fetch":
        if (this.#options.source === undefined) {
          throw new ProtocolError("There is no source to fetch.");
        }
        connection.serveFetch({
          source: this.#options.source,
          offset: message.offset,
          length: message.length,
          onError: (error) =>
            this.end(
              ExitCode.sourceFailed,
              `Cannot read the source to send it: ${errorMessage(error)}.`,
            ),
        });
        return;
      case "ping":
        // Replies still queued are a sign of life too: a pong behind them adds nothing, and
        // a peer that pings without reading must not make the queue grow.
        if (connection.unsentBytes === 0) connection.send({ type: "pong" });
        return;
      case "pong":
        return;
    }
  }

  #greet(connection: RelayConnection, windowBytes: number): void {
    const previous = this.#current;
    const reconnected = this.#phase !== "waiting";
    this.#pending.delete(connection);
    connection.greet();
    this.#windowBytes = windowBytes;
    this.#current = connection;
    if (this.#phase === "waiting") this.#phase = "streaming";
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#graceTimer);
    if (previous !== undefined && previous !== connection) {
      this.#closeConnection(previous, CloseCode.superseded, "A newer connection took over.");
    }
    if (this.#options.verbose || reconnected) {
      const { stdout, stderr } = this.#build.written();
      this.#message(
        `Relay ${reconnected ? "reconnected" : "connected"} from ${connection.remote}` +
          (reconnected ? `; resuming at ${stdout} bytes of stdout, ${stderr} of stderr.` : "."),
      );
    }
    this.#build.takeAcknowledgement();
    const welcome: WelcomeMessage = {
      type: "welcome",
      version: PROTOCOL_VERSION,
      acked: this.#build.written(),
    };
    if (this.#options.source !== undefined) welcome.source = this.#options.source.offer;
    connection.send(welcome);
    if (this.#verdict !== undefined) connection.send(this.#verdict);
  }

  async #verifyAndAnswer(finished: FinishedMessage): Promise<void> {
    const verification = await this.#build.verify(finished);
    if (this.#phase === "over") return;
    this.#flushAck();
    if (finished.note !== undefined) this.#message(finished.note);
    if (verification.ok) {
      this.#verdict = { type: "verdict", ok: true };
      this.#verdictCode = finished.exit.code;
    } else {
      this.#verdict = { type: "verdict", ok: false, message: verification.message };
      this.#verdictCode = ExitCode.incompleteStream;
      this.#message(`${verification.message} The build's result cannot be trusted.`);
    }
    this.#phase = "answered";
    this.#current?.send(this.#verdict);
    // The relay closes once it has the verdict; wait for that, but not forever. A relay that
    // lost the verdict reconnects within this time and is sent it again.
    this.#lingerTimer = setTimeout(() => this.#endWithVerdict(), VERDICT_LINGER_MS);
  }

  #endWithVerdict(): void {
    if (this.#verdictCode !== undefined) this.end(this.#verdictCode);
  }

  #onClose(connection: RelayConnection, close: SocketClose): void {
    this.#pending.delete(connection);
    this.#connections.delete(connection);
    if (close.dropped && connection !== this.#current) {
      // A framing error or a peer that would not read its replies: say what happened to it.
      this.#options.note(connection.remote, close.reason);
    }
    const why = connection.closedBecause ?? describeClose(close);
    this.#lost(connection, why, close.code === CloseCode.normal);
  }

  /**
   * Handles the end of the current connection, once, whether it closed or was
   * given up on. `normal` is true when the relay closed it after taking the verdict.
   */
  #lost(connection: RelayConnection, why: string, normal = false): void {
    if (connection.lost) return;
    connection.lost = true;
    if (this.#phase === "over" || connection !== this.#current) return;
    this.#current = undefined;
    if (this.#phase === "answered") {
      // A clean close means the relay has the verdict; otherwise the linger timer gives it
      // the time the protocol promises to come back for it.
      if (normal) this.#endWithVerdict();
      return;
    }
    if (this.#phase === "verifying") {
      // Everything the build wrote is here: the verdict needs no relay, only the writes.
      return;
    }
    const { stdout, stderr } = this.#build.written();
    this.#message(
      `Lost the connection to the relay (${why}) after ${formatBytes(stdout)} of stdout and ` +
        `${formatBytes(stderr)} of stderr; waiting up to ` +
        `${formatDuration(this.#options.reconnectGraceMs)} for it to return.`,
    );
    this.#graceTimer = setTimeout(() => {
      const written = this.#build.written();
      this.end(
        ExitCode.lostRelay,
        `The relay did not return within ${formatDuration(this.#options.reconnectGraceMs)}; ` +
          `${formatBytes(written.stdout)} of stdout and ${formatBytes(written.stderr)} of ` +
          `stderr arrived, and the build's exit status never did.`,
      );
    }, this.#options.reconnectGraceMs);
  }

  #scheduleAck(): void {
    if (this.#ackDue) return;
    this.#ackDue = true;
    // After the other writes that completed in this turn, so that they share one
    // acknowledgement; not on a timer, which Deno fires a millisecond or two late, a delay
    // the relay's window pays on every round trip.
    queueMicrotask(() => {
      if (this.#ackDue) this.#flushAck();
    });
  }

  #outputFailed(error: Error): void {
    if (this.#phase === "over") return;
    if (this.#current !== undefined) {
      this.#closeConnection(this.#current, CloseCode.receiverGone, "The receiver's output closed.");
    }
    this.end(
      ExitCode.outputClosed,
      `Cannot write the build's output (${error.message}); ` +
        `whoever reads phonehome's output went away.`,
    );
  }
}
