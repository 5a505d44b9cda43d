/**
 * Transient failures for the fake API server, as real API servers produce
 * them: 429 under API Priority and Fairness (with `Retry-After`), 500 during
 * an etcd leader change, 502 from a proxy in front, 503 and 504 when
 * overloaded, connections dropped while servers roll, and an answer lost after
 * the request was carried out. Each fault hits the next `count` requests of
 * one verb on one resource, then stops.
 *
 * @module
 */

import { statusBody } from "./status.ts";

/** What a fault does to a matching request. */
export type FaultKind =
  /** Answers with an error status and the real API's `Status` body; nothing is done. */
  | "status"
  /** Cuts the connection before the request is carried out. */
  | "reset"
  /** Carries the request out, then cuts the connection before the answer is sent. */
  | "lostAnswer";

/** Statuses a fault of kind "status" can answer with. */
export type FaultStatus = 429 | 500 | 502 | 503 | 504;

/** Which requests fail, how, and how many times. */
export interface FaultSpec {
  /** The Kubernetes verb: create, get, list, watch or delete. */
  verb: string;
  /** The resource, such as `pods`, `secrets`, `jobs` or `pods/log`. */
  resource: string;
  /** Only requests naming this object; any when absent. */
  name?: string;
  /** What happens (default "status"). */
  kind?: FaultKind;
  /** The status of a "status" fault (default 503). */
  status?: FaultStatus;
  /** How many matching requests fail; Infinity for a fault that never ends. */
  count: number;
  /** `Retry-After` (and `details.retryAfterSeconds`) of the answer; 429 defaults to 1. */
  retryAfterSeconds?: number;
  /** The cause in the answer's message, such as "etcdserver: leader changed". */
  message?: string;
}

/** The request facts a fault is matched against. */
export interface FaultTarget {
  verb: string;
  resource: string;
  name?: string;
}

/** A fault that hit one request. */
export interface FaultHit {
  kind: FaultKind;
  /** The answer, for a "status" fault. */
  response?: Response;
}

interface ArmedFault extends FaultSpec {
  left: number;
}

const HTML_BAD_GATEWAY = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n" +
  "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n" +
  "</html>\r\n";

/**
 * The answer a real API server gives for `status`: a `Status` object with the
 * reason and message the API's own error constructors produce (502 comes from
 * a proxy in front of the server, as an HTML page).
 */
export function faultResponse(
  status: FaultStatus,
  options: { retryAfterSeconds?: number; message?: string } = {},
): Response {
  const retryAfterSeconds = options.retryAfterSeconds ?? (status === 429 ? 1 : undefined);
  const headers: Record<string, string> = {};
  if (retryAfterSeconds !== undefined) headers["retry-after"] = String(retryAfterSeconds);
  if (status === 502) {
    return new Response(HTML_BAD_GATEWAY, {
      status,
      headers: { ...headers, "content-type": "text/html" },
    });
  }
  const shapes: Record<Exclude<FaultStatus, 502>, { reason: string; message: string }> = {
    429: {
      reason: "TooManyRequests",
      message: options.message ?? "Too many requests, please try again later.",
    },
    500: {
      reason: "InternalError",
      message: `Internal error occurred: ${options.message ?? "etcdserver: leader changed"}`,
    },
    503: {
      reason: "ServiceUnavailable",
      message: options.message ?? "the server is currently unable to handle the request",
    },
    504: {
      reason: "Timeout",
      message: `Timeout: ${
        options.message ?? "request did not complete within the allotted timeout"
      }`,
    },
  };
  const { reason, message } = shapes[status];
  const details: Record<string, unknown> = {};
  if (retryAfterSeconds !== undefined) details.retryAfterSeconds = retryAfterSeconds;
  if (status === 500) {
    details.causes = [{ message: options.message ?? "etcdserver: leader changed" }];
  }
  const body = statusBody(
    status,
    reason,
    message,
    Object.keys(details).length === 0 ? undefined : details,
  );
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...headers, "content-type": "application/json" },
  });
}

/** The faults armed on one server. */
export class FaultInjector {
  #faults: ArmedFault[] = [];

  /** Arms faults; each hits the next `count` matching requests. */
  add(...specs: FaultSpec[]): void {
    for (const spec of specs) this.#faults.push({ ...spec, left: spec.count });
  }

  /** Disarms every fault. */
  clear(): void {
    this.#faults = [];
  }

  /** The fault that hits this request, if any; counts it. */
  take(target: FaultTarget): FaultHit | undefined {
    const fault = this.#faults.find((f) =>
      f.left > 0 && f.verb === target.verb && f.resource === target.resource &&
      (f.name === undefined || f.name === target.name)
    );
    if (fault === undefined) return undefined;
    fault.left--;
    const kind = fault.kind ?? "status";
    if (kind !== "status") return { kind };
    return {
      kind,
      response: faultResponse(fault.status ?? 503, {
        retryAfterSeconds: fault.retryAfterSeconds,
        message: fault.message,
      }),
    };
  }
}
