/**
 * Time for the relay's connection logic, injectable: the real clock in
 * production, a fake one in unit tests of backoff and liveness, which would
 * otherwise take minutes of real time.
 *
 * @module
 */

import type { Timer } from "../timing.ts";

/** What {@linkcode Clock.after} returns, for {@linkcode Clock.cancel}; opaque. */
export type ClockHandle = unknown;

/** What the relay's connection logic needs of time and chance. */
export interface Clock {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  /** Calls `callback` once after `ms`; returns a handle for {@linkcode Clock.cancel}. */
  after(ms: number, callback: () => void): ClockHandle;
  /** Cancels a callback set with {@linkcode Clock.after}; undefined is ignored. */
  cancel(handle: ClockHandle | undefined): void;
  /** A number in [0, 1), for jitter. */
  random(): number;
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => performance.now(),
  after: (ms, callback) => setTimeout(callback, ms),
  cancel: (handle) => clearTimeout(handle as Timer | undefined),
  random: () => Math.random(),
};
