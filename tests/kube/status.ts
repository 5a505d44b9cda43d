/**
 * The API server's `Status` body, which every refusal of the real API carries,
 * for the fake API server and its fault injection alike.
 *
 * @module
 */

/** A `Status` of failure with the HTTP `code`, the machine-readable `reason` and a message. */
export function statusBody(
  code: number,
  reason: string,
  message: string,
  details?: Record<string, unknown>,
): Record<string, unknown> {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    ...(details === undefined ? {} : { details }),
    code,
  };
}
