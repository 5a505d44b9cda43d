/**
 * Turning SIGINT and SIGTERM into an orderly stop for the builder-side commands.
 *
 * @module
 */

import { signalExitCode } from "../exit_codes.ts";

/** Signals that ask a builder-side command to stop. */
const TERMINATION_SIGNALS: readonly Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * Calls `handler` with the signal and its shell exit status (128+n) when a
 * termination signal arrives; returns a function that removes the listeners.
 */
export function onTerminationSignal(
  handler: (signal: Deno.Signal, exitCode: number) => void,
): () => void {
  const removers = TERMINATION_SIGNALS.map((signal) => {
    const listener = (): void => handler(signal, signalExitCode(signal));
    Deno.addSignalListener(signal, listener);
    return () => Deno.removeSignalListener(signal, listener);
  });
  return () => removers.forEach((remove) => remove());
}
