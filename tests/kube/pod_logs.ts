/**
 * Pod logs for the fake API server: what each container wrote (the kubelet
 * stand-in appends it), served as `pods/log` with the real API's answers for a
 * pod not yet scheduled (204), a container still waiting (400 with its
 * reason), a pod of several containers without `container` (400), and
 * `limitBytes`.
 *
 * @module
 */

import { failure, notFound } from "./api_responses.ts";
import type { ObjectStore } from "./object_store.ts";

/** Every container's log, by pod uid and container name. */
export class PodLogs {
  #logs = new Map<string, Uint8Array[]>();

  /** Appends to a container's log. */
  append(podUid: string, container: string, bytes: Uint8Array): void {
    const key = `${podUid}/${container}`;
    const chunks = this.#logs.get(key) ?? [];
    chunks.push(bytes.slice());
    this.#logs.set(key, chunks);
  }

  /** The answer to a `pods/log` request for pod `name` of `store`. */
  serve(store: ObjectStore, namespace: string, name: string, url: URL): Response {
    const pod = store.get("pods", namespace, name);
    if (pod === undefined) return notFound("pods", name);
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
