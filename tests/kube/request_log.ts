/**
 * The fake API server's record of requests: each as the server understood
 * it, in order, with promises for requests to come, and holds that keep
 * chosen requests back until a test lets them go.
 *
 * @module
 */

import type { FaultSpec } from "./fault_injection.ts";

/** One request, as the server understood it. */
export interface RequestRecord {
  /** When the request arrived, in `performance.now()` milliseconds. */
  receivedMs: number;
  method: string;
  path: string;
  query: URLSearchParams;
  /** get, list, watch, create, delete, update, patch, deletecollection. */
  verb: string;
  /** Such as `pods`, `pods/log` or `jobs`. */
  resource: string;
  group: string;
  name?: string;
  /** The status answered (for a lost answer, the one that was lost); 0 when cut off unanswered. */
  status: number;
  /** The parsed request body, for writes. */
  body?: unknown;
  /** The injected fault that hit this request, if any ("status", "reset" or "lostAnswer"). */
  fault?: FaultSpec["kind"];
}

/** Every request served, and what tests wait for or hold back; see the module documentation. */
export class RequestLog {
  /** Every request served, in order. */
  readonly records: RequestRecord[] = [];
  #waiters: Array<
    { test: (r: RequestRecord) => boolean; resolve: (r: RequestRecord) => void }
  > = [];
  #holds: Array<{ test: (r: RequestRecord) => boolean; until: Promise<unknown> }> = [];

  /** Adds a served request, and resolves the waits it answers. */
  add(record: RequestRecord): void {
    this.records.push(record);
    this.#waiters = this.#waiters.filter((waiter) => {
      if (!waiter.test(record)) return true;
      waiter.resolve(record);
      return false;
    });
  }

  /** Resolves with the first request (made or to come) that `test` accepts. */
  waitFor(test: (record: RequestRecord) => boolean): Promise<RequestRecord> {
    const seen = this.records.find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => this.#waiters.push({ test, resolve }));
  }

  /** Holds back requests that `test` accepts (before they are served) until `until` settles. */
  hold(test: (record: RequestRecord) => boolean, until: Promise<unknown>): void {
    this.#holds.push({ test, until });
  }

  /** Resolves once every hold that applies to the request about to be served has settled. */
  async holdsReleased(pending: RequestRecord): Promise<void> {
    for (const hold of this.#holds) {
      if (hold.test(pending)) await hold.until.catch(() => {});
    }
  }
}
