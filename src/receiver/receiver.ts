/**
 * The builder-side receiver: a WebSocket server for exactly one build, which
 * writes the build's output to its own stdout and stderr, acknowledges what it
 * wrote, checks FINISHED, and settles on the exit status to report.
 *
 * @module
 */

import { ExitCode } from "../exit_codes.ts";
import { formatBytes, formatDuration } from "../format.ts";
import {
  CloseCode,
  decodeDataFrame,
  encodeControl,
  type ExitStatus,
  type FinishedMessage,
  MAX_WINDOW_BYTES,
  parseRelayMessage,
  PING_TIMEOUT_INTERVALS,
  PROTOCOL_VERSION,
  ProtocolError,
  type ReceiverMessage,
  STREAM_PATH,
  type VerdictMessage,
  versionMismatchMessage,
} from "../protocol.ts";
import { authorizationMatches } from "./auth.ts";
import { BuildStream } from "./build_stream.ts";
import { type ByteSink, OrderedWriter } from "../io.ts";
import { settlesWithin, type Timer } from "../timing.ts";

/** How long an upgraded connection may take to send its hello. */
const HELLO_TIMEOUT_MS = 10_000;

/** Upgraded connections that have not said hello yet, at most. */
const MAX_PENDING_HANDSHAKES = 16;

/** How long the receiver waits for the relay to close after the verdict. */
const VERDICT_LINGER_MS = 5_000;

/** How long queued output may take to drain when the receiver is stopped from outside. */
const ABORT_DRAIN_TIMEOUT_MS = 2_000;

/** How long shutting the server down may take before the receiver ends anyway. */
const SHUTDOWN_TIMEOUT_MS = 2_000;

/** Refusals logged per {@linkcode REFUSAL_LOG_WINDOW_MS}; the rest are counted, so a flood cannot drown the build's output. */
const REFUSALS_LOGGED_PER_WINDOW = 5;

/** The window over which refusals are rate-limited. */
const REFUSAL_LOG_WINDOW_MS = 10_000;

/** Settings of a receiver. */
export interface ReceiverOptions {
  /** Address to listen on; port 0 lets the OS pick one. */
  hostname: string;
  /** Port to listen on; 0 lets the OS pick one. */
  port: number;
  /** Host name or IP put in the URL a relay must use; derived from `hostname` when absent. */
  advertiseHost?: string;
  /** The per-build secret a relay must present. */
  token: string;
  /** How long to wait for the relay's first connection. */
  connectTimeoutMs: number;
  /** How long to wait for a relay that disconnected without FINISHED. */
  reconnectGraceMs: number;
  /** How often to ping the relay; silence for four intervals counts as a drop. */
  pingIntervalMs: number;
  /** Print `...` when nothing was printed for this long; 0 turns it off. */
  idleIntervalMs: number;
  /** Send the build's stderr to stdout too. */
  merge: boolean;
  /** Report connections, not only failures. */
  verbose: boolean;
  /** Where the build's stdout goes. */
  stdout: ByteSink;
  /** Where the build's stderr and phonehome's own messages go. */
  stderr: ByteSink;
}

/** How a receiver ended. */
export interface ReceiverOutcome {
  /** The status to exit with: the build's own, or one of {@linkcode ExitCode}. */
  exitCode: number;
  /** The build's exit status, when FINISHED arrived. */
  exit?: ExitStatus;
  /** Whether the relay ever connected. */
  connected: boolean;
}

interface Connection {
  socket: WebSocket;
  remote: string;
  greeted: boolean;
  helloTimer: Timer | undefined;
  /** Set when this side closed the connection, with the reason it gave. */
  closedBecause?: string;
  /** When anything last arrived on this connection. */
  lastHeardMs: number;
  /** Set once the connection has been handled as lost. */
  lost?: boolean;
}

function urlHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** Whether `host` means every address (0.0.0.0, ::), which no peer can dial. */
export function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "[::]" || host === "";
}

/** A receiver for one build; create it with {@linkcode Receiver.start}. */
export class Receiver {
  #options: ReceiverOptions;
  #server: Deno.HttpServer<Deno.NetAddr>;
  #url: string;
  #stdout: OrderedWriter;
  #stderr: OrderedWriter;
  #build: BuildStream;
  #current: Connection | undefined;
  #pending = new Set<Connection>();
  #relayId: string | undefined;
  #attempt = 0;
  #windowBytes = 0;
  #finished: FinishedMessage | undefined;
  #verdict: VerdictMessage | undefined;
  #outcomeCode: number | undefined;
  #done = false;
  /** Set once nobody reads the output: a write to a full pipe nobody drains would never return. */
  #outputGone = false;
  #connected = false;
  #lastActivityMs = performance.now();
  #connectTimer: Timer | undefined;
  #graceTimer: Timer | undefined;
  #lingerTimer: Timer | undefined;
  #idleTimer: Timer | undefined;
  #ackTimer: Timer | undefined;
  #pingTimer: Timer | undefined;
  #refusalWindowStartMs = 0;
  #refusalsInWindow = 0;
  #resolve!: (outcome: ReceiverOutcome) => void;
  /** Settles once the receiver has finished, with the status to exit with. */
  readonly outcome: Promise<ReceiverOutcome>;

  private constructor(options: ReceiverOptions) {
    this.#options = options;
    this.outcome = new Promise((resolve) => (this.#resolve = resolve));
    this.#stdout = new OrderedWriter(options.stdout);
    this.#stderr = new OrderedWriter(options.stderr);
    this.#build = new BuildStream({
      stdout: this.#stdout,
      stderr: options.merge ? this.#stdout : this.#stderr,
      onWritten: () => this.#scheduleAck(),
      onWriteError: (error) => this.#outputFailed(error),
    });
    this.#server = Deno.serve({
      hostname: options.hostname,
      port: options.port,
      onListen: () => {},
      onError: (error) => {
        this.message(`Error while serving a connection: ${errorText(error)}`);
        return new Response("Internal error\n", { status: 500 });
      },
    }, (request, info) => this.#handle(request, info));
    const address = this.#server.addr;
    const host = options.advertiseHost ??
      (isWildcard(options.hostname) ? "127.0.0.1" : options.hostname);
    this.#url = `ws://${urlHost(host)}:${address.port}${STREAM_PATH}`;
  }

  /** Starts listening; the returned receiver is ready for its relay. */
  static start(options: ReceiverOptions): Receiver {
    const receiver = new Receiver(options);
    receiver.#arm();
    return receiver;
  }

  /** The URL a relay must connect to. */
  get url(): string {
    return this.#url;
  }

  /** The port the OS gave the listener. */
  get port(): number {
    return this.#server.addr.port;
  }

  /** Writes one of phonehome's own messages to stderr, whole, between build chunks. */
  message(text: string): Promise<void> {
    return this.writeLine(`phonehome: ${text}`);
  }

  /** Writes a line that already says where it comes from (the local relay's) to stderr, whole. */
  writeLine(line: string): Promise<void> {
    if (this.#outputGone) return Promise.resolve();
    this.#lastActivityMs = performance.now();
    return this.#stderr.write(new TextEncoder().encode(`${line}\n`)).catch(() => {});
  }

  /** Whether the receiver has settled on its outcome. */
  get done(): boolean {
    return this.#done;
  }

  /** Whether the verdict on FINISHED has been sent, so the outcome is only a close away. */
  get answered(): boolean {
    return this.#verdict !== undefined;
  }

  /** Whether a relay has ever completed the handshake. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Writes bytes that are not part of the stream (a pod log shown as a fallback) to stdout, in order. */
  writeStdout(bytes: Uint8Array): Promise<void> {
    this.#lastActivityMs = performance.now();
    return this.#stdout.write(bytes);
  }

  /**
   * Ends the receiver from outside (the launcher saw its relay die, or a signal
   * came). Output still queued gets a short while to drain, not forever, since
   * whoever reads it may be the reason for stopping.
   */
  abort(exitCode: number, message: string): void {
    this.#finish(exitCode, message, ABORT_DRAIN_TIMEOUT_MS);
  }

  #arm(): void {
    this.#connectTimer = setTimeout(() => {
      this.#finish(
        ExitCode.neverConnected,
        `No relay phoned home within ${formatDuration(this.#options.connectTimeoutMs)}; ` +
          `check that the build started and can reach ${this.#url}.`,
      );
    }, this.#options.connectTimeoutMs);
    this.#pingTimer = setInterval(() => this.#checkLiveness(), this.#options.pingIntervalMs);
    const interval = this.#options.idleIntervalMs;
    if (interval > 0) {
      this.#idleTimer = setInterval(() => {
        if (performance.now() - this.#lastActivityMs >= interval * 0.9) {
          this.#lastActivityMs = performance.now();
          this.#stderr.write(new TextEncoder().encode("...\n")).catch(() => {});
        }
      }, interval);
    }
  }

  /** Pings the current relay, and handles it as lost when it has been silent too long. */
  #checkLiveness(): void {
    const connection = this.#current;
    if (connection === undefined) return;
    const silentMs = performance.now() - connection.lastHeardMs;
    if (silentMs > this.#options.pingIntervalMs * PING_TIMEOUT_INTERVALS) {
      const reason = `no answer to pings for ${formatDuration(Math.round(silentMs))}`;
      this.#closeConnection(connection, CloseCode.peerUnresponsive, `${reason}.`);
      // A half-open connection may never report its close: do not wait for it.
      this.#lost(connection, reason);
    } else {
      this.#send(connection, { type: "ping" });
    }
  }

  #refuse(remote: string, status: number, reason: string): Response {
    const now = performance.now();
    if (now - this.#refusalWindowStartMs > REFUSAL_LOG_WINDOW_MS) {
      const unlogged = this.#refusalsInWindow - REFUSALS_LOGGED_PER_WINDOW;
      if (unlogged > 0) this.message(`Refused ${unlogged} more connections without logging them.`);
      this.#refusalWindowStartMs = now;
      this.#refusalsInWindow = 0;
    }
    if (++this.#refusalsInWindow <= REFUSALS_LOGGED_PER_WINDOW) {
      this.message(`Refused a connection from ${remote}: ${reason}`);
    }
    return new Response(`${reason}\n`, {
      status,
      headers: status === 401 ? { "www-authenticate": 'Bearer realm="phonehome"' } : {},
    });
  }

  #handle(request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Response {
    const remote = `${urlHost(info.remoteAddr.hostname)}:${info.remoteAddr.port}`;
    const path = new URL(request.url).pathname;
    if (path !== STREAM_PATH) {
      return this.#refuse(remote, 404, `Unknown path ${JSON.stringify(path.slice(0, 100))}.`);
    }
    if (!authorizationMatches(request.headers.get("authorization"), this.#options.token)) {
      return this.#refuse(remote, 401, "Missing or wrong secret.");
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return this.#refuse(remote, 426, "Not a WebSocket upgrade.");
    }
    if (this.#done) {
      return this.#refuse(remote, 410, "This build's stream is already over.");
    }
    if (this.#pending.size >= MAX_PENDING_HANDSHAKES) {
      return this.#refuse(remote, 503, "Too many connections are still handshaking.");
    }
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.binaryType = "arraybuffer";
    const connection: Connection = {
      socket,
      remote,
      greeted: false,
      helloTimer: undefined,
      lastHeardMs: performance.now(),
    };
    this.#pending.add(connection);
    connection.helloTimer = setTimeout(() => {
      this.#closeConnection(
        connection,
        CloseCode.protocolViolation,
        `No hello within ${formatDuration(HELLO_TIMEOUT_MS)}.`,
      );
    }, HELLO_TIMEOUT_MS);
    socket.onmessage = (event) => this.#onMessage(connection, event);
    socket.onclose = (event) => this.#onClose(connection, event);
    socket.onerror = () => {};
    return response;
  }

  #closeConnection(connection: Connection, code: number, reason: string): void {
    if (connection.closedBecause !== undefined) return;
    this.message(`Closed the connection from ${connection.remote}: ${reason}`);
    this.#pending.delete(connection);
    clearTimeout(connection.helloTimer);
    connection.closedBecause = reason;
    if (connection.socket.readyState <= WebSocket.OPEN) {
      // A close reason is limited to 123 bytes by RFC 6455.
      connection.socket.close(code, truncateReason(reason));
    }
  }

  #onMessage(connection: Connection, event: MessageEvent): void {
    if (this.#done || connection.closedBecause !== undefined) return;
    if (connection.greeted && connection !== this.#current) return;
    connection.lastHeardMs = performance.now();
    try {
      if (typeof event.data === "string") {
        this.#onControl(connection, event.data);
      } else if (event.data instanceof ArrayBuffer) {
        if (!connection.greeted) throw new ProtocolError("DATA arrived before hello.");
        if (this.#finished !== undefined) throw new ProtocolError("DATA arrived after FINISHED.");
        this.#lastActivityMs = performance.now();
        this.#build.accept(decodeDataFrame(new Uint8Array(event.data)), this.#windowBytes);
      } else {
        throw new ProtocolError("Unsupported message type.");
      }
    } catch (error) {
      // Whatever a peer sends, the receiver closes that one connection and carries on.
      const violation = error instanceof ProtocolError
        ? error
        : new ProtocolError(`Cannot handle the message: ${errorText(error)}`);
      this.#closeConnection(connection, violation.closeCode, violation.message);
    }
  }

  #onControl(connection: Connection, text: string): void {
    const message = parseRelayMessage(text);
    switch (message.type) {
      case "hello": {
        if (connection.greeted) throw new ProtocolError("Hello sent twice.");
        if (!message.versions.includes(PROTOCOL_VERSION)) {
          throw new ProtocolError(
            versionMismatchMessage(message.versions),
            CloseCode.versionMismatch,
          );
        }
        if (message.window < 1 || message.window > MAX_WINDOW_BYTES) {
          throw new ProtocolError(
            `Window of ${message.window} bytes is outside 1-${MAX_WINDOW_BYTES}.`,
          );
        }
        if (this.#relayId !== undefined && message.relay !== this.#relayId) {
          throw new ProtocolError(
            "Another relay already owns this build's stream.",
            CloseCode.superseded,
          );
        }
        if (message.attempt <= this.#attempt) {
          // A connection that lost the race to a newer one of the same relay must not take over.
          throw new ProtocolError(
            `Connection attempt ${message.attempt} is stale; attempt ${this.#attempt} is current.`,
            CloseCode.superseded,
          );
        }
        this.#attempt = message.attempt;
        this.#greet(connection, message.relay, message.window);
        return;
      }
      case "finished":
        if (!connection.greeted) throw new ProtocolError("FINISHED arrived before hello.");
        if (this.#finished !== undefined) {
          // A relay that reconnected before it had the verdict sends FINISHED again.
          if (this.#verdict !== undefined) this.#send(connection, this.#verdict);
          return;
        }
        this.#lastActivityMs = performance.now();
        this.#finished = message;
        this.#verifyAndAnswer(message);
        return;
      case "ping":
        this.#send(connection, { type: "pong" });
        return;
      case "pong":
        return;
    }
  }

  #greet(connection: Connection, relayId: string, windowBytes: number): void {
    const previous = this.#current;
    this.#pending.delete(connection);
    clearTimeout(connection.helloTimer);
    connection.greeted = true;
    this.#relayId = relayId;
    this.#windowBytes = windowBytes;
    this.#current = connection;
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#graceTimer);
    if (previous !== undefined && previous !== connection) {
      this.#closeConnection(previous, CloseCode.superseded, "A newer connection took over.");
    }
    if (this.#options.verbose || this.#connected) {
      const verb = this.#connected ? "reconnected" : "connected";
      const { stdout, stderr } = this.#build.written();
      this.message(
        `Relay ${verb} from ${connection.remote}` +
          (this.#connected ? `; resuming at ${stdout} bytes of stdout, ${stderr} of stderr.` : "."),
      );
    }
    this.#connected = true;
    this.#build.takeAcknowledgement();
    this.#send(connection, {
      type: "welcome",
      version: PROTOCOL_VERSION,
      acked: this.#build.written(),
    });
    if (this.#verdict !== undefined) this.#send(connection, this.#verdict);
  }

  async #verifyAndAnswer(finished: FinishedMessage): Promise<void> {
    const verification = await this.#build.verify(finished);
    if (this.#done) return;
    this.#flushAck();
    if (finished.note !== undefined) await this.message(finished.note);
    if (verification.ok) {
      this.#verdict = { type: "verdict", ok: true };
      this.#outcomeCode = finished.exit.code;
    } else {
      this.#verdict = { type: "verdict", ok: false, message: verification.message };
      this.#outcomeCode = ExitCode.incompleteStream;
      await this.message(`${verification.message} The build's result cannot be trusted.`);
    }
    if (this.#current !== undefined) this.#send(this.#current, this.#verdict);
    // The relay closes once it has the verdict; wait for that, but not forever.
    this.#lingerTimer = setTimeout(() => this.#finishWithVerdict(), VERDICT_LINGER_MS);
  }

  #finishWithVerdict(): void {
    if (this.#outcomeCode !== undefined) this.#finish(this.#outcomeCode);
  }

  #onClose(connection: Connection, event: CloseEvent): void {
    this.#pending.delete(connection);
    clearTimeout(connection.helloTimer);
    const why = connection.closedBecause ??
      (event.reason ? `code ${event.code}, ${event.reason}` : `code ${event.code}`);
    this.#lost(connection, why, event.code === CloseCode.normal);
  }

  /**
   * Handles the end of a connection, once, whether it closed or was given up
   * on. `normal` is true when the relay closed it after taking the verdict.
   */
  #lost(connection: Connection, why: string, normal = false): void {
    if (connection.lost) return;
    connection.lost = true;
    if (this.#done || connection !== this.#current) return;
    this.#current = undefined;
    if (this.#verdict !== undefined) {
      if (normal) {
        this.#finishWithVerdict();
      } else {
        // The verdict may have been lost with the connection: give the relay time to ask again.
        clearTimeout(this.#lingerTimer);
        this.#lingerTimer = setTimeout(() => this.#finishWithVerdict(), VERDICT_LINGER_MS);
      }
      return;
    }
    const { stdout, stderr } = this.#build.written();
    this.message(
      `Lost the connection to the relay (${why}) after ${formatBytes(stdout)} of stdout and ` +
        `${formatBytes(stderr)} of stderr; waiting up to ` +
        `${formatDuration(this.#options.reconnectGraceMs)} for it to return.`,
    );
    this.#graceTimer = setTimeout(() => {
      const written = this.#build.written();
      this.#finish(
        ExitCode.lostRelay,
        `The relay did not return within ${formatDuration(this.#options.reconnectGraceMs)}; ` +
          `${written.stdout} bytes of stdout and ${written.stderr} bytes of stderr arrived, ` +
          `and the build's exit status never did.`,
      );
    }, this.#options.reconnectGraceMs);
  }

  #send(connection: Connection, message: ReceiverMessage): void {
    if (connection.socket.readyState === WebSocket.OPEN) {
      connection.socket.send(encodeControl(message));
    }
  }

  #scheduleAck(): void {
    this.#lastActivityMs = performance.now();
    if (this.#ackTimer !== undefined) return;
    // A zero timer lets writes that complete together share one acknowledgement.
    this.#ackTimer = setTimeout(() => this.#flushAck(), 0);
  }

  #flushAck(): void {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    if (this.#current === undefined) return;
    const offsets = this.#build.takeAcknowledgement();
    if (offsets !== undefined) this.#send(this.#current, { type: "ack", ...offsets });
  }

  #outputFailed(error: Error): void {
    if (this.#done) return;
    if (this.#current !== undefined) {
      this.#closeConnection(this.#current, CloseCode.receiverGone, "The receiver's output closed.");
    }
    this.#finish(
      ExitCode.outputClosed,
      `Cannot write the build's output (${errorText(error)}); ` +
        `whoever reads phonehome's output went away.`,
    );
  }

  #finish(exitCode: number, message?: string, drainTimeoutMs = Infinity): void {
    if (this.#done) return;
    this.#done = true;
    for (const timer of [this.#connectTimer, this.#graceTimer, this.#lingerTimer, this.#ackTimer]) {
      clearTimeout(timer);
    }
    clearInterval(this.#idleTimer);
    clearInterval(this.#pingTimer);
    const reported = message === undefined ? Promise.resolve() : this.message(message);
    this.#outputGone = exitCode === ExitCode.outputClosed;
    const closed: Promise<unknown>[] = [];
    for (const connection of [...this.#pending, ...(this.#current ? [this.#current] : [])]) {
      // A connection already closing (say, because the output closed) is waited for too.
      if (connection.socket.readyState <= WebSocket.CLOSING) {
        closed.push(new Promise((resolve) => connection.socket.addEventListener("close", resolve)));
      }
      if (connection.socket.readyState <= WebSocket.OPEN) {
        connection.socket.close(CloseCode.receiverGone, "The receiver is shutting down.");
      }
      clearTimeout(connection.helloTimer);
    }
    const outcome: ReceiverOutcome = {
      exitCode,
      exit: this.#verdict?.ok ? this.#finished?.exit : undefined,
      connected: this.#connected,
    };
    const drained = Promise.all([reported, this.#stdout.drained(), this.#stderr.drained()]);
    Promise.all([
      // Without a reader, queued writes may never complete: the message is only attempted.
      ...(this.#outputGone ? [] : [
        Number.isFinite(drainTimeoutMs) ? settlesWithin(drained, drainTimeoutMs) : drained,
      ]),
      // Shutting down before the close handshake ends would turn 4004 into 1001, after which
      // a relay keeps reconnecting; a client that never finished its upgrade must not keep
      // the receiver alive either.
      settlesWithin(Promise.all(closed), SHUTDOWN_TIMEOUT_MS).then(() =>
        settlesWithin(this.#server.shutdown(), SHUTDOWN_TIMEOUT_MS)
      ),
    ]).finally(() => this.#resolve(outcome));
  }
}

function truncateReason(reason: string): string {
  const bytes = new TextEncoder().encode(reason);
  if (bytes.byteLength <= 123) return reason;
  return new TextDecoder().decode(bytes.subarray(0, 120)).replace(/\uFFFD$/, "") + "...";
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
