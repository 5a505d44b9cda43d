/**
 * The one door to the Kubernetes API: loads in-cluster or kubeconfig
 * credentials into the official client, forces HTTP/1.1, gives every request a
 * deadline, and turns the API's refusals into {@linkcode KubernetesApiError}
 * carrying the API's own message.
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import { Agent, type Dispatcher, fetch, ProxyAgent } from "undici";
import { UsageError } from "../../errors.ts";
import { formatDuration } from "../../format.ts";
import type { Timer } from "../../timing.ts";
import { KubernetesApiError } from "./errors.ts";

/** How long one ordinary API request may take. */
const REQUEST_TIMEOUT_MS = 30_000;

/** How long an idle kept-alive connection waits before TCP keepalive probes, as client-go does. */
const KEEPALIVE_INITIAL_DELAY_MS = 30_000;

/** How much longer than the watch's own timeout the client's idle timer waits. */
const WATCH_IDLE_SLACK_SECONDS = 30;

/** Where a pod's service account credentials are mounted. */
const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** Where to find the cluster and how to log in. */
export interface ClusterAccess {
  /** A kubeconfig file; without it the in-cluster service account is used. */
  kubeconfig?: string;
  /** The kubeconfig context to use instead of its current one. */
  context?: string;
  /** The namespace to work in; defaults to the context's or the service account's. */
  namespace?: string;
}

/** The metadata phonehome reads from any object it lists. */
export interface ObjectSummary {
  name: string;
  /** When the object was created, in epoch milliseconds; NaN when unknown. */
  createdMs: number;
  /** Kinds of the objects that own this one, such as `Job`. */
  ownerKinds: string[];
}

/** One event of a watch, as the API streams it (plain JSON, not deserialized). */
export interface WatchEvent {
  /** ADDED, MODIFIED, DELETED, BOOKMARK or ERROR. */
  type: string;
  /** The object, or a `Status` for ERROR. */
  object: Record<string, unknown>;
}

/** Parameters of one watch request. */
export interface WatchRequest {
  /** Path of the collection, such as `/api/v1/namespaces/ns/pods`. */
  path: string;
  fieldSelector?: string;
  labelSelector?: string;
  /** Resume after this resource version. */
  resourceVersion?: string;
  /** The server ends the watch after this long. */
  timeoutSeconds: number;
  /** Called for every event. */
  onEvent: (event: WatchEvent) => void;
  /** Called once when the watch ends: cleanly (undefined) or with the error. */
  onDone: (error: unknown) => void;
}

function tlsOptionsOf(options: Record<string, unknown>): Record<string, unknown> {
  const tls: Record<string, unknown> = {};
  for (
    const key of ["ca", "cert", "key", "pfx", "passphrase", "rejectUnauthorized", "servername"]
  ) {
    if (options[key] !== undefined) tls[key] = options[key];
  }
  return tls;
}

/**
 * A kubeconfig whose requests all go through one HTTP/1.1 connection pool.
 * The client's own dispatcher lets undici negotiate HTTP/2, and under Deno a
 * server closing an HTTP/2 connection can crash the process; a fresh pool per
 * request (what the client builds) would also leak connections.
 */
class Http1KubeConfig extends k8s.KubeConfig {
  #dispatcher: Promise<Dispatcher> | undefined;

  /** Adds the credentials, then swaps in the HTTP/1.1 dispatcher and a request deadline. */
  override async applySecurityAuthentication(context: k8s.RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    this.#dispatcher ??= this.#createDispatcher();
    context.setDispatcher(await this.#dispatcher);
    if (context.getSignal() === undefined) {
      context.setSignal(AbortSignal.timeout(REQUEST_TIMEOUT_MS));
    }
  }

  async #createDispatcher(): Promise<Dispatcher> {
    const options: Record<string, unknown> = {};
    await this.applyToHTTPSOptions(options);
    const tls = tlsOptionsOf(options);
    const proxy = this.getCurrentCluster()?.proxyUrl;
    if (proxy !== undefined && proxy !== "") {
      if (proxy.startsWith("socks")) {
        throw new UsageError(
          `The kubeconfig names the SOCKS proxy ${proxy}, which phonehome does not support; ` +
            `use an HTTP proxy or none.`,
        );
      }
      return new ProxyAgent({ uri: proxy, requestTls: tls, allowH2: false });
    }
    return new Agent({
      allowH2: false,
      connect: { ...tls, keepAlive: true, keepAliveInitialDelay: KEEPALIVE_INITIAL_DELAY_MS },
    });
  }
}

interface ApiStatus {
  message?: string;
  reason?: string;
  code?: number;
}

function parseStatus(body: unknown): ApiStatus {
  let value = body;
  if (typeof body === "string") {
    try {
      value = JSON.parse(body);
    } catch {
      return { message: body.trim().slice(0, 500) || undefined };
    }
  }
  if (typeof value !== "object" || value === null) return {};
  const record = value as Record<string, unknown>;
  return {
    message: typeof record.message === "string" ? record.message : undefined,
    reason: typeof record.reason === "string" ? record.reason : undefined,
    code: typeof record.code === "number" ? record.code : undefined,
  };
}

function hintFor(status: number): string {
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

function errorText(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? ` (${error.cause.message})` : "";
    return `${error.message}${cause}`;
  }
  return String(error);
}

function readSummary(metadata: k8s.V1ObjectMeta | undefined): ObjectSummary {
  const created = metadata?.creationTimestamp as unknown;
  const createdMs = created instanceof Date
    ? created.getTime()
    : typeof created === "string"
    ? Date.parse(created)
    : NaN;
  return {
    name: metadata?.name ?? "",
    createdMs,
    ownerKinds: (metadata?.ownerReferences ?? []).map((owner) => owner.kind),
  };
}

/** Typed access to the few API calls phonehome makes, in one namespace. */
export class KubeClient {
  #config: Http1KubeConfig;
  #core: k8s.CoreV1Api;
  #batch: k8s.BatchV1Api;
  #server: string;
  /** The namespace every call works in. */
  readonly namespace: string;

  private constructor(config: Http1KubeConfig, namespace: string) {
    this.#config = config;
    this.namespace = namespace;
    this.#server = config.getCurrentCluster()?.server ?? "";
    this.#core = config.makeApiClient(k8s.CoreV1Api);
    this.#batch = config.makeApiClient(k8s.BatchV1Api);
  }

  /**
   * Loads credentials: the kubeconfig file when one is given, otherwise the
   * pod's service account. Throws {@linkcode UsageError} when neither works.
   */
  static load(access: ClusterAccess): KubeClient {
    const config = new Http1KubeConfig();
    let namespace = access.namespace;
    if (access.kubeconfig !== undefined) {
      try {
        config.loadFromFile(access.kubeconfig);
      } catch (error) {
        throw new UsageError(
          `Cannot load the kubeconfig ${access.kubeconfig}: ${errorText(error)}.`,
        );
      }
      if (access.context !== undefined) {
        if (config.getContextObject(access.context) === null) {
          throw new UsageError(
            `The kubeconfig ${access.kubeconfig} has no context ${JSON.stringify(access.context)}.`,
          );
        }
        config.setCurrentContext(access.context);
      }
      if (config.getCurrentCluster() === null) {
        throw new UsageError(
          `The kubeconfig ${access.kubeconfig} names no cluster for its current context; ` +
            `set current-context or --context.`,
        );
      }
      namespace ??= config.getContextObject(config.getCurrentContext())?.namespace;
    } else {
      if (!Deno.env.get("KUBERNETES_SERVICE_HOST") || !Deno.env.get("KUBERNETES_SERVICE_PORT")) {
        throw new UsageError(
          "Not running inside a Kubernetes pod (KUBERNETES_SERVICE_HOST is unset) and no " +
            "kubeconfig was given; set --kubeconfig or KUBECONFIG.",
        );
      }
      try {
        Deno.statSync(`${SERVICE_ACCOUNT_DIR}/token`);
      } catch {
        throw new UsageError(
          `No service account token at ${SERVICE_ACCOUNT_DIR}/token; mount the builder's ` +
            `service account (automountServiceAccountToken) or set --kubeconfig.`,
        );
      }
      config.loadFromCluster();
      namespace ??= config.getContextObject(config.getCurrentContext())?.namespace?.trim();
    }
    return new KubeClient(config, namespace || "default");
  }

  /** The API server's URL, for messages. */
  get server(): string {
    return this.#server;
  }

  async #call<T>(what: string, request: () => Promise<T>): Promise<T> {
    let timer: Timer | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new KubernetesApiError(
            `${what} failed: the Kubernetes API at ${this.#server} did not answer within ` +
              `${formatDuration(REQUEST_TIMEOUT_MS)}.`,
          ),
        );
      }, REQUEST_TIMEOUT_MS);
    });
    try {
      return await Promise.race([request(), timeout]);
    } catch (error) {
      if (error instanceof KubernetesApiError || error instanceof UsageError) throw error;
      if (error instanceof k8s.ApiException) {
        const status = parseStatus(error.body);
        const code = error.code as number;
        const reason = status.reason ?? (code === 401 ? "Unauthorized" : undefined);
        throw new KubernetesApiError(
          `${what} failed: ${status.message ?? reason ?? "no reason given"} (HTTP ${code}` +
            `${reason === undefined ? "" : `, ${reason}`}).${hintFor(code)}`,
          { status: code, reason, cause: error },
        );
      }
      throw new KubernetesApiError(
        `${what} failed: cannot reach the Kubernetes API at ${this.#server} ` +
          `(${errorText(error)}).`,
        { cause: error },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /** Creates a Secret. */
  async createSecret(secret: k8s.V1Secret): Promise<void> {
    const name = secret.metadata?.name ?? "";
    await this.#call(
      `Creating secret ${name}`,
      () => this.#core.createNamespacedSecret({ namespace: this.namespace, body: secret }),
    );
  }

  /** Creates a Pod and returns it as the API stored it. */
  createPod(pod: k8s.V1Pod): Promise<k8s.V1Pod> {
    return this.#call(
      `Creating pod ${pod.metadata?.name ?? ""}`,
      () => this.#core.createNamespacedPod({ namespace: this.namespace, body: pod }),
    );
  }

  /** Creates a Job and returns it as the API stored it. */
  createJob(job: k8s.V1Job): Promise<k8s.V1Job> {
    return this.#call(
      `Creating job ${job.metadata?.name ?? ""}`,
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
   * undefined when the API has none (the pod is gone, or never ran).
   * The typed call cannot do this: the API answers 204 with no body for a pod
   * that was never scheduled, which the typed call fails to parse.
   */
  async openLog(
    options: { pod: string; container: string; limitBytes: number; signal: AbortSignal },
  ): Promise<ReadableStream<Uint8Array> | undefined> {
    const url = new URL(
      `${this.#server}/api/v1/namespaces/${encodeURIComponent(this.namespace)}/pods/` +
        `${encodeURIComponent(options.pod)}/log`,
    );
    url.searchParams.set("container", options.container);
    url.searchParams.set("limitBytes", String(options.limitBytes));
    const context = new k8s.RequestContext(url.toString(), k8s.HttpMethod.GET);
    context.setSignal(options.signal);
    await this.#config.applySecurityAuthentication(context);
    const response = await fetch(url, {
      headers: context.getHeaders(),
      dispatcher: context.getDispatcher(),
      signal: options.signal,
    });
    if (response.status !== 200 || response.body === null) {
      await response.body?.cancel();
      return undefined;
    }
    return response.body as ReadableStream<Uint8Array>;
  }
}
