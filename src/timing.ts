/**
 * Deadlines for promises: every wait in phonehome has one.
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
