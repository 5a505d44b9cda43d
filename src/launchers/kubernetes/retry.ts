/**
 * The one retry policy of every Kubernetes API call, as client-go has it: a
 * 429 (API Priority and Fairness) waits for its `Retry-After`, bounded; 500,
 * 502, 503 and 504, reset or refused connections and timed-out tries are
 * retried after an exponential backoff with jitter; everything else (403, 404,
 * 409, 422, ...) is final at once. All tries of one call share one budget.
 * Pure apart from {@linkcode SYSTEM_CLOCK}: the clock, the pauses and the
 * randomness are injectable.
 *
 * @module
 */

/** HTTP statuses worth another try: too many requests, and the server's transient failures. */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([429, 500, 502, 503, 504]);

/** Pause before the first retry of an answer without `Retry-After`; it doubles with each try. */
export const FIRST_BACKOFF_MS = 100;

/** Longest pause between two tries without `Retry-After`. */
export const MAX_BACKOFF_MS = 5_000;

/** Longest `Retry-After` honoured; a server asking for more is tried again after this long. */
export const MAX_RETRY_AFTER_MS = 10_000;

/** The shortest try worth starting: a retry that would leave less of the budget is not made. */
export const MIN_ATTEMPT_MS = 100;

/** Error codes (Node, undici and Deno) of connections that failed in passing. */
const TRANSIENT_CODES: ReadonlySet<string> = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);

/** Error names (undici, DOM and Deno) of connections that failed in passing. */
const TRANSIENT_NAMES: ReadonlySet<string> = new Set([
  "TimeoutError",
  "SocketError",
  "ConnectTimeoutError",
  "HeadersTimeoutError",
  "BodyTimeoutError",
  "ConnectionReset",
  "ConnectionRefused",
  "ConnectionAborted",
  "BrokenPipe",
  "TimedOut",
  "UnexpectedEof",
]);

/** Error codes and names of connections that could not be made: nothing was sent. */
const CONNECT_FAILURES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
  "ConnectTimeoutError",
  "ConnectionRefused",
]);

/** Error codes of a TLS handshake that failed: nothing was sent. */
const TLS_FAILURE_CODE = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_)/;

/** Deepest `cause` chain looked through. */
const MAX_CAUSE_DEPTH = 8;

interface ErrorFacts {
  code?: unknown;
  name?: unknown;
  message?: unknown;
}

/** `error` and its causes, outermost first. */
function* causeChain(error: unknown): Generator<ErrorFacts> {
  let current: unknown = error;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH; depth++) {
    if (typeof current !== "object" || current === null) return;
    yield current as ErrorFacts;
    current = (current as { cause?: unknown }).cause;
  }
}

/** What one failed try tells the policy. */
export interface AttemptFailure {
  /** The HTTP status, when the API answered. */
  readonly status?: number;
  /** How long the answer asked to wait (`Retry-After`), in milliseconds. */
  readonly retryAfterMs?: number;
  /** Without an answer: whether the connection failed in passing (reset, refused, timed out). */
  readonly transient?: boolean;
}

/** Whether another try may succeed where this one failed. */
export function isRetryable(failure: AttemptFailure): boolean {
  return failure.status === undefined
    ? failure.transient === true
    : RETRYABLE_STATUSES.has(failure.status);
}

/**
 * Whether an error thrown by a request without an answer is a connection
 * failing in passing (reset, refused, closed early, timed out), looking
 * through its `cause` chain; TLS and other errors are not.
 */
export function isTransientNetworkError(error: unknown): boolean {
  for (const { code, name, message } of causeChain(error)) {
    if (typeof code === "string" && TRANSIENT_CODES.has(code)) return true;
    if (typeof name === "string" && TRANSIENT_NAMES.has(name)) return true;
    if (typeof message === "string" && /other side closed|socket hang up/i.test(message)) {
      return true;
    }
  }
  return false;
}

/**
 * Whether an error thrown by a request without an answer says the request was
 * never sent: the connection was refused or unreachable, the name did not
 * resolve, or the TLS handshake failed.
 */
export function isConnectFailure(error: unknown): boolean {
  for (const { code, name, message } of causeChain(error)) {
    if (typeof code === "string" && (CONNECT_FAILURES.has(code) || TLS_FAILURE_CODE.test(code))) {
      return true;
    }
    if (typeof name === "string" && CONNECT_FAILURES.has(name)) return true;
    if (typeof message === "string" && /^bad port$/i.test(message)) return true;
  }
  return false;
}

/**
 * A `Retry-After` header in milliseconds: delay-seconds or an HTTP date
 * (relative to `nowMs`); undefined when absent or malformed.
 */
export function parseRetryAfterMs(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/**
 * The pause after `tries` failed tries: the answer's `Retry-After` (at most
 * {@linkcode MAX_RETRY_AFTER_MS}), otherwise {@linkcode FIRST_BACKOFF_MS}
 * doubled per try up to {@linkcode MAX_BACKOFF_MS}, of which a random half
 * (`random` in [0, 1)) is jitter.
 */
export function retryDelayMs(failure: AttemptFailure, tries: number, random: number): number {
  if (failure.retryAfterMs !== undefined && failure.retryAfterMs > 0) {
    return Math.min(failure.retryAfterMs, MAX_RETRY_AFTER_MS);
  }
  const ceilingMs = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** Math.min(tries - 1, 30));
  return Math.round(ceilingMs / 2 + (random * ceilingMs) / 2);
}

/** Where a call stands after a failed try. */
export interface RetryState {
  failure: AttemptFailure;
  /** Tries made so far, the failed one included. */
  tries: number;
  /** Time since the first try began. */
  elapsedMs: number;
  /** How long all tries of the call may take. */
  budgetMs: number;
  /** A random number in [0, 1), for the jitter. */
  random: number;
}

/** The pause before the next try, or undefined to give up: final failure, or no budget left. */
export function nextRetryDelayMs(state: RetryState): number | undefined {
  if (!isRetryable(state.failure)) return undefined;
  const delayMs = retryDelayMs(state.failure, state.tries, state.random);
  if (state.elapsedMs + delayMs + MIN_ATTEMPT_MS > state.budgetMs) return undefined;
  return delayMs;
}

/** Time, pauses and chance, injectable for tests. */
export interface RetryClock {
  /** A monotonic time in milliseconds. */
  now(): number;
  /** Resolves after `ms`, or early once `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** A random number in [0, 1). */
  random(): number;
}

/** The real clock. */
export const SYSTEM_CLOCK: RetryClock = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener("abort", done, { once: true });
    }),
  random: () => Math.random(),
};

/** A retry about to happen, for reporting. */
export interface RetryNotice {
  /** The failure of the try just made. */
  error: unknown;
  /** Tries made so far. */
  tries: number;
  /** The pause before the next try. */
  delayMs: number;
}

/** One call to make under the policy. */
export interface RetryRun<T> {
  /** One try; it must settle within `timeoutMs`. */
  attempt: (timeoutMs: number) => Promise<T>;
  /** What a thrown error says about retrying; undefined (not the API's failure) rethrows it. */
  failureOf: (error: unknown) => AttemptFailure | undefined;
  /** How long all tries may take together. */
  budgetMs: number;
  /** The longest one try may take, budget permitting. */
  attemptTimeoutMs: number;
  /** Stops retrying once aborted: the last failure is final. */
  signal?: AbortSignal;
  /** Told before each pause. */
  onRetry?: (notice: RetryNotice) => void;
  /** Time, pauses and chance; {@linkcode SYSTEM_CLOCK} when absent. */
  clock?: RetryClock;
}

/** How a call under the policy ended. */
export type RetryResult<T> =
  | { ok: true; value: T; tries: number }
  | { ok: false; error: unknown; tries: number; elapsedMs: number };

/**
 * Makes tries until one succeeds, one fails for good, or the budget is spent;
 * each try gets what is left of the budget, at most `attemptTimeoutMs`.
 */
export async function retrying<T>(run: RetryRun<T>): Promise<RetryResult<T>> {
  const clock = run.clock ?? SYSTEM_CLOCK;
  const startedMs = clock.now();
  for (let tries = 1;; tries++) {
    const leftMs = run.budgetMs - (clock.now() - startedMs);
    try {
      const value = await run.attempt(
        Math.max(MIN_ATTEMPT_MS, Math.min(run.attemptTimeoutMs, leftMs)),
      );
      return { ok: true, value, tries };
    } catch (error) {
      const failure = run.failureOf(error);
      if (failure === undefined) throw error;
      const elapsedMs = clock.now() - startedMs;
      const delayMs = run.signal?.aborted ? undefined : nextRetryDelayMs({
        failure,
        tries,
        elapsedMs,
        budgetMs: run.budgetMs,
        random: clock.random(),
      });
      if (delayMs === undefined) return { ok: false, error, tries, elapsedMs };
      run.onRetry?.({ error, tries, delayMs });
      await clock.sleep(delayMs, run.signal);
      if (run.signal?.aborted) {
        return { ok: false, error, tries, elapsedMs: clock.now() - startedMs };
      }
    }
  }
}
