/**
 * A Job controller stand-in for the fake API server: creates each Job's pod
 * from its template, mirrors the pod's end into the Job's status, and enforces
 * activeDeadlineSeconds by failing the Job and deleting its pod.
 *
 * @module
 */

import { now } from "./api_objects.ts";
import type { FakeApiServer, KObject, StoreEvent } from "./fake_api_server.ts";

/** Runs Jobs stored in `api` until stopped. */
export class JobController {
  #api: FakeApiServer;
  #unsubscribe: () => void;
  #deadlines = new Map<string, ReturnType<typeof setTimeout>>();

  /** Starts reacting to Jobs and their pods. */
  constructor(api: FakeApiServer) {
    this.#api = api;
    this.#unsubscribe = api.subscribe((event) => this.#onEvent(event));
  }

  /** Stops reacting. */
  stop(): void {
    this.#unsubscribe();
    for (const timer of this.#deadlines.values()) clearTimeout(timer);
  }

  #onEvent(event: StoreEvent): void {
    if (event.resource === "jobs" && event.type === "ADDED") {
      queueMicrotask(() => this.#startJob(event.object));
    } else if (event.resource === "jobs" && event.type === "DELETED") {
      clearTimeout(this.#deadlines.get(String(event.object.metadata.uid)));
    } else if (event.resource === "pods" && event.type !== "DELETED") {
      this.#mirror(event.object);
    }
  }

  #startJob(job: KObject): void {
    const { namespace, name } = job.metadata;
    const uid = String(job.metadata.uid);
    const spec = job.spec as Record<string, unknown>;
    const template = spec.template as Record<string, unknown>;
    const templateMetadata = (template.metadata ?? {}) as Record<string, unknown>;
    const jobLabels = {
      "batch.kubernetes.io/controller-uid": uid,
      "batch.kubernetes.io/job-name": name,
      "controller-uid": uid,
      "job-name": name,
    };
    this.#api.update("jobs", namespace, name, (stored) => {
      (stored.spec as Record<string, unknown>).selector = {
        matchLabels: { "batch.kubernetes.io/controller-uid": uid },
      };
      stored.status = { active: 1, startTime: now() };
    });
    this.#api.insert("pods", {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name: `${name}-${crypto.randomUUID().replace(/-/g, "").slice(0, 5)}`,
        namespace,
        labels: { ...(templateMetadata.labels as Record<string, string>), ...jobLabels },
        annotations: templateMetadata.annotations,
        ownerReferences: [{
          apiVersion: "batch/v1",
          kind: "Job",
          name,
          uid,
          controller: true,
          blockOwnerDeletion: true,
        }],
      },
      spec: {
        terminationGracePeriodSeconds: 30,
        ...structuredClone(template.spec as Record<string, unknown>),
      },
      status: { phase: "Pending", qosClass: "BestEffort" },
    });
    const deadline = spec.activeDeadlineSeconds;
    if (typeof deadline === "number") {
      this.#deadlines.set(
        uid,
        setTimeout(() => this.#deadlineExceeded(namespace, name, uid), deadline * 1000),
      );
    }
  }

  /** Acts as if the Job's activeDeadlineSeconds had just passed, without waiting for it. */
  exceedDeadline(namespace: string, name: string): void {
    const job = this.#api.get("jobs", namespace, name);
    if (job === undefined) throw new Error(`job ${namespace}/${name} does not exist`);
    const uid = String(job.metadata.uid);
    clearTimeout(this.#deadlines.get(uid));
    this.#deadlineExceeded(namespace, name, uid);
  }

  #deadlineExceeded(namespace: string, name: string, uid: string): void {
    const job = this.#api.update("jobs", namespace, name, (stored) => {
      stored.status = {
        ...(stored.status as Record<string, unknown>),
        active: 0,
        failed: 1,
        conditions: [{
          type: "Failed",
          status: "True",
          reason: "DeadlineExceeded",
          message: "Job was active longer than specified deadline",
          lastTransitionTime: now(),
        }],
      };
    });
    if (job === undefined) return;
    for (const pod of this.#api.list("pods", namespace)) {
      const owners = (pod.metadata.ownerReferences ?? []) as Array<Record<string, unknown>>;
      if (owners.some((owner) => owner.uid === uid)) {
        this.#api.remove("pods", namespace, pod.metadata.name);
      }
    }
  }

  #mirror(pod: KObject): void {
    const owners = (pod.metadata.ownerReferences ?? []) as Array<Record<string, unknown>>;
    const owner = owners.find((o) => o.kind === "Job");
    const phase = (pod.status as Record<string, unknown> | undefined)?.phase;
    if (owner === undefined || (phase !== "Succeeded" && phase !== "Failed")) return;
    const name = String(owner.name);
    const succeeded = phase === "Succeeded";
    const job = this.#api.get("jobs", pod.metadata.namespace, name);
    const status = (job?.status ?? {}) as Record<string, unknown>;
    if (job === undefined || Array.isArray(status.conditions)) return;
    clearTimeout(this.#deadlines.get(String(owner.uid)));
    this.#api.update("jobs", pod.metadata.namespace, name, (stored) => {
      stored.status = {
        ...status,
        active: 0,
        ...(succeeded ? { succeeded: 1, completionTime: now() } : { failed: 1 }),
        conditions: [{
          type: succeeded ? "Complete" : "Failed",
          status: "True",
          ...(succeeded ? {} : {
            reason: "BackoffLimitExceeded",
            message: "Job has reached the specified backoff limit",
          }),
          lastTransitionTime: now(),
        }],
      };
    });
  }
}
