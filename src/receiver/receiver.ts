/**
 * The builder-side receiver for exactly one build: its front door
 * (admission), the build's stream (session) and the builder's console, put
 * together, and the narrow interface launchers drive it through.
 *
 * @module
 */

import { ExitCode } from "../exit_codes.ts";
import type { ByteSink } from "../io.ts";
import { type ExitStatus, STREAM_PATH } from "../protocol/mod.ts";
import { settlesWithin } from "../timing.ts";
import { Admission } from "./admission.ts";
import { BuilderConsole } from "./console.ts";
import { Session, type SessionOutcome } from "./session.ts";
import type { SourceArchive } from "./source_archive.ts";

/** How long queued output may take to drain when the receiver is stopped from outside. */
const ABORT_DRAIN_TIMEOUT_MS = 2_000;

/** How long closing the relay's connection may take before the receiver ends anyway. */
const SHUTDOWN_TIMEOUT_MS = 2_000;

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
  /** Serve wss:// with this certificate and key (PEM); ws:// when absent. */
  tls?: { certPem: string; keyPem: string };
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
  /** Whether `stdout` and `stderr` are one open file; messages then start lines of both. */
  sameFile?: boolean;
  /** Report connections, not only failures. */
  verbose: boolean;
  /** Where the build's stdout goes. */
  stdout: ByteSink;
  /** Where the build's stderr and phonehome's own messages go. */
  stderr: ByteSink;
  /** The build's source, for the relay to fetch; none when undefined. */
  source?: SourceArchive;
}

/** How a receiver ended. */
export interface ReceiverOutcome {
  /** The status to exit with: the build's own, or one of {@linkcode ExitCode}. */
  exitCode: number;
  /** The build's exit status, when FINISHED arrived and checked out. */
  exit?: ExitStatus;
  /** Whether the relay ever connected. */
  connected: boolean;
}

/** What a launcher needs of the receiver of the build it launches. */
export interface BuildReceiver {
  /** The URL the build's relay must dial. */
  readonly url: string;
  /** Whether a relay has ever completed the handshake. */
  readonly connected: boolean;
  /** Whether FINISHED has arrived: every byte the build wrote is here or being written. */
  readonly finishedArrived: boolean;
  /** Whether the verdict on FINISHED has been given, so the outcome is only a close away. */
  readonly answered: boolean;
  /** Whether the outcome is settled. */
  readonly done: boolean;
  /** Settles once the receiver has finished, with the status to exit with. */
  readonly outcome: Promise<ReceiverOutcome>;
  /** Writes one of phonehome's own messages on stderr, on a line of its own. */
  message(text: string): Promise<void>;
  /** Writes a line that already says where it comes from (the old builder's banners). */
  writeLine(line: string): Promise<void>;
  /** Writes bytes that are not part of the stream (a pod log shown as a fallback) to stdout. */
  writeStdout(bytes: Uint8Array): Promise<void>;
  /** Ends the build from outside (its relay died, a signal came) with `exitCode` and a sentence. */
  abort(exitCode: number, message: string): void;
}

function urlHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/**
 * The host a relay dials, as the URL names it and a certificate must: the
 * advertised host, or the listening address unless that is a wildcard.
 */
export function advertisedHost(
  options: Pick<ReceiverOptions, "hostname" | "advertiseHost">,
): string {
  return options.advertiseHost ?? (isWildcard(options.hostname) ? "127.0.0.1" : options.hostname);
}

/** Whether `host` means every address (0.0.0.0, ::), which no peer can dial. */
export function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "[::]" || host === "";
}

/** A receiver for one build; create it with {@linkcode Receiver.start}. */
export class Receiver implements BuildReceiver {
  #console: BuilderConsole;
  #admission: Admission;
  #session: Session;
  #url: string;
  #done = false;
  #aborting = false;
  /** Resolves when an abort comes after the outcome, while output may still be draining. */
  #abortedLate = Promise.withResolvers<void>();
  #resolve!: (outcome: ReceiverOutcome) => void;
  /** Settles once the receiver has finished, with the status to exit with. */
  readonly outcome: Promise<ReceiverOutcome>;

  private constructor(options: ReceiverOptions) {
    this.outcome = new Promise((resolve) => (this.#resolve = resolve));
    this.#console = new BuilderConsole({
      stdout: options.stdout,
      stderr: options.stderr,
      merge: options.merge,
      sameFile: options.sameFile ?? false,
      idleIntervalMs: options.idleIntervalMs,
    });
    this.#admission = Admission.listen({
      hostname: options.hostname,
      port: options.port,
      token: options.token,
      tls: options.tls,
      log: (text) => this.message(text),
      check: () => this.#session.check(),
      accept: (upgrade) => this.#session.accept(upgrade),
    });
    const scheme = options.tls === undefined ? "ws" : "wss";
    this.#url = `${scheme}://${
      urlHost(advertisedHost(options))
    }:${this.#admission.port}${STREAM_PATH}`;
    this.#session = new Session({
      console: this.#console,
      url: this.#url,
      connectTimeoutMs: options.connectTimeoutMs,
      reconnectGraceMs: options.reconnectGraceMs,
      pingIntervalMs: options.pingIntervalMs,
      verbose: options.verbose,
      source: options.source,
      note: (remote, reason) => this.#admission.noteClosed(remote, reason),
      onOver: (outcome, closed) => this.#over(outcome, closed),
    });
  }

  /** Starts listening; the returned receiver is ready for its relay. */
  static start(options: ReceiverOptions): Receiver {
    return new Receiver(options);
  }

  /** The URL a relay must connect to. */
  get url(): string {
    return this.#url;
  }

  /** The port the OS gave the listener. */
  get port(): number {
    return this.#admission.port;
  }

  /** Whether the receiver has settled on its outcome. */
  get done(): boolean {
    return this.#done;
  }

  /** Whether the verdict on FINISHED has been given, so the outcome is only a close away. */
  get answered(): boolean {
    return this.#session.phase === "answered" ||
      (this.#session.phase === "over" && this.#session.finishedArrived);
  }

  /** Whether FINISHED has arrived: every byte the build wrote is here or being written. */
  get finishedArrived(): boolean {
    return this.#session.finishedArrived;
  }

  /** Whether a relay has ever completed the handshake. */
  get connected(): boolean {
    return this.#session.connected;
  }

  /** Writes one of phonehome's own messages on stderr, on a line of its own. */
  message(text: string): Promise<void> {
    return this.#console.message(text);
  }

  /** Writes a line that already says where it comes from (the old builder's banners). */
  writeLine(line: string): Promise<void> {
    return this.#console.writeLine(line);
  }

  /** Writes bytes that are not part of the stream (a pod log shown as a fallback) to stdout. */
  writeStdout(bytes: Uint8Array): Promise<void> {
    return this.#console.writeStdout(bytes);
  }

  /**
   * Ends the receiver from outside (the launcher saw its relay die, or a signal
   * came). Output still queued gets a short while to drain, not forever, since
   * whoever reads it may be the reason for stopping. After the outcome is
   * settled, it keeps that outcome but stops waiting for the output long.
   */
  abort(exitCode: number, message: string): void {
    if (this.#done) {
      this.#abortedLate.resolve();
      return;
    }
    this.#aborting = true;
    this.#session.end(exitCode, message);
  }

  #over(outcome: SessionOutcome, closed: Promise<void>): void {
    this.#done = true;
    const outputGone = outcome.exitCode === ExitCode.outputClosed;
    const reported = outcome.message === undefined
      ? Promise.resolve()
      : this.#console.message(outcome.message);
    this.#console.stop(outputGone);
    const drained = Promise.all([reported, this.#console.drained()]);
    Promise.all([
      // Without a reader, queued writes may never complete: the message is only attempted.
      outputGone
        ? undefined
        : this.#aborting
        ? settlesWithin(drained, ABORT_DRAIN_TIMEOUT_MS)
        : Promise.race([
          drained,
          this.#abortedLate.promise.then(() => settlesWithin(drained, ABORT_DRAIN_TIMEOUT_MS)),
        ]),
      // Closing before the close handshake ends would turn 4004 into a broken connection,
      // after which a relay keeps reconnecting; but a relay that does not answer must not
      // keep the receiver alive either.
      settlesWithin(closed, SHUTDOWN_TIMEOUT_MS).then(() => this.#admission.close()),
    ]).finally(() =>
      this.#resolve({
        exitCode: outcome.exitCode,
        exit: outcome.exit,
        connected: outcome.connected,
      })
    );
  }
}
