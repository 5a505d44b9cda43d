/**
 * The Kubernetes backend's own failure: the API could not be used (exit status
 * 77, EX_NOPERM in sysexits, since a missing RBAC verb is the usual cause).
 *
 * @module
 */

import { PhonehomeError } from "../../errors.ts";
import { ExitCode } from "../../exit_codes.ts";
import type { AttemptFailure } from "./retry.ts";

/** What is known about a failed API request besides its message. */
export interface KubernetesApiErrorDetails {
  /** The HTTP status the API answered with. */
  status?: number;
  /** The machine-readable reason of the API's `Status` answer. */
  reason?: string;
  /** How long the answer asked to wait before trying again, in milliseconds. */
  retryAfterMs?: number;
  /** Without an answer: whether the connection failed in passing (reset, refused, timed out). */
  transient?: boolean;
  /** What went wrong, without the request's name: the API's answer, or why there was none. */
  problem?: string;
  /** How many tries the request made (default 1). */
  tries?: number;
  /** Whether a try may have been carried out despite failing (default true). */
  mayHaveTakenEffect?: boolean;
  cause?: unknown;
}

/** A request to the Kubernetes API failed; the message names the request and the API's answer. */
export class KubernetesApiError extends PhonehomeError implements AttemptFailure {
  /** The HTTP status the API answered with, or undefined when it could not be reached. */
  readonly status: number | undefined;
  /** The machine-readable reason of the API's `Status` answer, such as `Forbidden`. */
  readonly reason: string | undefined;
  /** How long the answer asked to wait before trying again (`Retry-After`), in milliseconds. */
  readonly retryAfterMs: number | undefined;
  /** Without an answer: whether the connection failed in passing (reset, refused, timed out). */
  readonly transient: boolean;
  /** What went wrong, without the request's name, such as `... (HTTP 503, ServiceUnavailable)`. */
  readonly problem: string;
  /** How many tries the request made before this failure stood. */
  readonly tries: number;
  /**
   * Whether a try may have been carried out all the same: its answer was lost,
   * it timed out, or the API failed (5xx) after perhaps doing the work. False
   * when every try was refused (4xx) or never sent.
   */
  readonly mayHaveTakenEffect: boolean;

  /** Creates an API error (exit status 77). */
  constructor(message: string, details: KubernetesApiErrorDetails = {}) {
    super(message, ExitCode.kubernetesApi, { cause: details.cause });
    this.name = "KubernetesApiError";
    this.status = details.status;
    this.reason = details.reason;
    this.retryAfterMs = details.retryAfterMs;
    this.transient = details.transient ?? false;
    this.problem = details.problem ?? message;
    this.tries = details.tries ?? 1;
    this.mayHaveTakenEffect = details.mayHaveTakenEffect ?? true;
  }
}
