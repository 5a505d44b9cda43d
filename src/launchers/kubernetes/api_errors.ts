/**
 * Reading failed API requests: turns what one try threw (the API's `Status`
 * answer, a connection that failed, a try that ran out of time) into a
 * {@linkcode KubernetesApiError} that says what happened and what to check,
 * and words the retry lines and the final failure of a retried call.
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import { errorMessage, UsageError } from "../../errors.ts";
import { formatDuration } from "../../format.ts";
import { KubernetesApiError } from "./errors.ts";
import {
  isConnectFailure,
  isRetryable,
  isTransientNetworkError,
  parseRetryAfterMs,
  type RetryNotice,
} from "./retry.ts";

/** Most of a non-JSON answer quoted in a message. */
const MAX_QUOTED_CHARS = 300;

interface ApiStatus {
  message?: string;
  reason?: string;
  retryAfterSeconds?: number;
}

/** The text of a non-JSON answer: an HTML page's title (a proxy's error page), or the text. */
function plainAnswer(text: string): string | undefined {
  const title = /<title>([^<]*)<\/title>/i.exec(text)?.[1];
  const plain = (title ?? text.replace(/<[^>]*>/g, " ")).replace(/\s+/g, " ").trim();
  return plain.slice(0, MAX_QUOTED_CHARS) || undefined;
}

function parseStatus(body: unknown): ApiStatus {
  let value = body;
  if (typeof body === "string") {
    try {
      value = JSON.parse(body);
    } catch {
      return { message: plainAnswer(body) };
    }
  }
  if (typeof value !== "object" || value === null) return {};
  const record = value as Record<string, unknown>;
  const details = record.details as Record<string, unknown> | undefined;
  return {
    message: typeof record.message === "string" ? record.message : undefined,
    reason: typeof record.reason === "string" ? record.reason : undefined,
    retryAfterSeconds: typeof details?.retryAfterSeconds === "number"
      ? details.retryAfterSeconds
      : undefined,
  };
}

function hintFor(status: number | undefined): string {
  switch (status) {
    case 401:
      return " Check the service account token or the kubeconfig's credentials.";
    case 403:
      return " Check the builder's Role and RoleBinding (deploy/rbac.yaml).";
    case 422:
      return " Check the pod template and the flags that shape the pod.";
    default:
      return "";
  }
}

/**
 * What one try of `what` threw, as a {@linkcode KubernetesApiError}; a
 * {@linkcode UsageError} (a kubeconfig phonehome cannot use) is returned as is.
 */
export function attemptError(
  what: string,
  error: unknown,
  server: string,
): KubernetesApiError | UsageError {
  if (error instanceof KubernetesApiError || error instanceof UsageError) return error;
  if (error instanceof k8s.ApiException) {
    const code = error.code as number;
    const status = parseStatus(error.body);
    const reason = status.reason ?? (code === 401 ? "Unauthorized" : undefined);
    const headers = (error.headers ?? {}) as Record<string, string>;
    const retryAfterMs = parseRetryAfterMs(headers["retry-after"], Date.now()) ??
      (status.retryAfterSeconds === undefined ? undefined : status.retryAfterSeconds * 1000);
    const problem = `${status.message ?? reason ?? "no reason given"} (HTTP ${code}` +
      `${reason === undefined ? "" : `, ${reason}`})`;
    return new KubernetesApiError(`${what} failed: ${problem}.${hintFor(code)}`, {
      status: code,
      reason,
      retryAfterMs,
      problem,
      mayHaveTakenEffect: code >= 500,
      cause: error,
    });
  }
  const problem = `cannot reach the Kubernetes API at ${server} (${errorMessage(error)})`;
  return new KubernetesApiError(`${what} failed: ${problem}.`, {
    transient: isTransientNetworkError(error),
    problem,
    mayHaveTakenEffect: !isConnectFailure(error),
    cause: error,
  });
}

/** A try of `what` that got no answer within `timeoutMs`; worth retrying. */
export function timeoutError(what: string, server: string, timeoutMs: number): KubernetesApiError {
  const problem = `the Kubernetes API at ${server} did not answer within ` +
    formatDuration(Math.round(timeoutMs));
  return new KubernetesApiError(`${what} failed: ${problem}.`, { transient: true, problem });
}

/**
 * The failure that ends a call after `tries` tries: it names the call, the
 * last answer and the tries; a single try keeps its own message.
 */
export function finalError(
  what: string,
  last: KubernetesApiError,
  run: { tries: number; elapsedMs: number; mayHaveTakenEffect: boolean },
): KubernetesApiError {
  if (run.tries <= 1) return last;
  const hint = isRetryable(last)
    ? " The API kept failing for the whole retry budget (--api-retry-budget); check the API " +
      "server's health and load."
    : hintFor(last.status);
  return new KubernetesApiError(
    `${what} failed after ${run.tries} tries in ${formatDuration(Math.round(run.elapsedMs))}: ` +
      `${last.problem}.${hint}`,
    {
      status: last.status,
      reason: last.reason,
      retryAfterMs: last.retryAfterMs,
      transient: last.transient,
      problem: last.problem,
      tries: run.tries,
      mayHaveTakenEffect: run.mayHaveTakenEffect,
      cause: last.cause,
    },
  );
}

/** The line shown (with --verbose) before a retry of `what`. */
export function retryLine(what: string, notice: RetryNotice): string {
  const problem = notice.error instanceof KubernetesApiError
    ? notice.error.problem
    : errorMessage(notice.error);
  return `${what}: ${problem}; trying again in ${formatDuration(Math.round(notice.delayMs))} ` +
    `(try ${notice.tries + 1}).`;
}
