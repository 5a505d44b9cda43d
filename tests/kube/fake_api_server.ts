/**
 * A fake Kubernetes API server for tests: Pods, Secrets and Jobs with create,
 * get, list, watch (streamed JSON events, resourceVersion, 410 Gone, field and
 * label selectors), delete (grace periods, propagation policies) and pods/log,
 * bearer-token authentication, optional RBAC, `Status` bodies shaped like the
 * real server's, and injected transient failures (fault_injection.ts). Served
 * over HTTPS with a test CA, as a cluster would be.
 *
 * @module
 */

import { statusBody } from "./status.ts";
import { fileURLToPath } from "node:url";
import { FaultInjector, type FaultSpec } from "./fault_injection.ts";

/** A stored object: plain JSON as the API serves it. */
export type KObject = Record<string, unknown> & {
  metadata: Record<string, unknown> & { name: string; namespace: string };
};

/** The resources this server knows, by plural name. */
export type Resource = "pods" | "secrets" | "jobs";

const RESOURCES: Record<Resource, { group: string; version: string; kind: string }> = {
  pods: { group: "", version: "v1", kind: "Pod" },
  secrets: { group: "", version: "v1", kind: "Secret" },
  jobs: { group: "batch", version: "v1", kind: "Job" },
};

/** A change to the store, as watchers and in-process controllers see it. */
export interface StoreEvent {
  type: "ADDED" | "MODIFIED" | "DELETED";
  resource: Resource;
  object: KObject;
  resourceVersion: number;
}

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

/** One rule of a Role. */
export interface RbacRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

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

interface Watcher {
  resource: Resource;
  namespace: string;
  matches: (object: KObject) => boolean;
  send: (type: string, object: unknown) => void;
  end: (mode: "clean" | "reset") => void;
}

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function failure(
  code: number,
  reason: string,
  message: string,
  details?: Record<string, unknown>,
): Response {
  return json(statusBody(code, reason, message, details), code);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

/** Checks labels like the API does; returns the first problem. */
function labelProblem(labels: unknown, field: string): string | undefined {
  if (labels === undefined) return undefined;
  if (!isRecord(labels)) return `${field}: Invalid value: must be a map`;
  for (const [key, value] of Object.entries(labels)) {
    const slash = key.lastIndexOf("/");
    const prefix = slash === -1 ? undefined : key.slice(0, slash);
    const name = key.slice(slash + 1);
    if (
      (prefix !== undefined && (!DNS_SUBDOMAIN.test(prefix) || prefix.length > 253)) ||
      !LABEL_NAME.test(name) || name.length > 63
    ) {
      return `${field}: Invalid value: "${key}": name part must consist of alphanumeric ` +
        `characters, '-', '_' or '.'`;
    }
    if (typeof value !== "string" || value.length > 63 || !LABEL_VALUE.test(value)) {
      return `${field}: Invalid value: "${value}": a valid label must be an empty string or ` +
        `consist of alphanumeric characters, '-', '_' or '.', and must start and end with an ` +
        `alphanumeric character (at most 63 characters)`;
    }
  }
  return undefined;
}

type Selector = (object: KObject) => boolean;

function fieldValue(object: KObject, path: string): string | undefined {
  let value: unknown = object;
  for (const part of path.split(".")) {
    if (!isRecord(value)) return undefined;
    value = value[part];
  }
  return typeof value === "string" ? value : undefined;
}

/** Parses a field selector (`a.b=v,c!=w`); throws on fields the real API does not index. */
function parseFieldSelector(text: string | null, resource: Resource): Selector {
  if (text === null || text === "") return () => true;
  const supported: Record<Resource, string[]> = {
    pods: ["metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"],
    secrets: ["metadata.name", "metadata.namespace", "type"],
    jobs: ["metadata.name", "metadata.namespace", "status.successful"],
  };
  const terms = text.split(",").map((term) => {
    const match = /^([\w.]+)\s*(==|=|!=)\s*(.*)$/.exec(term.trim());
    if (match === null) throw new Error(`invalid field selector: ${term}`);
    if (!supported[resource].includes(match[1])) {
      throw new Error(`field label not supported: ${match[1]}`);
    }
    return { field: match[1], negate: match[2] === "!=", value: match[3] };
  });
  return (object) =>
    terms.every((term) => (fieldValue(object, term.field) === term.value) !== term.negate);
}

/** Parses a label selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a)`. */
function parseLabelSelector(text: string | null): Selector {
  if (text === null || text === "") return () => true;
  const terms: Array<(labels: Record<string, string>) => boolean> = [];
  const parts = text.match(/[^,(]+(\([^)]*\))?/g) ?? [];
  for (const raw of parts) {
    const part = raw.trim();
    let match: RegExpExecArray | null;
    if ((match = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part)) !== null) {
      const [, key, op, list] = match;
      const values = list.split(",").map((v) => v.trim());
      terms.push((labels) => (op === "in") === (key in labels && values.includes(labels[key])));
    } else if ((match = /^([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)$/.exec(part)) !== null) {
      const [, key, op, value] = match;
      terms.push((labels) => (labels[key] === value) !== (op === "!="));
    } else if ((match = /^(!?)([\w./-]+)$/.exec(part)) !== null) {
      const [, bang, key] = match;
      terms.push((labels) => (key in labels) !== (bang === "!"));
    } else {
      throw new Error(`unable to parse requirement: ${part}`);
    }
  }
  return (object) => {
    const labels = (object.metadata.labels ?? {}) as Record<string, string>;
    return terms.every((term) => term(labels));
  };
}

/** The fake API server; see the module documentation. */
export class FakeApiServer {
  #options: FakeApiServerOptions;
  #server: Deno.HttpServer<Deno.NetAddr>;
  #objects = new Map<string, KObject>();
  #history: StoreEvent[] = [];
  /** Events at or below this version are forgotten: resuming from before it gets 410. */
  #compactedThrough = 0;
  #resourceVersion = 1000;
  #watchers = new Set<Watcher>();
  #listeners = new Set<(event: StoreEvent) => void>();
  #requestWaiters: Array<
    { test: (r: RequestRecord) => boolean; resolve: (r: RequestRecord) => void }
  > = [];
  #logs = new Map<string, Uint8Array[]>();
  #front: Deno.Listener;
  #links = new Set<Deno.Conn>();
  #holds: Array<{ test: (r: RequestRecord) => boolean; until: Promise<unknown> }> = [];
  /** How to cut each link, by the port its server side connects from. */
  #linkCutters = new Map<number, () => void>();
  #faults = new FaultInjector();
  /** Every request served, in order. */
  readonly requests: RequestRecord[] = [];
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
        const reset = error instanceof Error &&
          error.message === "connection reset by the fake API server";
        if (!reset) console.error("fake API server:", error);
        return new Response("Internal Server Error\n", { status: 500 });
      },
    }, (request, info) => this.#handle(request, info.remoteAddr.port));
    // Clients connect through a plain TCP relay, so that a test can cut their connections
    // the way a crashing server or a dying link does (Deno.serve has no way to).
    this.#front = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#acceptLinks();
  }

  async #acceptLinks(): Promise<void> {
    for await (const client of this.#front) {
      let server: Deno.Conn;
      try {
        server = await Deno.connect({ hostname: "127.0.0.1", port: this.#server.addr.port });
      } catch {
        client.close();
        continue;
      }
      this.#links.add(client);
      this.#links.add(server);
      const port = (server.localAddr as Deno.NetAddr).port;
      const close = (): void => {
        this.#linkCutters.delete(port);
        for (const conn of [client, server]) {
          if (this.#links.delete(conn)) {
            try {
              conn.close();
            } catch {
              // Already closed.
            }
          }
        }
      };
      this.#linkCutters.set(port, close);
      client.readable.pipeTo(server.writable, { preventClose: true }).catch(() => {}).finally(
        close,
      );
      server.readable.pipeTo(client.writable, { preventClose: true }).catch(() => {}).finally(
        close,
      );
    }
  }

  /** Starts a server on a free port of 127.0.0.1. */
  static start(options: FakeApiServerOptions): FakeApiServer {
    return new FakeApiServer(options);
  }

  /** The server's base URL. */
  get url(): string {
    return `https://127.0.0.1:${(this.#front.addr as Deno.NetAddr).port}`;
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
    for (const watcher of this.#watchers) watcher.end("clean");
    this.#front.close();
    this.cutConnections();
    await this.#server.shutdown();
  }

  /** Cuts every client connection at the TCP level, mid-stream, as a dying server would. */
  cutConnections(): number {
    const count = this.#links.size / 2;
    for (const conn of [...this.#links]) {
      this.#links.delete(conn);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
    return count;
  }

  // ---- the store, for in-process controllers and assertions ----

  /** An object, or undefined. */
  get(resource: Resource, namespace: string, name: string): KObject | undefined {
    const object = this.#objects.get(`${resource}/${namespace}/${name}`);
    return object === undefined ? undefined : structuredClone(object);
  }

  /** Every object of a resource, optionally in one namespace. */
  list(resource: Resource, namespace?: string): KObject[] {
    return [...this.#objects.entries()]
      .filter(([key, object]) =>
        key.startsWith(`${resource}/`) &&
        (namespace === undefined || object.metadata.namespace === namespace)
      )
      .map(([, object]) => structuredClone(object));
  }

  /** Calls `listener` for every change; returns a function that stops it. */
  subscribe(listener: (event: StoreEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(type: StoreEvent["type"], resource: Resource, object: KObject): void {
    const event: StoreEvent = {
      type,
      resource,
      object: structuredClone(object),
      resourceVersion: Number(object.metadata.resourceVersion),
    };
    this.#history.push(event);
    for (const watcher of this.#watchers) {
      if (
        watcher.resource === resource &&
        (watcher.namespace === "" || watcher.namespace === object.metadata.namespace) &&
        watcher.matches(object)
      ) {
        watcher.send(type, event.object);
      }
    }
    for (const listener of [...this.#listeners]) listener(event);
  }

  #nextVersion(): string {
    return String(++this.#resourceVersion);
  }

  /** Stores a new object (as a controller would create it) and announces it. */
  insert(resource: Resource, object: KObject): KObject {
    const metadata = object.metadata;
    metadata.uid = crypto.randomUUID();
    metadata.creationTimestamp = now();
    metadata.resourceVersion = this.#nextVersion();
    this.#objects.set(`${resource}/${metadata.namespace}/${metadata.name}`, object);
    this.#emit("ADDED", resource, object);
    return structuredClone(object);
  }

  /** Changes a stored object in place and announces it; undefined when it is gone. */
  update(
    resource: Resource,
    namespace: string,
    name: string,
    change: (object: KObject) => void,
  ): KObject | undefined {
    const object = this.#objects.get(`${resource}/${namespace}/${name}`);
    if (object === undefined) return undefined;
    change(object);
    object.metadata.resourceVersion = this.#nextVersion();
    this.#emit("MODIFIED", resource, object);
    return structuredClone(object);
  }

  /** Removes an object for good and announces it. */
  remove(resource: Resource, namespace: string, name: string): KObject | undefined {
    const key = `${resource}/${namespace}/${name}`;
    const object = this.#objects.get(key);
    if (object === undefined) return undefined;
    this.#objects.delete(key);
    object.metadata.resourceVersion = this.#nextVersion();
    this.#emit("DELETED", resource, object);
    return structuredClone(object);
  }

  /** Appends to a container's log (the kubelet stand-in calls this). */
  appendLog(podUid: string, container: string, bytes: Uint8Array): void {
    const key = `${podUid}/${container}`;
    const chunks = this.#logs.get(key) ?? [];
    chunks.push(bytes.slice());
    this.#logs.set(key, chunks);
  }

  // ---- test controls ----

  /**
   * Ends every open watch: "clean" finishes the response as a server does at
   * its timeout; "reset" breaks the response off mid-stream.
   */
  dropWatches(mode: "clean" | "reset"): number {
    const count = this.#watchers.size;
    for (const watcher of [...this.#watchers]) watcher.end(mode);
    return count;
  }

  /** How many watches are open. */
  get openWatches(): number {
    return this.#watchers.size;
  }

  /** Forgets the event history, so resuming a watch from an older version gets 410 Gone. */
  compact(): void {
    // As if other objects had changed since: every version seen so far is now too old.
    this.#compactedThrough = ++this.#resourceVersion;
    this.#history = [];
  }

  /** Holds back requests that `test` accepts (before they are served) until `until` settles. */
  hold(test: (record: RequestRecord) => boolean, until: Promise<unknown>): void {
    this.#holds.push({ test, until });
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
    const seen = this.requests.find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => this.#requestWaiters.push({ test, resolve }));
  }

  /** Resolves with the first store event (to come) that `test` accepts. */
  waitForEvent(test: (event: StoreEvent) => boolean): Promise<StoreEvent> {
    return new Promise((resolve) => {
      const stop = this.subscribe((event) => {
        if (test(event)) {
          stop();
          resolve(event);
        }
      });
    });
  }

  // ---- HTTP ----

  #record(record: RequestRecord): void {
    this.requests.push(record);
    this.#requestWaiters = this.#requestWaiters.filter((waiter) => {
      if (!waiter.test(record)) return true;
      waiter.resolve(record);
      return false;
    });
  }

  #allowed(group: string, resource: string, verb: string): boolean {
    const rules = this.#options.rbac;
    if (rules === undefined) return true;
    return rules.some((rule) =>
      (rule.apiGroups.includes(group) || rule.apiGroups.includes("*")) &&
      (rule.resources.includes(resource) || rule.resources.includes("*")) &&
      (rule.verbs.includes(verb) || rule.verbs.includes("*"))
    );
  }

  async #handle(request: Request, linkPort: number): Promise<Response> {
    const url = new URL(request.url);
    const match =
      /^\/(?:api\/v1|apis\/batch\/v1)\/namespaces\/([^/]+)\/(pods|secrets|jobs)(?:\/([^/]+))?(?:\/(log))?$/
        .exec(url.pathname);
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
      this.#record({ ...base, status: 401 });
      return failure(401, "Unauthorized", "Unauthorized");
    }
    if (match === null) {
      this.#record({ ...base, status: 404 });
      return failure(404, "NotFound", "the server could not find the requested resource");
    }
    const [, namespace, resourceName, name, subresource] = match;
    const resource = resourceName as Resource;
    const { group } = RESOURCES[resource];
    if ((group === "batch") !== url.pathname.startsWith("/apis/batch/")) {
      this.#record({ ...base, status: 404 });
      return failure(404, "NotFound", "the server could not find the requested resource");
    }
    const watch = url.searchParams.get("watch") === "true" || url.searchParams.get("watch") === "1";
    const verb = request.method === "GET"
      ? (name === undefined ? (watch ? "watch" : "list") : "get")
      : request.method === "POST"
      ? "create"
      : request.method === "DELETE"
      ? (name === undefined ? "deletecollection" : "delete")
      : request.method === "PUT"
      ? "update"
      : request.method === "PATCH"
      ? "patch"
      : request.method.toLowerCase();
    const fullResource = subresource === undefined ? resource : `${resource}/${subresource}`;
    let body: unknown;
    if (request.method === "POST" || request.method === "PUT" || request.method === "DELETE") {
      const text = await request.text();
      if (text !== "") {
        try {
          body = JSON.parse(text);
        } catch {
          this.#record({ ...base, verb, resource: fullResource, group, name, status: 400 });
          return failure(400, "BadRequest", "the body of the request was in an unknown format");
        }
      }
    }
    const record = (status: number): void =>
      this.#record({ ...base, verb, resource: fullResource, group, name, status, body });
    if (!this.#allowed(group, fullResource, verb)) {
      record(403);
      const user = this.#options.user ?? "system:serviceaccount:builds:phonehome-builder";
      const what = name === undefined ? fullResource : `${fullResource} "${name}"`;
      return failure(
        403,
        "Forbidden",
        `${what} is forbidden: User "${user}" cannot ${verb} resource "${fullResource}" in ` +
          `API group "${group}" in the namespace "${namespace}"`,
        { name, group, kind: resource },
      );
    }
    this.used.add(`${group}/${fullResource}/${verb}`);
    const pending = { ...base, verb, resource: fullResource, group, name, status: 0, body };
    for (const hold of this.#holds) {
      if (hold.test(pending)) await hold.until.catch(() => {});
    }
    const fault = this.#faults.take(pending);
    if (fault?.response !== undefined) {
      this.#record({ ...pending, status: fault.response.status, fault: fault.kind });
      return fault.response;
    }
    if (fault?.kind === "reset") {
      this.#record({ ...pending, status: 0, fault: fault.kind });
      return this.#cutLink(linkPort);
    }
    let response: Response;
    try {
      response = this.#serve({ verb, resource, namespace, name, subresource, url, body, request });
    } catch (error) {
      response = failure(400, "BadRequest", (error as Error).message);
    }
    if (fault?.kind === "lostAnswer") {
      this.#record({ ...pending, status: response.status, fault: fault.kind });
      await response.body?.cancel();
      return this.#cutLink(linkPort);
    }
    record(response.status);
    return response;
  }

  /** Cuts the connection a request came in on; the answer returned never arrives. */
  #cutLink(port: number): Response {
    this.#linkCutters.get(port)?.();
    return new Response(null, { status: 502 });
  }

  #serve(input: {
    verb: string;
    resource: Resource;
    namespace: string;
    name?: string;
    subresource?: string;
    url: URL;
    body: unknown;
    request: Request;
  }): Response {
    const { verb, resource, namespace, name, url } = input;
    if (input.subresource === "log") return this.#serveLog(namespace, name ?? "", url);
    switch (verb) {
      case "create":
        return this.#create(resource, namespace, input.body);
      case "get": {
        const object = this.get(resource, namespace, name ?? "");
        return object === undefined
          ? failure(404, "NotFound", `${resource} "${name}" not found`, { name, kind: resource })
          : json(object);
      }
      case "list":
        return this.#list(resource, namespace, url);
      case "watch":
        return this.#watch(resource, namespace, url);
      case "delete":
        return this.#delete(resource, namespace, name ?? "", url, input.body);
      default:
        return failure(
          405,
          "MethodNotAllowed",
          `the server does not allow this method on the requested resource`,
        );
    }
  }

  #list(resource: Resource, namespace: string, url: URL): Response {
    const fields = parseFieldSelector(url.searchParams.get("fieldSelector"), resource);
    const labels = parseLabelSelector(url.searchParams.get("labelSelector"));
    const { version, group, kind } = RESOURCES[resource];
    return json({
      kind: `${kind}List`,
      apiVersion: group === "" ? version : `${group}/${version}`,
      metadata: { resourceVersion: String(this.#resourceVersion) },
      items: this.list(resource, namespace).filter((o) => fields(o) && labels(o)),
    });
  }

  #watch(resource: Resource, namespace: string, url: URL): Response {
    const fields = parseFieldSelector(url.searchParams.get("fieldSelector"), resource);
    const labels = parseLabelSelector(url.searchParams.get("labelSelector"));
    const matches = (object: KObject): boolean => fields(object) && labels(object);
    const timeoutSeconds = Number(url.searchParams.get("timeoutSeconds") ?? "1800");
    const from = url.searchParams.get("resourceVersion");
    const encoder = new TextEncoder();
    let watcher: Watcher | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start: (controller): void => {
        let open = true;
        const end = (mode: "clean" | "reset"): void => {
          if (!open) return;
          open = false;
          clearTimeout(timer);
          if (watcher !== undefined) this.#watchers.delete(watcher);
          if (mode === "clean") controller.close();
          else controller.error(new Error("connection reset by the fake API server"));
        };
        const send = (type: string, object: unknown): void => {
          if (open) controller.enqueue(encoder.encode(JSON.stringify({ type, object }) + "\n"));
        };
        watcher = { resource, namespace, matches, send, end };
        if (from !== null && from !== "" && from !== "0") {
          const since = Number(from);
          if (!(since >= this.#compactedThrough)) {
            send(
              "ERROR",
              statusBody(
                410,
                "Expired",
                `too old resource version: ${from} (${this.#resourceVersion})`,
              ),
            );
            end("clean");
            return;
          }
          for (const event of this.#history) {
            if (
              event.resourceVersion > since && event.resource === resource &&
              event.object.metadata.namespace === namespace && matches(event.object)
            ) {
              send(event.type, event.object);
            }
          }
        } else {
          for (const object of this.list(resource, namespace)) {
            if (matches(object)) send("ADDED", object);
          }
        }
        this.#watchers.add(watcher);
        timer = setTimeout(() => end("clean"), timeoutSeconds * 1000);
      },
      cancel: (): void => {
        clearTimeout(timer);
        if (watcher !== undefined) this.#watchers.delete(watcher);
      },
    });
    return new Response(body, {
      status: 200,
      headers: { "content-type": "application/json", "transfer-encoding": "chunked" },
    });
  }

  #create(resource: Resource, namespace: string, body: unknown): Response {
    const { kind, group, version } = RESOURCES[resource];
    const apiVersion = group === "" ? version : `${group}/${version}`;
    if (!isRecord(body)) return failure(400, "BadRequest", "the body of the request was empty");
    if (
      (body.kind !== undefined && body.kind !== kind) ||
      (body.apiVersion !== undefined && body.apiVersion !== apiVersion)
    ) {
      return failure(
        400,
        "BadRequest",
        `the API version in the data (${body.apiVersion}) does not match the expected API ` +
          `version (${apiVersion})`,
      );
    }
    const object = structuredClone(body) as KObject;
    object.kind = kind;
    object.apiVersion = apiVersion;
    const metadata = isRecord(object.metadata) ? object.metadata : {} as KObject["metadata"];
    object.metadata = metadata;
    if (typeof metadata.name !== "string" || metadata.name === "") {
      if (typeof metadata.generateName === "string" && metadata.generateName !== "") {
        metadata.name = `${metadata.generateName}${crypto.randomUUID().slice(0, 5)}`;
      } else {
        return this.#invalid(
          kind,
          "",
          "metadata.name: Required value: name or generateName is required",
        );
      }
    }
    const name = metadata.name;
    metadata.namespace = namespace;
    const maxName = resource === "secrets" ? 253 : 63;
    if (!DNS_SUBDOMAIN.test(name) || name.length > maxName) {
      return this.#invalid(
        kind,
        name,
        `metadata.name: Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of ` +
          `lower case alphanumeric characters, '-' or '.' (at most ${maxName} characters)`,
      );
    }
    const labelIssue = labelProblem(metadata.labels, "metadata.labels");
    if (labelIssue !== undefined) return this.#invalid(kind, name, labelIssue);
    if (this.#objects.has(`${resource}/${namespace}/${name}`)) {
      return failure(409, "AlreadyExists", `${resource} "${name}" already exists`, {
        name,
        kind: resource,
      });
    }
    const problem = resource === "pods"
      ? podProblem(object.spec, "spec")
      : resource === "jobs"
      ? jobProblem(object)
      : secretProblem(object);
    if (problem !== undefined) return this.#invalid(kind, name, problem);
    if (resource === "pods") {
      const spec = object.spec as Record<string, unknown>;
      spec.restartPolicy ??= "Always";
      spec.terminationGracePeriodSeconds ??= 30;
      object.status = { phase: "Pending", qosClass: "BestEffort" };
    } else if (resource === "jobs") {
      defaultJob(object);
    }
    return json(this.insert(resource, object), 201);
  }

  #invalid(kind: string, name: string, cause: string): Response {
    return failure(422, "Invalid", `${kind} "${name}" is invalid: ${cause}`, {
      name,
      kind,
      causes: [{ reason: "FieldValueInvalid", message: cause }],
    });
  }

  #delete(resource: Resource, namespace: string, name: string, url: URL, body: unknown): Response {
    const object = this.get(resource, namespace, name);
    if (object === undefined) {
      return failure(404, "NotFound", `${resource} "${name}" not found`, { name, kind: resource });
    }
    const options = isRecord(body) ? body : {};
    const graceText = url.searchParams.get("gracePeriodSeconds");
    const policy = url.searchParams.get("propagationPolicy") ??
      (typeof options.propagationPolicy === "string" ? options.propagationPolicy : undefined);
    if (resource === "pods") {
      const spec = object.spec as Record<string, unknown>;
      const status = object.status as Record<string, unknown>;
      const grace = graceText !== null
        ? Number(graceText)
        : typeof options.gracePeriodSeconds === "number"
        ? options.gracePeriodSeconds
        : Number(spec.terminationGracePeriodSeconds ?? 30);
      const finished = status.phase === "Succeeded" || status.phase === "Failed";
      if (grace > 0 && typeof spec.nodeName === "string" && !finished) {
        // A bound, running pod stays until its kubelet has stopped the containers.
        const updated = this.update("pods", namespace, name, (pod) => {
          pod.metadata.deletionTimestamp ??= new Date(Date.now() + grace * 1000).toISOString()
            .replace(/\.\d+Z$/, "Z");
          pod.metadata.deletionGracePeriodSeconds = grace;
        });
        return json(updated);
      }
      return json(this.remove("pods", namespace, name));
    }
    this.remove(resource, namespace, name);
    if (resource === "jobs") {
      const uid = object.metadata.uid;
      for (const pod of this.list("pods", namespace)) {
        const owners = (pod.metadata.ownerReferences ?? []) as Array<Record<string, unknown>>;
        if (!owners.some((owner) => owner.uid === uid)) continue;
        if (policy === "Background" || policy === "Foreground") {
          this.#delete("pods", namespace, pod.metadata.name, new URL("http://x/"), undefined);
        } else {
          // batch/v1 Jobs default to orphaning: their pods keep running.
          this.update("pods", namespace, pod.metadata.name, (p) => {
            p.metadata.ownerReferences = owners.filter((owner) => owner.uid !== uid);
          });
        }
      }
    }
    return json({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Success",
      details: { name, group: RESOURCES[resource].group, kind: resource, uid: object.metadata.uid },
    });
  }

  #serveLog(namespace: string, name: string, url: URL): Response {
    const pod = this.get("pods", namespace, name);
    if (pod === undefined) {
      return failure(404, "NotFound", `pods "${name}" not found`, { name, kind: "pods" });
    }
    const spec = pod.spec as Record<string, unknown>;
    const containers = spec.containers as Array<Record<string, unknown>>;
    const container = url.searchParams.get("container") ??
      (containers.length === 1 ? String(containers[0].name) : undefined);
    if (container === undefined) {
      return failure(
        400,
        "BadRequest",
        `a container name must be specified for pod ${name}, choose one of: [${
          containers.map((c) => c.name).join(" ")
        }]`,
      );
    }
    if (typeof spec.nodeName !== "string") return new Response(null, { status: 204 });
    const statuses = ((pod.status as Record<string, unknown>).containerStatuses ?? []) as Array<
      Record<string, unknown>
    >;
    const state = statuses.find((s) => s.name === container)?.state as
      | Record<string, Record<string, unknown>>
      | undefined;
    const chunks = this.#logs.get(`${pod.metadata.uid}/${container}`);
    if (chunks === undefined) {
      const reason = state?.waiting?.reason ?? "ContainerCreating";
      return failure(
        400,
        "BadRequest",
        `container "${container}" in pod "${name}" is waiting to start: ${reason}`,
      );
    }
    let bytes = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
    let at = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, at);
      at += chunk.byteLength;
    }
    const limit = Number(url.searchParams.get("limitBytes") ?? "0");
    if (limit > 0) bytes = bytes.subarray(0, limit);
    return new Response(bytes, { status: 200, headers: { "content-type": "text/plain" } });
  }
}

function podProblem(spec: unknown, field: string): string | undefined {
  if (!isRecord(spec)) return `${field}: Required value`;
  const containers = spec.containers;
  if (!Array.isArray(containers) || containers.length === 0) {
    return `${field}.containers: Required value`;
  }
  for (const [i, container] of containers.entries()) {
    const at = `${field}.containers[${i}]`;
    if (!isRecord(container)) return `${at}: Invalid value`;
    if (typeof container.name !== "string" || container.name === "") {
      return `${at}.name: Required value`;
    }
    if (typeof container.image !== "string" || container.image === "") {
      return `${at}.image: Required value`;
    }
    for (const [j, variable] of ((container.env ?? []) as unknown[]).entries()) {
      if (!isRecord(variable) || typeof variable.name !== "string" || variable.name === "") {
        return `${at}.env[${j}].name: Required value`;
      }
      if (variable.value !== undefined && variable.valueFrom !== undefined) {
        return `${at}.env[${j}].valueFrom: Invalid value: "": may not be specified when ` +
          "`value` is not empty";
      }
    }
    for (const key of ["command", "args"]) {
      const list = container[key];
      if (list !== undefined && (!Array.isArray(list) || list.some((a) => typeof a !== "string"))) {
        return `${at}.${key}: Invalid value`;
      }
    }
  }
  const policy = spec.restartPolicy;
  if (policy !== undefined && !["Always", "OnFailure", "Never"].includes(String(policy))) {
    return `${field}.restartPolicy: Unsupported value: "${policy}"`;
  }
  const deadline = spec.activeDeadlineSeconds;
  if (deadline !== undefined && !(typeof deadline === "number" && deadline > 0)) {
    return `${field}.activeDeadlineSeconds: Invalid value: must be greater than 0`;
  }
  return labelProblem(spec.nodeSelector, `${field}.nodeSelector`);
}

function jobProblem(job: KObject): string | undefined {
  const spec = job.spec;
  if (!isRecord(spec)) return "spec: Required value";
  const template = spec.template;
  if (!isRecord(template)) return "spec.template: Required value";
  const problem = podProblem(template.spec, "spec.template.spec");
  if (problem !== undefined) return problem;
  const policy = (template.spec as Record<string, unknown>).restartPolicy;
  if (policy !== "Never" && policy !== "OnFailure") {
    return `spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"`;
  }
  if (isRecord(template.metadata)) {
    const labelIssue = labelProblem(template.metadata.labels, "spec.template.metadata.labels");
    if (labelIssue !== undefined) return labelIssue;
  }
  return undefined;
}

function secretProblem(secret: KObject): string | undefined {
  const data = secret.data;
  if (data !== undefined) {
    if (!isRecord(data)) return "data: Invalid value";
    for (const [key, value] of Object.entries(data)) {
      try {
        atob(String(value));
      } catch {
        return `data[${key}]: Invalid value: illegal base64 data`;
      }
    }
  }
  if (isRecord(secret.stringData)) {
    const merged: Record<string, unknown> = isRecord(data) ? data : {};
    for (const [key, value] of Object.entries(secret.stringData)) merged[key] = btoa(String(value));
    secret.data = merged;
    delete secret.stringData;
  }
  secret.type ??= "Opaque";
  return undefined;
}

function defaultJob(job: KObject): void {
  const spec = job.spec as Record<string, unknown>;
  spec.backoffLimit ??= 6;
  spec.completions ??= 1;
  spec.parallelism ??= 1;
  spec.completionMode ??= "NonIndexed";
  spec.suspend ??= false;
  job.status = {};
}
