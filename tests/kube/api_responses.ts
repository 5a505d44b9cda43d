/**
 * The fake API server's answers: JSON bodies, and refusals carrying the
 * real API's `Status` body (422 Invalid with its cause, among others).
 *
 * @module
 */

import { statusBody } from "./status.ts";

/** A JSON answer with `status`. */
export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** A refusal: HTTP `code` with a `Status` of failure naming `reason`. */
export function failure(
  code: number,
  reason: string,
  message: string,
  details?: Record<string, unknown>,
): Response {
  return json(statusBody(code, reason, message, details), code);
}

/** 404 for an object that does not exist, as the API words it. */
export function notFound(resource: string, name: string | undefined): Response {
  return failure(404, "NotFound", `${resource} "${name}" not found`, { name, kind: resource });
}

/** 422 Invalid: the object named `name` of `kind` fails validation for `cause`. */
export function invalid(kind: string, name: string, cause: string): Response {
  return failure(422, "Invalid", `${kind} "${name}" is invalid: ${cause}`, {
    name,
    kind,
    causes: [{ reason: "FieldValueInvalid", message: cause }],
  });
}
