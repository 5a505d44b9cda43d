/**
 * The shapes the Kubernetes client trades in: retry settings, the summary of
 * a listed object, and one watch request with its events.
 *
 * @module
 */

import type * as k8s from "@kubernetes/client-node";

/** How API calls retry transient failures. */
export interface RetrySettings {
  /** How long all tries of one call may take together, in milliseconds. */
  budgetMs: number;
}

/** The kinds of object phonehome creates. */
export type CreatedKind = "secret" | "pod" | "job";

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

/** The summary of an object's metadata. */
export function readSummary(metadata: k8s.V1ObjectMeta | undefined): ObjectSummary {
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

/** Whether `object` carries every one of `labels`. */
export function carriesLabels(
  object: k8s.KubernetesObject,
  labels: Record<string, string>,
): boolean {
  const own = object.metadata?.labels ?? {};
  return Object.entries(labels).every(([key, value]) => own[key] === value);
}
