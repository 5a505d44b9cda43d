/**
 * A fake Kubernetes API server for tests: Pods, Secrets and Jobs with create
 * (admission.ts), get, list, watch (watch_stream.ts: streamed JSON events,
 * resourceVersion, 410 Gone, field and label selectors from selectors.ts),
 * delete (deletion.ts: grace periods, propagation policies) and pods/log
 * (pod_logs.ts), bearer-token authentication, optional RBAC
 * (request_routing.ts), `Status` bodies shaped like the real server's, and
 * injected transient failures (fault_injection.ts). Served over HTTPS with a
 * test CA, as a cluster would be, behind a relay whose connections tests can
 * cut (link_relay.ts). This module ties those together and is what tests use.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { apiVersionOf, type KObject, type Resource, RESOURCES } from "./api_objects.ts";
import { failure, json, notFound } from "./api_responses.ts";
import { createObject } from "./admission.ts";
import { deleteObject } from "./deletion.ts";
import { FaultInjector, type FaultSpec } from "./fault_injection.ts";
import { LinkRelay } from "./link_relay.ts";
import { ObjectStore, type StoreEvent } from "./object_store.ts";
import { PodLogs } from "./pod_logs.ts";
import { RequestLog, type RequestRecord } from "./request_log.ts";
import {
  allowedBy,
  forbidden,
  type RbacRule,
  readBody,
  type Route,
  routeOf,
} from "./request_routing.ts";
import { selectorOf } from "./selectors.ts";
import { WATCH_RESET_MESSAGE, WatchHub } from "./watch_stream.ts";

export type { KObject, Resource } from "./api_objects.ts";
export type { StoreEvent } from "./object_store.ts";
export type { RequestRecord } from "./request_log.ts";
export type { RbacRule } from "./request_routing.ts";

/** Settings of a {@linkcode FakeApiServer}. */
export interface FakeApiServerOptions {
  /** The bearer token clients must present. */
  token: string;
  /** When given, only what these rules allow is permitted (403 otherwise). */
  rbac?: RbacRule[];
  /** The user named in 403 messages. */
  user?: string;
}

const TLS_DIR = fileURLToPath(new URL("./tls/", import.meta.url));

/** The CA that signed the fake server's certificate, PEM. */
export const TEST_CA_PEM = Deno.readTextFileSync(`${TLS_DIR}ca.crt`);

/** The fake API server; see the module documentation. */
export class FakeApiServer {
  #options: FakeApiServerOptions;
  #server: Deno.HttpServer<Deno.NetAddr>;
  #store = new ObjectStore();
  // Made before anything else subscribes to the store, so watches see each change first.
  #watches = new WatchHub(this.#store);
  #logs = new PodLogs();
  #log = new RequestLog();
  #relay: LinkRelay;
  #faults = new FaultInjector();
  /** Every request served, in order. */
  readonly requests: RequestRecord[] = this.#log.records;
  /** `group/resource/verb` of every permitted request, for comparing with the Role. */
  readonly used = new Set<string>();

  private constructor(options: FakeApiServerOptions) {
    this.#options = options;
    this.#server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      cert: Deno.readTextFileSync(`${TLS_DIR}server.crt`),
      key: Deno.readTextFileSync(`${TLS_DIR}server.key`),
      onListen: () => {},
      // A watch reset on purpose errors its body, which Deno.serve reports here; only
      // other errors are news (Deno's default prints every one with a stack trace).
      onError: (error) => {
        const reset = error instanceof Error && error.message === WATCH_RESET_MESSAGE;
        if (!reset) console.error("fake API server:", error);
        return new Response("Internal Server Error\n", { status: 500 });
      },
    }, (request, info) => this.#handle(request, info.remoteAddr.port));
    this.#relay = new LinkRelay(this.#server.addr.port);
  }

  /** Starts a server on a free port of 127.0.0.1. */
  static start(options: FakeApiServerOptions): FakeApiServer {
    return new FakeApiServer(options);
  }

  /** The server's base URL. */
  get url(): string {
    return `https://127.0.0.1:${this.#relay.port}`;
  }

  /** The bearer token clients must present. */
  get token(): string {
    return this.#options.token;
  }

  /** A kubeconfig for this server, as YAML. */
  kubeconfig(namespace: string): string {
    return [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- name: fake",
      "  cluster:",
      `    server: ${this.url}`,
      `    certificate-authority-data: ${btoa(TEST_CA_PEM)}`,
      "users:",
      "- name: builder",
      "  user:",
      `    token: ${this.#options.token}`,
      "contexts:",
      "- name: fake",
      "  context:",
      "    cluster: fake",
      "    user: builder",
      `    namespace: ${namespace}`,
      "current-context: fake",
      "",
    ].join("\n");
  }

  /** Stops serving; open watches end. */
  async close(): Promise<void> {
    this.#watches.endAll("clean");
    this.#relay.close();
    this.cutConnections();
    await this.#server.shutdown();
  }

  /** Cuts every client connection at the TCP level, mid-stream, as a dying server would. */
  cutConnections(): number {
    return this.#relay.cutAll();
  }

  // ---- the store, for in-process controllers and assertions ----

  /** An object, or undefined. */
  get(resource: Resource, namespace: string, name: string): KObject | undefined {
    return this.#store.get(resource, namespace, name);
  }

  /** Every object of a resource, optionally in one namespace. */
  list(resource: Resource, namespace?: string): KObject[] {
    return this.#store.list(resource, namespace);
  }

  /** Calls `listener` for every change; returns a function that stops it. */
  subscribe(listener: (event: StoreEvent) => void): () => void {
    return this.#store.subscribe(listener);
  }

  /** Stores a new object (as a controller would create it) and announces it. */
  insert(resource: Resource, object: KObject): KObject {
    return this.#store.insert(resource, object);
  }

  /** Changes a stored object in place and announces it; undefined when it is gone. */
  update(
    resource: Resource,
    namespace: string,
    name: string,
    change: (object: KObject) => void,
  ): KObject | undefined {
    return this.#store.update(resource, namespace, name, change);
  }

  /** Removes an object for good and announces it. */
  remove(resource: Resource, namespace: string, name: string): KObject | undefined {
    return this.#store.remove(resource, namespace, name);
  }

  /** Appends to a container's log (the kubelet stand-in calls this). */
  appendLog(podUid: string, container: string, bytes: Uint8Array): void {
    this.#logs.append(podUid, container, bytes);
  }

  // ---- test controls ----

  /**
   * Ends every open watch: "clean" finishes the response as a server does at
   * its timeout; "reset" breaks the response off mid-stream.
   */
  dropWatches(mode: "clean" | "reset"): number {
    return this.#watches.endAll(mode);
  }

  /** How many watches are open. */
  get openWatches(): number {
    return this.#watches.size;
  }

  /** Forgets the event history, so resuming a watch from an older version gets 410 Gone. */
  compact(): void {
    this.#store.compact();
  }

  /** Holds back requests that `test` accepts (before they are served) until `until` settles. */
  hold(test: (record: RequestRecord) => boolean, until: Promise<unknown>): void {
    this.#log.hold(test, until);
  }

  /**
   * Makes the next requests of a kind fail the way real API servers fail
   * transiently (see fault_injection.ts); each spec hits `count` requests.
   */
  injectFaults(...specs: FaultSpec[]): void {
    this.#faults.add(...specs);
  }

  /** Disarms every injected fault. */
  clearFaults(): void {
    this.#faults.clear();
  }

  /** Resolves with the first request (made or to come) that `test` accepts. */
  waitForRequest(test: (record: RequestRecord) => boolean): Promise<RequestRecord> {
    return this.#log.waitFor(test);
  }

  /** Resolves with the first store event (to come) that `test` accepts. */
  waitForEvent(test: (event: StoreEvent) => boolean): Promise<StoreEvent> {
    return this.#store.waitForEvent(test);
  }

  // ---- HTTP ----

  async #handle(request: Request, linkPort: number): Promise<Response> {
    const url = new URL(request.url);
    const route = routeOf(request.method, url);
    const base = {
      receivedMs: performance.now(),
      method: request.method,
      path: url.pathname,
      query: url.searchParams,
      verb: "",
      resource: "",
      group: "",
    };
    if (request.headers.get("authorization") !== `Bearer ${this.#options.token}`) {
      this.#log.add({ ...base, status: 401 });
      return failure(401, "Unauthorized", "Unauthorized");
    }
    if (route === undefined) {
      this.#log.add({ ...base, status: 404 });
      return failure(404, "NotFound", "the server could not find the requested resource");
    }
    const { verb, fullResource: resource, group, name } = route;
    const read = await readBody(request);
    if (read === "invalid") {
      this.#log.add({ ...base, verb, resource, group, name, status: 400 });
      return failure(400, "BadRequest", "the body of the request was in an unknown format");
    }
    const pending = { ...base, verb, resource, group, name, status: 0, body: read.body };
    if (!allowedBy(this.#options.rbac, route)) {
      this.#log.add({ ...pending, status: 403 });
      return forbidden(
        this.#options.user ?? "system:serviceaccount:builds:phonehome-builder",
        route,
      );
    }
    this.used.add(`${group}/${resource}/${verb}`);
    await this.#log.holdsReleased(pending);
    const fault = this.#faults.take(pending);
    if (fault?.response !== undefined) {
      this.#log.add({ ...pending, status: fault.response.status, fault: fault.kind });
      return fault.response;
    }
    if (fault?.kind === "reset") {
      this.#log.add({ ...pending, status: 0, fault: fault.kind });
      return this.#cutLink(linkPort);
    }
    let response: Response;
    try {
      response = this.#serve(route, url, read.body);
    } catch (error) {
      response = failure(400, "BadRequest", (error as Error).message);
    }
    if (fault?.kind === "lostAnswer") {
      this.#log.add({ ...pending, status: response.status, fault: fault.kind });
      await response.body?.cancel();
      return this.#cutLink(linkPort);
    }
    this.#log.add({ ...pending, status: response.status });
    return response;
  }

  /** Cuts the connection a request came in on; the answer returned never arrives. */
  #cutLink(port: number): Response {
    this.#relay.cut(port);
    return new Response(null, { status: 502 });
  }

  #serve(route: Route, url: URL, body: unknown): Response {
    const { verb, resource, namespace, name } = route;
    if (route.subresource === "log") {
      return this.#logs.serve(this.#store, namespace, name ?? "", url);
    }
    switch (verb) {
      case "create":
        return createObject(this.#store, resource, namespace, body);
      case "get": {
        const object = this.get(resource, namespace, name ?? "");
        return object === undefined ? notFound(resource, name) : json(object);
      }
      case "list": {
        const matches = selectorOf(url, resource);
        return json({
          kind: `${RESOURCES[resource].kind}List`,
          apiVersion: apiVersionOf(resource),
          metadata: { resourceVersion: String(this.#store.resourceVersion) },
          items: this.list(resource, namespace).filter(matches),
        });
      }
      case "watch":
        return this.#watches.open(resource, namespace, url);
      case "delete":
        return deleteObject(this.#store, resource, namespace, name ?? "", url, body);
      default:
        return failure(
          405,
          "MethodNotAllowed",
          `the server does not allow this method on the requested resource`,
        );
    }
  }
}
