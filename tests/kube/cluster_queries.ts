/**
 * Questions tests ask of a {@linkcode TestCluster} after or during a build:
 * its one build pod, the requests of one verb on one resource, and when the
 * last object of a resource has gone from the build namespace.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { KObject, RequestRecord } from "./fake_api_server.ts";
import { NAMESPACE, type TestCluster } from "./cluster.ts";

/** The one pod in the build namespace; fails the test when there are more or none. */
export function onlyPod(cluster: TestCluster): KObject {
  const pods = cluster.api.list("pods", NAMESPACE);
  assert.equal(pods.length, 1, `one build pod, not ${pods.map((p) => p.metadata.name)}`);
  return pods[0];
}

/** Every request of `verb` on `resource` (such as `pods` or `pods/log`), in order. */
export function requests(cluster: TestCluster, verb: string, resource: string): RequestRecord[] {
  return cluster.api.requests.filter((r) => r.verb === verb && r.resource === resource);
}

/** Every delete request on `resource`, in order. */
export function deletes(cluster: TestCluster, resource: string): RequestRecord[] {
  return requests(cluster, "delete", resource);
}

/** Resolves once no object of `resource` is left in the build namespace. */
export async function gone(
  cluster: TestCluster,
  resource: "pods" | "jobs" | "secrets",
): Promise<void> {
  while (cluster.api.list(resource, NAMESPACE).length > 0) {
    await cluster.api.waitForEvent((e) => e.resource === resource && e.type === "DELETED");
  }
}
