/**
 * Watching the build's pod: list once, then watch from the list's resource
 * version, resume from the last version seen whenever a watch ends, re-list
 * on 410 Gone, and abandon any watch that outlives its own timeout, because a
 * connection that dies silently never ends the client's watch under Deno.
 * Failures are retried without end; like the API calls' retries, each is a
 * line only with --verbose, and the trouble is reported once it has lasted the
 * retry budget.
 *
 * @module
 */

import { formatDuration } from "../../format.ts";
import type { Timer } from "../../timing.ts";
import type { KubeClient } from "./client.ts";
import { type PodView, readPod } from "./pod_status.ts";

/**
 * How long past its own timeout a watch may stay open before it is abandoned
 * (at most; half the timeout for short ones).
 */
const WATCH_SLACK_MS = 5_000;

/** Longest pause between retries of a failing list or watch. */
const MAX_RETRY_PAUSE_MS = 5_000;

/** What the watcher reports. */
export interface PodWatchListener {
  /** A full list of the matching pods: the first, and after every re-list. */
  onList(pods: PodView[]): void;
  /** A pod was added or changed. */
  onPod(pod: PodView): void;
  /** A pod was deleted from the API. */
  onDeleted(pod: PodView): void;
  /** The API has kept failing for the retry budget; the watcher keeps retrying. */
  onTrouble(message: string): void;
}

/** Settings of a {@linkcode PodWatcher}. */
export interface PodWatcherOptions {
  client: KubeClient;
  /** Which pods: a field selector on the name for a Pod, a label selector for a Job's. */
  selector: { fieldSelector?: string; labelSelector?: string };
  /** The container whose state matters. */
  containerName: string;
  /** How long each watch request lasts (timeoutSeconds). */
  watchTimeoutMs: number;
  /** First pause before a retry; it doubles up to 5 s. */
  tickMs: number;
  listener: PodWatchListener;
}

type WatchEnd = "ended" | "expired" | "abandoned" | "stopped";

class WatchFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WatchFailure";
  }
}

function statusCodeOf(error: unknown): number | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const code = (error as Record<string, unknown>).statusCode ??
    (error as Record<string, unknown>).code;
  return typeof code === "number" ? code : undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Follows the build's pod through the API until stopped. */
export class PodWatcher {
  #options: PodWatcherOptions;
  #resourceVersion: string | undefined;
  #stopped = false;
  #endCurrent: (() => void) | undefined;
  #pauseTimer: Timer | undefined;
  #wakePause: (() => void) | undefined;
  #loop: Promise<void> | undefined;

  /** Creates a watcher; {@linkcode start} begins the work. */
  constructor(options: PodWatcherOptions) {
    this.#options = options;
  }

  /** Starts listing and watching in the background. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Stops watching; resolves once the loop has returned. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#endCurrent?.();
    clearTimeout(this.#pauseTimer);
    this.#wakePause?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { client } = this.#options;
    let failures = 0;
    let failingSinceMs: number | undefined;
    let reported = false;
    while (!this.#stopped) {
      try {
        if (this.#resourceVersion === undefined) await this.#list();
        if (this.#stopped) return;
        const end = await this.#watchOnce();
        if (end === "expired") this.#resourceVersion = undefined;
        failures = 0;
        failingSinceMs = undefined;
        reported = false;
      } catch (error) {
        if (this.#stopped) return;
        failures++;
        failingSinceMs ??= performance.now();
        const pauseMs = Math.min(
          this.#options.tickMs * 2 ** Math.min(failures - 1, 16),
          MAX_RETRY_PAUSE_MS,
        );
        if (!reported && performance.now() - failingSinceMs >= client.retryBudgetMs) {
          reported = true;
          this.#options.listener.onTrouble(
            `Watching the build pod keeps failing (${describe(error)}); retrying. The build's ` +
              `output and result do not depend on it.`,
          );
        } else {
          client.onRetry?.(
            `Watching the build pod: ${describe(error)}; trying again in ` +
              `${formatDuration(pauseMs)} (try ${failures + 1}).`,
          );
        }
        await new Promise<void>((resolve) => {
          this.#wakePause = resolve;
          this.#pauseTimer = setTimeout(resolve, pauseMs);
        });
      }
    }
  }

  async #list(): Promise<void> {
    const list = await this.#options.client.listPods(this.#options.selector);
    if (this.#stopped) return;
    this.#resourceVersion = list.resourceVersion;
    this.#options.listener.onList(
      list.items.map((item) => readPod(item, this.#options.containerName)),
    );
  }

  #watchOnce(): Promise<WatchEnd> {
    const { client, selector, watchTimeoutMs, listener, containerName } = this.#options;
    return new Promise<WatchEnd>((resolve, reject) => {
      let settled = false;
      let controller: AbortController | undefined;
      const finish = (settle: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(watchdog);
        this.#endCurrent = undefined;
        controller?.abort();
        settle();
      };
      const watchdog = setTimeout(() => {
        finish(() => resolve("abandoned"));
      }, watchTimeoutMs + Math.min(WATCH_SLACK_MS, watchTimeoutMs / 2));
      this.#endCurrent = () => finish(() => resolve("stopped"));
      client.watch({
        path: `/api/v1/namespaces/${encodeURIComponent(client.namespace)}/pods`,
        ...selector,
        resourceVersion: this.#resourceVersion,
        timeoutSeconds: Math.ceil(watchTimeoutMs / 1000),
        onEvent: (event) => {
          if (settled) return;
          if (event.type === "ERROR") {
            const code = typeof event.object.code === "number" ? event.object.code : undefined;
            if (code === 410) {
              finish(() => resolve("expired"));
            } else {
              const message = typeof event.object.message === "string"
                ? event.object.message
                : JSON.stringify(event.object);
              finish(() => reject(new WatchFailure(`the watch reported an error: ${message}`)));
            }
            return;
          }
          const metadata = event.object.metadata as Record<string, unknown> | undefined;
          if (typeof metadata?.resourceVersion === "string") {
            this.#resourceVersion = metadata.resourceVersion;
          }
          if (event.type === "BOOKMARK") return;
          const pod = readPod(event.object, containerName);
          if (event.type === "DELETED") listener.onDeleted(pod);
          else listener.onPod(pod);
        },
        onDone: (error) => {
          if (error === undefined) {
            finish(() => resolve("ended"));
          } else if (statusCodeOf(error) === 410) {
            finish(() => resolve("expired"));
          } else {
            finish(() => reject(new WatchFailure(`the watch failed: ${describe(error)}`)));
          }
        },
      }).then(
        (abort) => {
          controller = abort;
          if (settled) abort.abort();
        },
        (error) => finish(() => reject(error)),
      );
    });
  }
}
