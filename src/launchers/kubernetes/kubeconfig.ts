/**
 * Credentials and connections: loads a kubeconfig or the in-cluster service
 * account into the official client's configuration, and sends every request
 * through one HTTP/1.1 connection pool with a deadline.
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import { Agent, type Dispatcher, ProxyAgent } from "undici";
import { errorMessage, UsageError } from "../../errors.ts";

/** How long one try of an ordinary API request may take (less when the retry budget is shorter). */
export const REQUEST_TIMEOUT_MS = 30_000;

/** How long an idle kept-alive connection waits before TCP keepalive probes, as client-go does. */
const KEEPALIVE_INITIAL_DELAY_MS = 30_000;

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
export class Http1KubeConfig extends k8s.KubeConfig {
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

/**
 * Loads credentials: the kubeconfig file when one is given, otherwise the
 * pod's service account, with the namespace to work in. Throws
 * {@linkcode UsageError} when neither works.
 */
export function loadKubeConfig(
  access: ClusterAccess,
): { config: Http1KubeConfig; namespace: string } {
  const config = new Http1KubeConfig();
  let namespace = access.namespace;
  if (access.kubeconfig !== undefined) {
    try {
      config.loadFromFile(access.kubeconfig);
    } catch (error) {
      throw new UsageError(
        `Cannot load the kubeconfig ${access.kubeconfig}: ${errorMessage(error)}.`,
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
  return { config, namespace: namespace || "default" };
}
