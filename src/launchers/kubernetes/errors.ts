/**
 * The Kubernetes backend's own failure: the API could not be used (exit status
 * 77, EX_NOPERM in sysexits, since a missing RBAC verb is the usual cause).
 *
 * @module
 */

import { PhonehomeError } from "../../errors.ts";
import { ExitCode } from "../../exit_codes.ts";

/** A request to the Kubernetes API failed; the message names the request and the API's answer. */
export class KubernetesApiError extends PhonehomeError {
  /** The HTTP status the API answered with, or undefined when it could not be reached. */
  readonly status: number | undefined;
  /** The machine-readable reason of the API's `Status` answer, such as `Forbidden`. */
  readonly reason: string | undefined;

  /** Creates an API error (exit status 77). */
  constructor(
    message: string,
    details: { status?: number; reason?: string; cause?: unknown } = {},
  ) {
    super(message, ExitCode.kubernetesApi, { cause: details.cause });
    this.name = "KubernetesApiError";
    this.status = details.status;
    this.reason = details.reason;
  }
}
