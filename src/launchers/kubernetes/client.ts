/**
 * The one door to the Kubernetes API: the official client on the credentials
 * and HTTP/1.1 connections of kubeconfig.ts. Every request has a deadline and
 * goes through the one retry policy (retry.ts); creation is safe to retry; the
 * API's refusals become {@linkcode KubernetesApiError} carrying the API's own
 * message.
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import { fetch } from "undici";
import type { Timer } from "../../timing.ts";
import { attemptError, finalError, retryLine, timeoutError } from "./api_errors.ts";
import { KubernetesApiError } from "./errors.ts";
import {
  type ClusterAccess,
  type Http1KubeConfig,
  loadKubeConfig,
  REQUEST_TIMEOUT_MS,
} from "./kubeconfig.ts";
import { RETRYABLE_STATUSES, retrying } from "./retry.ts";
import {
  carriesLabels,
  type CreatedKind,
  type ObjectSummary,
  readSummary,
  type RetrySettings,
  type WatchRequest,
} from "./api_types.ts";

export type { ClusterAccess } from "./kubeconfig.ts";
export type { ObjectSummary, RetrySettings } from "./api_types.ts";

/** How much longer than the watch's own timeout the client's idle timer waits. */
const WATCH_IDLE_SLACK_SECONDS = 30;

/** Typed access to the few API calls phonehome makes, in one namespace. */
export class KubeClient {
  #config: Http1KubeConfig;
  #core: k8s.CoreV1Api;
  #batch: k8s.BatchV1Api;
  #server: string;
  #retry: RetrySettings;
  /** The namespace every call works in. */
  readonly namespace: string;
  /** Where a line about each retry goes (with --verbose); undefined says nothing. */
  onRetry: ((line: string) => void) | undefined;

  private constructor(config: Http1KubeConfig, namespace: string, retry: RetrySettings) {
    this.#config = config;
    this.namespace = namespace;
    this.#retry = retry;
    this.#server = config.getCurrentCluster()?.server ?? "";
    this.#core = config.makeApiClient(k8s.CoreV1Api);
    this.#batch = config.makeApiClient(k8s.BatchV1Api);
  }

  /**
   * Loads credentials: the kubeconfig file when one is given, otherwise the
   * pod's service account. Throws {@linkcode UsageError} when neither works.
   */
  static load(access: ClusterAccess, retry: RetrySettings): KubeClient {
    const { config, namespace } = loadKubeConfig(access);
    return new KubeClient(config, namespace, retry);
  }

  /** How long all tries of one call may take together. */
  get retryBudgetMs(): number {
    return this.#retry.budgetMs;
  }

  /** The API server's URL, for messages. */
  get server(): string {
    return this.#server;
  }

  /**
   * Makes one API call under the retry policy: each try has a deadline, and a
   * failure that stands names the call, the answer and the tries made.
   */
  async #call<T>(what: string, request: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    let mayHaveTakenEffect = false;
    const result = await retrying({
      attempt: (timeoutMs) => this.#try(what, request, timeoutMs),
      failureOf: (error) => {
        if (!(error instanceof KubernetesApiError)) return undefined;
        mayHaveTakenEffect ||= error.mayHaveTakenEffect;
        return error;
      },
      budgetMs: this.#retry.budgetMs,
      attemptTimeoutMs: REQUEST_TIMEOUT_MS,
      signal,
      onRetry: (notice) => this.onRetry?.(retryLine(what, notice)),
    });
    if (result.ok) return result.value;
    throw finalError(what, result.error as KubernetesApiError, { ...result, mayHaveTakenEffect });
  }

  /** One try: the request within `timeoutMs`; a failure is read as a KubernetesApiError. */
  async #try<T>(what: string, request: () => Promise<T>, timeoutMs: number): Promise<T> {
    let timer: Timer | undefined;
    // Under Deno an aborted fetch may never settle, so the deadline cannot rely on the signal.
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(timeoutError(what, this.#server, timeoutMs)), timeoutMs);
    });
    try {
      return await Promise.race([request(), timeout]);
    } catch (error) {
      throw attemptError(what, error, this.#server);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Creates an object under the retry policy. A retried create may find the
   * object already there, made by a try whose answer was lost: when it carries
   * this build's labels that counts as success; anything else of that name is
   * an error.
   */
  async #create<T extends k8s.KubernetesObject>(
    kind: CreatedKind,
    body: T,
    request: () => Promise<T>,
  ): Promise<T> {
    const name = body.metadata?.name ?? "";
    try {
      return await this.#call(`Creating ${kind} ${name}`, request);
    } catch (error) {
      if (!(error instanceof KubernetesApiError) || error.status !== 409 || error.tries < 2) {
        throw error;
      }
      const labels = body.metadata?.labels ?? {};
      const existing = await this.#findByName(kind, name);
      if (existing !== undefined && carriesLabels(existing, labels)) return existing as T;
      const why = existing === undefined
        ? "it was gone again when read back"
        : `its labels differ from ${Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(",")}`;
      throw new KubernetesApiError(
        `${error.message} It is not this build's (${why}); check what else creates objects ` +
          `named like phonehome's in namespace ${this.namespace}.`,
        {
          status: 409,
          reason: error.reason,
          problem: error.problem,
          tries: error.tries,
          mayHaveTakenEffect: false,
        },
      );
    }
  }

  /** The object of a kind with this name, read with a list (a verb the Role has), if any. */
  async #findByName(kind: CreatedKind, name: string): Promise<k8s.KubernetesObject | undefined> {
    const namespace = this.namespace;
    const fieldSelector = `metadata.name=${name}`;
    const what = `Reading ${kind} ${name}`;
    const list: { items: k8s.KubernetesObject[] } = kind === "secret"
      ? await this.#call(what, () => this.#core.listNamespacedSecret({ namespace, fieldSelector }))
      : kind === "pod"
      ? await this.#call(what, () => this.#core.listNamespacedPod({ namespace, fieldSelector }))
      : await this.#call(what, () => this.#batch.listNamespacedJob({ namespace, fieldSelector }));
    return list.items.find((item) => item.metadata?.name === name);
  }

  /**
   * Creates a Secret. Like the other creates, a retry that finds the object
   * already made, with the same labels, by a try whose answer was lost counts
   * as success.
   */
  async createSecret(secret: k8s.V1Secret): Promise<void> {
    await this.#create(
      "secret",
      secret,
      () => this.#core.createNamespacedSecret({ namespace: this.namespace, body: secret }),
    );
  }

  /** Creates a Pod and returns it as the API stored it. */
  createPod(pod: k8s.V1Pod): Promise<k8s.V1Pod> {
    return this.#create(
      "pod",
      pod,
      () => this.#core.createNamespacedPod({ namespace: this.namespace, body: pod }),
    );
  }

  /** Creates a Job and returns it as the API stored it. */
  createJob(job: k8s.V1Job): Promise<k8s.V1Job> {
    return this.#create(
      "job",
      job,
      () => this.#batch.createNamespacedJob({ namespace: this.namespace, body: job }),
    );
  }

  async #deleteIgnoringAbsence(what: string, request: () => Promise<unknown>): Promise<boolean> {
    try {
      await this.#call(what, request);
      return true;
    } catch (error) {
      if (error instanceof KubernetesApiError && error.status === 404) return false;
      throw error;
    }
  }

  /** Deletes a Pod; false when it was already gone. */
  deletePod(name: string, gracePeriodSeconds?: number): Promise<boolean> {
    return this.#deleteIgnoringAbsence(
      `Deleting pod ${name}`,
      () => this.#core.deleteNamespacedPod({ name, namespace: this.namespace, gracePeriodSeconds }),
    );
  }

  /**
   * Deletes a Job and, through background propagation, its pods; false when
   * it was already gone. Without a propagation policy the pods would be orphaned
   * and keep running.
   */
  deleteJob(name: string): Promise<boolean> {
    return this.#deleteIgnoringAbsence(
      `Deleting job ${name}`,
      () =>
        this.#batch.deleteNamespacedJob({
          name,
          namespace: this.namespace,
          propagationPolicy: "Background",
        }),
    );
  }

  /** Deletes a Secret; false when it was already gone. */
  deleteSecret(name: string): Promise<boolean> {
    return this.#deleteIgnoringAbsence(
      `Deleting secret ${name}`,
      () => this.#core.deleteNamespacedSecret({ name, namespace: this.namespace }),
    );
  }

  /** Reads a Job; undefined when it does not exist. */
  async readJob(name: string): Promise<k8s.V1Job | undefined> {
    try {
      return await this.#call(
        `Reading job ${name}`,
        () => this.#batch.readNamespacedJob({ name, namespace: this.namespace }),
      );
    } catch (error) {
      if (error instanceof KubernetesApiError && error.status === 404) return undefined;
      throw error;
    }
  }

  /**
   * Lists pods as plain JSON, the shape watch events have, with the list's
   * resource version to start a watch from.
   */
  async listPods(
    selector: { fieldSelector?: string; labelSelector?: string },
  ): Promise<{ items: Record<string, unknown>[]; resourceVersion: string }> {
    const list = await this.#call(
      "Listing the build's pods",
      () => this.#core.listNamespacedPod({ namespace: this.namespace, ...selector }),
    );
    return {
      // The typed models keep the API's field names, so a JSON round trip gives the
      // same shape as a watch event (dates become strings).
      items: list.items.map((pod) => JSON.parse(JSON.stringify(pod)) as Record<string, unknown>),
      resourceVersion: list.metadata?.resourceVersion ?? "",
    };
  }

  /** Pods, Jobs and Secrets carrying `labelSelector`, for garbage collection. */
  async listLabelled(labelSelector: string): Promise<{
    pods: ObjectSummary[];
    jobs: ObjectSummary[];
    secrets: ObjectSummary[];
  }> {
    const namespace = this.namespace;
    const [pods, jobs, secrets] = await Promise.all([
      this.#call(
        "Listing build pods",
        () => this.#core.listNamespacedPod({ namespace, labelSelector }),
      ),
      this.#call(
        "Listing build jobs",
        () => this.#batch.listNamespacedJob({ namespace, labelSelector }),
      ),
      this.#call(
        "Listing build secrets",
        () => this.#core.listNamespacedSecret({ namespace, labelSelector }),
      ),
    ]);
    return {
      pods: pods.items.map((item) => readSummary(item.metadata)),
      jobs: jobs.items.map((item) => readSummary(item.metadata)),
      secrets: secrets.items.map((item) => readSummary(item.metadata)),
    };
  }

  /**
   * Starts one watch request; resolves once the API has answered with its
   * headers. The caller must keep a watchdog: under Deno a connection that is
   * reset or silently dies may never end the watch.
   */
  async watch(request: WatchRequest): Promise<AbortController> {
    const watch = new k8s.Watch(this.#config);
    // The client aborts a watch after 30 s without data, shorter than the watch itself
    // lasts when the pod is quiet; the caller's watchdog covers a dead connection instead.
    (watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs =
      (request.timeoutSeconds + WATCH_IDLE_SLACK_SECONDS) * 1000;
    const params: Record<string, string | number | boolean | undefined> = {
      fieldSelector: request.fieldSelector,
      labelSelector: request.labelSelector,
      resourceVersion: request.resourceVersion,
      timeoutSeconds: request.timeoutSeconds,
      allowWatchBookmarks: true,
    };
    return await watch.watch(
      request.path,
      params,
      (type: string, object: unknown) => {
        if (typeof object === "object" && object !== null) {
          request.onEvent({ type, object: object as Record<string, unknown> });
        }
      },
      (error: unknown) => request.onDone(error ?? undefined),
    );
  }

  /**
   * Opens a container's log as a byte stream, at most `limitBytes` of it;
   * undefined when the API has none (the pod is gone, or never ran). Transient
   * failures are retried until `signal` aborts. The typed call cannot do this:
   * the API answers 204 with no body for a pod that was never scheduled, which
   * the typed call fails to parse.
   */
  openLog(
    options: { pod: string; container: string; limitBytes: number; signal: AbortSignal },
  ): Promise<ReadableStream<Uint8Array> | undefined> {
    const url = new URL(
      `${this.#server}/api/v1/namespaces/${encodeURIComponent(this.namespace)}/pods/` +
        `${encodeURIComponent(options.pod)}/log`,
    );
    url.searchParams.set("container", options.container);
    url.searchParams.set("limitBytes", String(options.limitBytes));
    return this.#call(`Reading the log of pod ${options.pod}`, async () => {
      const context = new k8s.RequestContext(url.toString(), k8s.HttpMethod.GET);
      context.setSignal(options.signal);
      await this.#config.applySecurityAuthentication(context);
      const response = await fetch(url, {
        headers: context.getHeaders(),
        dispatcher: context.getDispatcher(),
        signal: options.signal,
      });
      if (RETRYABLE_STATUSES.has(response.status)) {
        // Read as the typed calls read a refusal, so that it is retried like theirs.
        throw new k8s.ApiException(
          response.status,
          "The log could not be read.",
          await response.text(),
          Object.fromEntries(response.headers),
        );
      }
      if (response.status !== 200 || response.body === null) {
        await response.body?.cancel();
        return undefined;
      }
      return response.body as ReadableStream<Uint8Array>;
    }, options.signal);
  }
}
