/**
 * How the fake API server reads a request: the path names a namespace, a
 * resource (pods, secrets, jobs, or the pods/log subresource) and perhaps an
 * object; the method (and `watch`) gives the Kubernetes verb; a write's body
 * is JSON; and an optional Role decides whether the verb is allowed, with the
 * real API's 403 message when it is not.
 *
 * @module
 */

import { type Resource, RESOURCES } from "./api_objects.ts";
import { failure } from "./api_responses.ts";

/** One rule of a Role. */
export interface RbacRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/** What a request asks for, read from its method and path. */
export interface Route {
  namespace: string;
  resource: Resource;
  /** The object named, for get, delete and the log. */
  name?: string;
  /** `log`, for pods/log. */
  subresource?: string;
  /** The API group: "" or "batch". */
  group: string;
  /** get, list, watch, create, delete, update, patch, deletecollection. */
  verb: string;
  /** Such as `pods`, `pods/log` or `jobs`, as RBAC names it. */
  fullResource: string;
}

const PATH =
  /^\/(?:api\/v1|apis\/batch\/v1)\/namespaces\/([^/]+)\/(pods|secrets|jobs)(?:\/([^/]+))?(?:\/(log))?$/;

/** The route of a request, or undefined when no resource of this server is at that path. */
export function routeOf(method: string, url: URL): Route | undefined {
  const match = PATH.exec(url.pathname);
  if (match === null) return undefined;
  const [, namespace, resourceName, name, subresource] = match;
  const resource = resourceName as Resource;
  const { group } = RESOURCES[resource];
  if ((group === "batch") !== url.pathname.startsWith("/apis/batch/")) return undefined;
  const watch = url.searchParams.get("watch") === "true" || url.searchParams.get("watch") === "1";
  const verb = method === "GET"
    ? (name === undefined ? (watch ? "watch" : "list") : "get")
    : method === "POST"
    ? "create"
    : method === "DELETE"
    ? (name === undefined ? "deletecollection" : "delete")
    : method === "PUT"
    ? "update"
    : method === "PATCH"
    ? "patch"
    : method.toLowerCase();
  const fullResource = subresource === undefined ? resource : `${resource}/${subresource}`;
  return { namespace, resource, name, subresource, group, verb, fullResource };
}

/**
 * The parsed JSON body of a write (POST, PUT, DELETE; undefined when empty or
 * for other methods), or `invalid` when it is not JSON.
 */
export async function readBody(request: Request): Promise<{ body?: unknown } | "invalid"> {
  if (request.method !== "POST" && request.method !== "PUT" && request.method !== "DELETE") {
    return {};
  }
  const text = await request.text();
  if (text === "") return {};
  try {
    return { body: JSON.parse(text) };
  } catch {
    return "invalid";
  }
}

/** Whether `rules` allow the route's verb; without rules, everything is allowed. */
export function allowedBy(rules: RbacRule[] | undefined, route: Route): boolean {
  if (rules === undefined) return true;
  const { group, fullResource, verb } = route;
  return rules.some((rule) =>
    (rule.apiGroups.includes(group) || rule.apiGroups.includes("*")) &&
    (rule.resources.includes(fullResource) || rule.resources.includes("*")) &&
    (rule.verbs.includes(verb) || rule.verbs.includes("*"))
  );
}

/** The real API's 403 for `user`, who may not do what the route asks. */
export function forbidden(user: string, route: Route): Response {
  const { namespace, resource, name, group, verb, fullResource } = route;
  const what = name === undefined ? fullResource : `${fullResource} "${name}"`;
  return failure(
    403,
    "Forbidden",
    `${what} is forbidden: User "${user}" cannot ${verb} resource "${fullResource}" in ` +
      `API group "${group}" in the namespace "${namespace}"`,
    { name, group, kind: resource },
  );
}
