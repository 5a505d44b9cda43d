/**
 * Objects a test stores straight into a {@linkcode TestCluster}'s API server,
 * as if phonehome (or someone else) had made them: pods the kubelet stand-in
 * never runs, and leftovers of an age for 'phonehome gc' to find.
 *
 * @module
 */

import type { KObject } from "./fake_api_server.ts";
import { NAMESPACE, RELAY_IMAGE, type TestCluster } from "./cluster.ts";

/** The spec of a pod that never runs. */
export interface ParkedPodSpec {
  nodeSelector: Record<string, string>;
  restartPolicy: string;
  containers: Array<{ name: string; image: string }>;
}

/**
 * A pod spec with a node selector no node has, so the kubelet stand-in leaves
 * the pod alone: it stays Pending, unscheduled.
 */
export function parkedPodSpec(): ParkedPodSpec {
  return {
    nodeSelector: { "phonehome.test/never": "true" },
    restartPolicy: "Never",
    containers: [{ name: "build", image: RELAY_IMAGE }],
  };
}

/** Stores an object as if phonehome had created it `ageMs` ago (pods and Jobs never run). */
export function leftover(
  k8s: TestCluster,
  resource: "pods" | "jobs" | "secrets",
  name: string,
  options: { ageMs: number; managed?: boolean; ownedBy?: KObject },
): KObject {
  const metadata: KObject["metadata"] = {
    name,
    namespace: NAMESPACE,
    labels: options.managed === false ? {} : { "app.kubernetes.io/managed-by": "phonehome" },
  };
  if (options.ownedBy !== undefined) {
    metadata.ownerReferences = [{
      apiVersion: "batch/v1",
      kind: "Job",
      name: options.ownedBy.metadata.name,
      uid: options.ownedBy.metadata.uid,
    }];
  }
  const body: Record<string, unknown> = resource === "pods"
    ? { spec: parkedPodSpec() }
    : resource === "jobs"
    ? { spec: { template: { spec: parkedPodSpec() } } }
    : { data: {} };
  const stored = k8s.api.insert(resource, { metadata, ...body } as KObject);
  return k8s.api.update(resource, NAMESPACE, name, (o) => {
    o.metadata.creationTimestamp = new Date(Date.now() - options.ageMs).toISOString();
  }) ?? stored;
}
