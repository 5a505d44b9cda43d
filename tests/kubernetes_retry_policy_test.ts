/**
 * The Kubernetes API retry policy on its own, with an injected clock: which
 * failures are retried (429, 500, 502, 503, 504, connections failing in
 * passing) and which are final, Retry-After as seconds or a date, pauses that
 * double with jitter up to a ceiling, and calls that end within their budget.
 * kubernetes_retry_test.ts and kubernetes_retry_failure_test.ts try the policy
 * end to end against the fake API server.
 */

import assert from "node:assert/strict";
import {
  type AttemptFailure,
  isConnectFailure,
  isRetryable,
  isTransientNetworkError,
  MAX_BACKOFF_MS,
  MAX_RETRY_AFTER_MS,
  nextRetryDelayMs,
  parseRetryAfterMs,
  type RetryClock,
  retryDelayMs,
  retrying,
} from "../src/launchers/kubernetes/retry.ts";

/** A clock whose pauses pass at once, recorded; `random` always gives `chance`. */
function fakeClock(chance = 0.5): RetryClock & { sleeps: number[] } {
  let nowMs = 0;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => nowMs,
    sleep: (ms) => {
      sleeps.push(ms);
      nowMs += ms;
      return Promise.resolve();
    },
    random: () => chance,
  };
}

/** A try that fails with each of `failures` in turn, then succeeds with "done". */
function scripted(
  failures: AttemptFailure[],
  timeouts: number[] = [],
): (timeoutMs: number) => Promise<string> {
  let next = 0;
  return (timeoutMs) => {
    timeouts.push(timeoutMs);
    const failure = failures[next++];
    return failure === undefined ? Promise.resolve("done") : Promise.reject(failure);
  };
}

const asFailure = (error: unknown): AttemptFailure | undefined =>
  typeof error === "object" && error !== null && !(error instanceof Error)
    ? error as AttemptFailure
    : undefined;

Deno.test("429, 500, 502, 503, 504 and connections failing in passing are retried; other refusals are final", () => {
  for (const status of [429, 500, 502, 503, 504]) assert.ok(isRetryable({ status }), `${status}`);
  for (const status of [400, 401, 403, 404, 409, 410, 422]) {
    assert.ok(!isRetryable({ status }), `${status}`);
  }
  assert.ok(isRetryable({ transient: true }));
  assert.ok(!isRetryable({ transient: false }));
  const socket = Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" });
  assert.ok(isTransientNetworkError(new TypeError("fetch failed", { cause: socket })));
  assert.ok(isTransientNetworkError(Object.assign(new Error("x"), { code: "ECONNREFUSED" })));
  assert.ok(isTransientNetworkError(new DOMException("timed out", "TimeoutError")));
  const tls = Object.assign(new Error("self-signed certificate"), {
    code: "DEPTH_ZERO_SELF_SIGNED_CERT",
  });
  assert.ok(!isTransientNetworkError(new TypeError("fetch failed", { cause: tls })));
  // What was never sent cannot have been carried out; a connection cut later may have been.
  assert.ok(isConnectFailure(new TypeError("fetch failed", { cause: tls })));
  assert.ok(isConnectFailure(Object.assign(new Error("x"), { code: "ECONNREFUSED" })));
  assert.ok(!isConnectFailure(new TypeError("fetch failed", { cause: socket })));
});

Deno.test("Retry-After is read as seconds or as an HTTP date", () => {
  assert.equal(parseRetryAfterMs("1", 0), 1000);
  assert.equal(parseRetryAfterMs(" 30 ", 0), 30_000);
  const now = Date.parse("2024-05-01T12:00:00Z");
  assert.equal(parseRetryAfterMs("Wed, 01 May 2024 12:00:05 GMT", now), 5000);
  assert.equal(parseRetryAfterMs("Wed, 01 May 2024 11:00:00 GMT", now), 0);
  assert.equal(parseRetryAfterMs("soon", now), undefined);
  assert.equal(parseRetryAfterMs(undefined, now), undefined);
});

Deno.test("pauses double with jitter up to a ceiling, and Retry-After is honoured up to a bound", () => {
  const lowest = [1, 2, 3, 4, 5].map((tries) => retryDelayMs({ status: 503 }, tries, 0));
  const highest = [1, 2, 3, 4, 5].map((tries) => retryDelayMs({ status: 503 }, tries, 0.999_999));
  assert.deepEqual(lowest, [50, 100, 200, 400, 800]);
  assert.deepEqual(highest, [100, 200, 400, 800, 1600]);
  assert.equal(retryDelayMs({ status: 503 }, 40, 0.999_999), MAX_BACKOFF_MS);
  assert.equal(retryDelayMs({ status: 429, retryAfterMs: 1000 }, 1, 0.7), 1000);
  assert.equal(retryDelayMs({ status: 429, retryAfterMs: 3_600_000 }, 1, 0), MAX_RETRY_AFTER_MS);
  assert.equal(
    nextRetryDelayMs({
      failure: { status: 429, retryAfterMs: 5000 },
      tries: 1,
      elapsedMs: 0,
      budgetMs: 4000,
      random: 0,
    }),
    undefined,
    "a Retry-After past the budget ends the retries",
  );
  assert.equal(
    nextRetryDelayMs({
      failure: { status: 403 },
      tries: 1,
      elapsedMs: 0,
      budgetMs: 30_000,
      random: 0,
    }),
    undefined,
  );
});

Deno.test("a call that fails twice in passing succeeds on its third try, after two pauses", async () => {
  const clock = fakeClock();
  const notices: Array<[number, number]> = [];
  const result = await retrying({
    attempt: scripted([{ status: 503 }, { transient: true }]),
    failureOf: asFailure,
    budgetMs: 30_000,
    attemptTimeoutMs: 10_000,
    clock,
    onRetry: (notice) => notices.push([notice.tries, notice.delayMs]),
  });
  assert.deepEqual(result, { ok: true, value: "done", tries: 3 });
  assert.deepEqual(clock.sleeps, [75, 150]);
  assert.deepEqual(notices, [[1, 75], [2, 150]]);
});

Deno.test("a fault that outlasts the budget ends the call within it, saying how many tries it made", async () => {
  const clock = fakeClock();
  const timeouts: number[] = [];
  const result = await retrying({
    attempt: scripted(Array(100).fill({ status: 500 }), timeouts),
    failureOf: asFailure,
    budgetMs: 10_000,
    attemptTimeoutMs: 4_000,
    clock,
  });
  assert.equal(result.ok, false);
  assert.ok(!result.ok && result.tries === clock.sleeps.length + 1);
  assert.ok(!result.ok && result.elapsedMs <= 10_000, JSON.stringify(result));
  assert.equal(timeouts[0], 4_000, "a try never takes longer than one request may");
  assert.ok(
    timeouts.every((timeoutMs, i) =>
      timeoutMs <= 10_000 - clock.sleeps.slice(0, i).reduce((a, b) => a + b, 0)
    ),
    `each try fits in what is left of the budget: ${timeouts} after ${clock.sleeps}`,
  );
});

Deno.test("a final refusal is not retried, and an error that is not the API's is thrown at once", async () => {
  const clock = fakeClock();
  const refused = await retrying({
    attempt: scripted([{ status: 403 }]),
    failureOf: asFailure,
    budgetMs: 30_000,
    attemptTimeoutMs: 10_000,
    clock,
  });
  assert.deepEqual(refused, { ok: false, error: { status: 403 }, tries: 1, elapsedMs: 0 });
  await assert.rejects(
    retrying({
      attempt: () => Promise.reject(new RangeError("a bug")),
      failureOf: asFailure,
      budgetMs: 30_000,
      attemptTimeoutMs: 10_000,
      clock,
    }),
    RangeError,
  );
  assert.deepEqual(clock.sleeps, []);
});
