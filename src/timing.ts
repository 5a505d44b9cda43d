/**
 * Deadlines for promises (every wait in phonehome has one), and turns for
 * the rest of the process during long synchronous work.
 *
 * @module
 */

/** A timer handle, whichever typing of `setTimeout` is in scope. */
export type Timer = ReturnType<typeof setTimeout>;

/** Whether `promise` settles within `ms` milliseconds; the timer never outlives the call. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: Timer | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Longest stretch of synchronous work before {@linkcode Pacer.turn} lets timers and sockets run. */
const SYNC_SLICE_MS = 5;

/**
 * Paces a long run of synchronous file-system calls (thousands of small
 * files: a sync call costs a fraction of an async one) so that the rest of
 * the process (pings, a connection's reads) still gets a turn every few
 * milliseconds.
 */
export class Pacer {
  #since = performance.now();

  /** Yields to the event loop when the current slice is used up. */
  async turn(): Promise<void> {
    if (performance.now() - this.#since < SYNC_SLICE_MS) return;
    await new Promise((resolve) => setTimeout(resolve, 0));
    this.#since = performance.now();
  }
}
