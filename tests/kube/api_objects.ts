/**
 * The objects of the fake API server: their JSON shape, the resources it
 * serves with their API group, version and kind, and the API's timestamps.
 *
 * @module
 */

/** A stored object: plain JSON as the API serves it. */
export type KObject = Record<string, unknown> & {
  metadata: Record<string, unknown> & { name: string; namespace: string };
};

/** The resources this server knows, by plural name. */
export type Resource = "pods" | "secrets" | "jobs";

/** The API group, version and kind of each resource. */
export const RESOURCES: Record<Resource, { group: string; version: string; kind: string }> = {
  pods: { group: "", version: "v1", kind: "Pod" },
  secrets: { group: "", version: "v1", kind: "Secret" },
  jobs: { group: "batch", version: "v1", kind: "Job" },
};

/** The `apiVersion` of a resource's objects: `v1` or `batch/v1`. */
export function apiVersionOf(resource: Resource): string {
  const { group, version } = RESOURCES[resource];
  return group === "" ? version : `${group}/${version}`;
}

/** Whether `value` is a JSON object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The current time as the API writes timestamps: RFC 3339, in whole seconds. */
export function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}
