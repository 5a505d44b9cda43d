/**
 * Deleting objects in the fake API server as the real API does: a bound,
 * running pod with a grace period gets a `deletionTimestamp` and stays until
 * its kubelet has stopped it, anything else goes at once; a Job's pods are
 * deleted with it under the Background or Foreground propagation policy, and
 * orphaned otherwise (batch/v1's default).
 *
 * @module
 */

import { isRecord, type Resource, RESOURCES } from "./api_objects.ts";
import { json, notFound } from "./api_responses.ts";
import type { ObjectStore } from "./object_store.ts";

/**
 * Carries out a delete request for `name`: the query's `gracePeriodSeconds`
 * and `propagationPolicy` win over the same fields of the body's DeleteOptions.
 */
export function deleteObject(
  store: ObjectStore,
  resource: Resource,
  namespace: string,
  name: string,
  url: URL,
  body: unknown,
): Response {
  const object = store.get(resource, namespace, name);
  if (object === undefined) return notFound(resource, name);
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
      const updated = store.update("pods", namespace, name, (pod) => {
        pod.metadata.deletionTimestamp ??= new Date(Date.now() + grace * 1000).toISOString()
          .replace(/\.\d+Z$/, "Z");
        pod.metadata.deletionGracePeriodSeconds = grace;
      });
      return json(updated);
    }
    return json(store.remove("pods", namespace, name));
  }
  store.remove(resource, namespace, name);
  if (resource === "jobs") {
    const uid = object.metadata.uid;
    for (const pod of store.list("pods", namespace)) {
      const owners = (pod.metadata.ownerReferences ?? []) as Array<Record<string, unknown>>;
      if (!owners.some((owner) => owner.uid === uid)) continue;
      if (policy === "Background" || policy === "Foreground") {
        deleteObject(store, "pods", namespace, pod.metadata.name, new URL("http://x/"), undefined);
      } else {
        // batch/v1 Jobs default to orphaning: their pods keep running.
        store.update("pods", namespace, pod.metadata.name, (p) => {
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
