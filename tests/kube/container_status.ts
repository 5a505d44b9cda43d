/**
 * The pod and container statuses the kubelet stand-in reports, shaped as a
 * real kubelet's: unschedulable, waiting (ContainerCreating, ErrImagePull then
 * ImagePullBackOff, CreateContainerConfigError), a StartError, running and
 * ready, and terminated with its exit code and reason (Completed, Error,
 * OOMKilled).
 *
 * @module
 */

import { now } from "./api_objects.ts";

type Json = Record<string, unknown>;

/** A container status waiting for `reason` ("" for none). */
export function waitingStatus(name: string, image: string, reason: string, message: string): Json {
  return {
    name,
    image,
    imageID: "",
    ready: false,
    started: false,
    restartCount: 0,
    state: { waiting: reason === "" ? {} : { reason, ...(message ? { message } : {}) } },
  };
}

/** The PodScheduled condition of a pod whose node selector no node fits. */
export function unschedulableCondition(): Json {
  return {
    type: "PodScheduled",
    status: "False",
    reason: "Unschedulable",
    message: "0/1 nodes are available: 1 node(s) didn't match Pod's node " +
      "affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not " +
      "helpful for scheduling.",
    lastProbeTime: null,
    lastTransitionTime: now(),
  };
}

/**
 * The two container statuses, in order, of an image that cannot be pulled:
 * ErrImagePull, then ImagePullBackOff (newer kubelets keep the pull error in
 * the back-off message).
 */
export function pullFailures(name: string, image: string): [Json, Json] {
  const reference = image.includes("/") ? image : `docker.io/library/${image}`;
  const pullError = `failed to pull and unpack image "${reference}": failed to resolve ` +
    `reference "${reference}": ${reference}: not found`;
  return [
    waitingStatus(name, image, "ErrImagePull", pullError),
    waitingStatus(
      name,
      image,
      "ImagePullBackOff",
      `Back-off pulling image "${image}": ErrImagePull: ${pullError}`,
    ),
  ];
}

/** The container status of a command that could not be started. */
export function startErrorStatus(name: string, image: string, argv0: string, why: string): Json {
  return {
    ...waitingStatus(name, image, "", ""),
    state: {
      terminated: {
        exitCode: 128,
        reason: "StartError",
        message: `failed to create containerd task: exec: "${argv0}": ${why}`,
        startedAt: null,
        finishedAt: now(),
      },
    },
  };
}

/** Marks a pod's status Running, ready, with its IP and its one container started. */
export function markRunning(
  status: Json,
  pod: { scheduled: Json; podIP: string; startedAt: string; name: string; image: string },
): void {
  const { scheduled, podIP, startedAt, name, image } = pod;
  status.phase = "Running";
  status.podIP = podIP;
  status.podIPs = [{ ip: podIP }];
  status.startTime = startedAt;
  status.conditions = [
    scheduled,
    { type: "Initialized", status: "True", lastTransitionTime: startedAt },
    { type: "ContainersReady", status: "True", lastTransitionTime: startedAt },
    { type: "Ready", status: "True", lastTransitionTime: startedAt },
  ];
  status.containerStatuses = [{
    name,
    image,
    imageID: `${image}@sha256:${"0".repeat(64)}`,
    containerID: `containerd://${crypto.randomUUID().replace(/-/g, "")}`,
    ready: true,
    started: true,
    restartCount: 0,
    state: { running: { startedAt } },
  }];
}

/**
 * Marks a pod's status finished: Succeeded or Failed by `exitCode` (an
 * evicted pod stays Failed), no longer ready, its container terminated.
 */
export function markTerminated(
  status: Json,
  end: { exitCode: number; oom: boolean; startedAt: string; finishedAt: string },
): void {
  const { exitCode, oom, startedAt, finishedAt } = end;
  if (status.reason !== "Evicted") status.phase = exitCode === 0 ? "Succeeded" : "Failed";
  const current = ((status.containerStatuses ?? []) as Json[])[0] ?? {};
  status.conditions = ((status.conditions ?? []) as Json[]).map((c) =>
    c.type === "Ready" || c.type === "ContainersReady"
      ? { ...c, status: "False", reason: "PodCompleted" }
      : c
  );
  status.containerStatuses = [{
    ...current,
    ready: false,
    started: false,
    state: {
      terminated: {
        exitCode,
        reason: oom ? "OOMKilled" : exitCode === 0 ? "Completed" : "Error",
        startedAt,
        finishedAt,
        containerID: current.containerID,
      },
    },
  }];
}
