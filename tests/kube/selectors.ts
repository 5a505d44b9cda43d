/**
 * Field and label selectors as the API parses them, for the fake API server's
 * lists and watches: fields only where the real API indexes them, labels with
 * equality, inequality, existence and set terms.
 *
 * @module
 */

import { isRecord, type KObject, type Resource } from "./api_objects.ts";

/** Whether an object is selected. */
export type Selector = (object: KObject) => boolean;

/** The fields the real API can select each resource by. */
const SELECTABLE_FIELDS: Record<Resource, string[]> = {
  pods: ["metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"],
  secrets: ["metadata.name", "metadata.namespace", "type"],
  jobs: ["metadata.name", "metadata.namespace", "status.successful"],
};

function fieldValue(object: KObject, path: string): string | undefined {
  let value: unknown = object;
  for (const part of path.split(".")) {
    if (!isRecord(value)) return undefined;
    value = value[part];
  }
  return typeof value === "string" ? value : undefined;
}

/** Parses a field selector (`a.b=v,c!=w`); throws on fields the real API does not index. */
export function parseFieldSelector(text: string | null, resource: Resource): Selector {
  if (text === null || text === "") return () => true;
  const terms = text.split(",").map((term) => {
    const match = /^([\w.]+)\s*(==|=|!=)\s*(.*)$/.exec(term.trim());
    if (match === null) throw new Error(`invalid field selector: ${term}`);
    if (!SELECTABLE_FIELDS[resource].includes(match[1])) {
      throw new Error(`field label not supported: ${match[1]}`);
    }
    return { field: match[1], negate: match[2] === "!=", value: match[3] };
  });
  return (object) =>
    terms.every((term) => (fieldValue(object, term.field) === term.value) !== term.negate);
}

/** Parses a label selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a)`. */
export function parseLabelSelector(text: string | null): Selector {
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

/** The field and label selectors of a list or watch request, together; throws when invalid. */
export function selectorOf(url: URL, resource: Resource): Selector {
  const fields = parseFieldSelector(url.searchParams.get("fieldSelector"), resource);
  const labels = parseLabelSelector(url.searchParams.get("labelSelector"));
  return (object) => fields(object) && labels(object);
}
