/**
 * Test support: a clock the test moves by hand, and a socket the test plays
 * the receiver through, for unit tests of the relay's connection logic that
 * would otherwise wait out real seconds.
 *
 * @module
 */

import type { Clock, ClockHandle } from "../../src/relay/clock.ts";
import type { SocketLike } from "../../src/relay/connection_attempt.ts";

interface Due {
  at: number;
  callback: () => void;
  handle: number;
}

/** Lets queued promise reactions run, as they would between two real timer callbacks. */
export async function drainMicrotasks(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => queueMicrotask(resolve));
}

/** A clock that stands still until {@linkcode FakeClock.advance}; chance is fixed. */
export class FakeClock implements Clock {
  #now = 0;
  #due: Due[] = [];
  #next = 1;
  /** What {@linkcode random} returns. */
  randomValue = 0.5;

  /** Milliseconds since the test began. */
  now(): number {
    return this.#now;
  }

  /** Schedules `callback` at now + `ms`. */
  after(ms: number, callback: () => void): ClockHandle {
    const handle = this.#next++;
    this.#due.push({ at: this.#now + ms, callback, handle });
    return handle;
  }

  /** Unschedules a callback. */
  cancel(handle: ClockHandle | undefined): void {
    this.#due = this.#due.filter((due) => due.handle !== handle);
  }

  /** The fixed chance. */
  random(): number {
    return this.randomValue;
  }

  /** Moves time forward by `ms`, running each callback that falls due, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    await drainMicrotasks();
    while (true) {
      const due = this.#due.filter((d) => d.at <= end).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.#due = this.#due.filter((d) => d !== due);
      this.#now = due.at;
      due.callback();
      await drainMicrotasks();
    }
    this.#now = end;
  }
}

/** A socket whose other end is the test. */
export class FakeSocket implements SocketLike {
  binaryType: BinaryType = "blob";
  readyState: number = WebSocket.CONNECTING;
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  /** Text messages the relay sent, parsed. */
  readonly sent: Array<Record<string, unknown>> = [];
  /** Binary messages the relay sent. */
  readonly frames: Uint8Array[] = [];
  /** The close the relay asked for, if any. */
  closedWith: { code?: number; reason?: string } | undefined;

  /** Creates a socket the relay opened at `openedAtMs` on the test's clock. */
  constructor(readonly openedAtMs = 0) {}

  /** Records what the relay sends. */
  send(data: string | ArrayBufferLike | ArrayBufferView): void {
    if (typeof data === "string") this.sent.push(JSON.parse(data));
    else this.frames.push(new Uint8Array(data as ArrayBuffer));
  }

  /** Records the relay's close; the test decides when the close completes. */
  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
  }

  /** The connection opens. */
  open(): void {
    this.readyState = WebSocket.OPEN;
    this.onopen?.(new Event("open"));
  }

  /** The receiver sends a control message. */
  receive(message: Record<string, unknown>): void {
    this.onmessage?.(new MessageEvent("message", { data: JSON.stringify(message) }));
  }

  /** The connection ends: with a close frame's code, or 1006 and an error for a failure. */
  end(code: number, reason = "", error?: string): void {
    this.readyState = WebSocket.CLOSED;
    if (error !== undefined) this.onerror?.(new ErrorEvent("error", { message: error }));
    this.onclose?.(new CloseEvent("close", { code, reason }));
  }
}
