/**
 * The Kubernetes backend's own failure: the API could not be used. Its exit
 * status joins the sysexits-style codes of src/exit_codes.ts.
 *
 * @module
 */

import { PhonehomeError } from "../../errors.ts";

/**
 * Exit status when the Kubernetes API could not be used: unreachable, or it
 * refused a request (unauthorized, forbidden, an invalid object). EX_NOPERM in
 * sysexits, since a missing RBAC verb is the usual cause.
 */
export const KUBERNETES_API_EXIT_CODE = 77;

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
    super(message, KUBERNETES_API_EXIT_CODE, { cause: details.cause });
    this.name = "KubernetesApiError";
    this.status = details.status;
    this.reason = details.reason;
  }
}
