/**
 * Domain errors that carry the exit status the command line reports for them.
 *
 * @module
 */

import { ExitCode } from "./exit_codes.ts";

/** A failure the user can act on: its message is printed as is, and the process exits with `exitCode`. */
export class PhonehomeError extends Error {
  /** The exit status to report. */
  readonly exitCode: number;

  /** Creates an error with the exit status it should produce. */
  constructor(message: string, exitCode: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "PhonehomeError";
    this.exitCode = exitCode;
  }
}

/** The command line or the environment is wrong. */
export class UsageError extends PhonehomeError {
  /** Creates a usage error (exit status 64). */
  constructor(message: string) {
    super(message, ExitCode.usage);
    this.name = "UsageError";
  }
}

/**
 * The message of anything thrown, for a sentence: an Error's message (with its
 * cause's, when it has one), or the thrown value as text.
 */
export function errorMessage(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? error.cause.message : "";
  return cause === "" || error.message.includes(cause)
    ? error.message
    : `${error.message} (${cause})`;
}
