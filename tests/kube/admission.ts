/**
 * Creating objects in the fake API server as the real API admits them: the
 * kind and apiVersion must fit, names (or generateName) must be valid, labels
 * too, pods need containers with names, images and sound env, Jobs a pod
 * template with restartPolicy Never or OnFailure, Secrets base64 data; then
 * the API's defaults are filled in. Refusals are 400, 409 AlreadyExists or
 * 422 Invalid with the real API's wording.
 *
 * @module
 */

import { apiVersionOf, isRecord, type KObject, type Resource, RESOURCES } from "./api_objects.ts";
import { failure, invalid, json } from "./api_responses.ts";
import type { ObjectStore } from "./object_store.ts";

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

/**
 * Stores a new object from a create request's body, as the API would, and
 * answers 201 with it; or refuses it.
 */
export function createObject(
  store: ObjectStore,
  resource: Resource,
  namespace: string,
  body: unknown,
): Response {
  const { kind } = RESOURCES[resource];
  const apiVersion = apiVersionOf(resource);
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
      return invalid(kind, "", "metadata.name: Required value: name or generateName is required");
    }
  }
  const name = metadata.name;
  metadata.namespace = namespace;
  const maxName = resource === "secrets" ? 253 : 63;
  if (!DNS_SUBDOMAIN.test(name) || name.length > maxName) {
    return invalid(
      kind,
      name,
      `metadata.name: Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of ` +
        `lower case alphanumeric characters, '-' or '.' (at most ${maxName} characters)`,
    );
  }
  const labelIssue = labelProblem(metadata.labels, "metadata.labels");
  if (labelIssue !== undefined) return invalid(kind, name, labelIssue);
  if (store.has(resource, namespace, name)) {
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
  if (problem !== undefined) return invalid(kind, name, problem);
  if (resource === "pods") {
    const spec = object.spec as Record<string, unknown>;
    spec.restartPolicy ??= "Always";
    spec.terminationGracePeriodSeconds ??= 30;
    object.status = { phase: "Pending", qosClass: "BestEffort" };
  } else if (resource === "jobs") {
    defaultJob(object);
  }
  return json(store.insert(resource, object), 201);
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

/** Checks a Secret's data, and folds its stringData into data as the API does. */
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
