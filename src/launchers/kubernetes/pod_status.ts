/**
 * Reading a build pod's status: what phonehome needs from a pod object, and a
 * plain-words judgement of where the pod stands. Pod status only explains
 * failures the phone-home stream could not report itself.
 *
 * @module
 */

/** Waiting reasons that mean the image will not be pulled without someone fixing something. */
const IMAGE_PULL_FAILURES = new Set([
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "ErrImageNeverPull",
  "RegistryUnavailable",
]);

/** Waiting reasons that mean the container cannot be created or started as specified. */
const START_FAILURES = new Set([
  "CreateContainerConfigError",
  "CreateContainerError",
  "RunContainerError",
  "PreCreateHookError",
  "PreStartHookError",
]);

/** The build container's state, as the kubelet reports it. */
export interface ContainerView {
  /** The image the pod asked for. */
  image: string;
  /** Set while the container is not running yet (or again). */
  waiting?: { reason: string; message: string };
  /** Whether the container is running now. */
  running: boolean;
  /** Set once the container has exited. */
  terminated?: { exitCode: number; reason: string; message: string; started: boolean };
}

/** What phonehome reads from a pod object. */
export interface PodView {
  name: string;
  uid: string;
  /** Whether a deletion has been requested (the pod is terminating). */
  deleting: boolean;
  /** Pending, Running, Succeeded, Failed or Unknown. */
  phase: string;
  /** The pod-level reason, such as `Evicted` or `DeadlineExceeded`. */
  reason: string;
  message: string;
  /** The scheduler's message while the pod cannot be placed on a node. */
  unschedulable?: string;
  /** The build container's state; undefined before the kubelet reports it. */
  container?: ContainerView;
  /** Kubernetes set a DisruptionTarget condition: eviction, preemption or a taint is ending it. */
  disruption?: string;
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as Record<string, unknown>
    : {};
}

function list(value: unknown): Record<string, unknown>[] {
  return Array.isArray(value) ? value.map(record) : [];
}

function text(value: unknown): string {
  return typeof value === "string" ? value : "";
}

/** The name of the container that runs the build: `preferred` when the pod has it, else the first. */
export function buildContainerName(spec: Record<string, unknown>, preferred?: string): string {
  const containers = list(spec.containers);
  const named = containers.find((c) => c.name === preferred);
  return text((named ?? containers[0])?.name);
}

/** Reads a pod object (watch event or list item) into a {@linkcode PodView}. */
export function readPod(object: Record<string, unknown>, containerName: string): PodView {
  const metadata = record(object.metadata);
  const spec = record(object.spec);
  const status = record(object.status);
  const conditions = list(status.conditions);
  const scheduled = conditions.find((c) => c.type === "PodScheduled");
  const disruption = conditions.find((c) => c.type === "DisruptionTarget" && c.status === "True");
  const view: PodView = {
    name: text(metadata.name),
    uid: text(metadata.uid),
    deleting: metadata.deletionTimestamp !== undefined && metadata.deletionTimestamp !== null,
    phase: text(status.phase) || "Pending",
    reason: text(status.reason),
    message: text(status.message),
  };
  if (scheduled?.status === "False" && scheduled.reason === "Unschedulable") {
    view.unschedulable = text(scheduled.message) || "no node fits the pod";
  }
  if (disruption !== undefined) {
    view.disruption = [text(disruption.reason), text(disruption.message)].filter(Boolean).join(
      ": ",
    );
  }
  const specContainer = list(spec.containers).find((c) => c.name === containerName);
  const containerStatus = list(status.containerStatuses).find((c) => c.name === containerName);
  if (containerStatus !== undefined) {
    const state = record(containerStatus.state);
    const waiting = record(state.waiting);
    const terminated = record(state.terminated);
    const container: ContainerView = {
      image: text(specContainer?.image) || text(containerStatus.image),
      running: state.running !== undefined && state.running !== null,
    };
    if (state.waiting !== undefined && state.waiting !== null) {
      container.waiting = { reason: text(waiting.reason), message: text(waiting.message) };
    }
    if (state.terminated !== undefined && state.terminated !== null) {
      container.terminated = {
        exitCode: typeof terminated.exitCode === "number" ? terminated.exitCode : -1,
        reason: text(terminated.reason),
        message: text(terminated.message),
        started: terminated.startedAt !== undefined && terminated.startedAt !== null,
      };
    }
    view.container = container;
  }
  return view;
}

/** Where a pod stands, in words fit to follow "Pod NAME ...". */
export type PodAssessment =
  /** Not running yet; `why` says what it waits for. */
  | { kind: "starting"; why: string }
  /** The build container runs. */
  | { kind: "running" }
  /** The pod will never run the build as it is. */
  | { kind: "cannotStart"; why: string }
  /** The build container has stopped for good; `ran` says whether it ever started. */
  | { kind: "ended"; why: string; ran: boolean; exitCode?: number };

function sentenceEnd(text: string): string {
  const trimmed = text.trim();
  if (trimmed === "") return "";
  return /[.!?]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

function withMessage(head: string, message: string): string {
  const tail = sentenceEnd(message);
  return tail === "" ? `${head}.` : `${head}: ${tail}`;
}

/** Judges a pod's state from its status. */
export function assessPod(pod: PodView): PodAssessment {
  const container = pod.container;
  const terminated = container?.terminated;
  if (pod.reason === "Evicted") {
    return {
      kind: "ended",
      why: withMessage("was evicted", pod.message),
      ran: terminated?.started ?? container?.running ?? false,
      exitCode: terminated?.exitCode,
    };
  }
  if (pod.reason === "DeadlineExceeded") {
    return {
      kind: "ended",
      why: withMessage(
        "ran past its deadline (activeDeadlineSeconds) and was stopped",
        pod.message,
      ),
      ran: terminated?.started ?? container?.running ?? false,
      exitCode: terminated?.exitCode,
    };
  }
  if (terminated !== undefined) {
    const ran = terminated.started || terminated.exitCode >= 0;
    if (terminated.reason === "OOMKilled") {
      return {
        kind: "ended",
        why: `was OOM-killed (exit ${terminated.exitCode}, OOMKilled): the build needed more ` +
          `memory than the container's limit`,
        ran,
        exitCode: terminated.exitCode,
      };
    }
    const how =
      terminated.reason && terminated.reason !== "Error" && terminated.reason !== "Completed"
        ? ` (${terminated.reason}${terminated.message ? `: ${terminated.message.trim()}` : ""})`
        : "";
    return {
      kind: "ended",
      why: `ended: its build container exited with code ${terminated.exitCode}${how}`,
      ran,
      exitCode: terminated.exitCode,
    };
  }
  if (pod.phase === "Failed" || pod.phase === "Succeeded") {
    return {
      kind: "ended",
      why: withMessage(
        `ended in phase ${pod.phase}${pod.reason ? ` (${pod.reason})` : ""}`,
        pod.message,
      ),
      ran: false,
    };
  }
  const waiting = container?.waiting;
  if (waiting !== undefined && IMAGE_PULL_FAILURES.has(waiting.reason)) {
    return {
      kind: "cannotStart",
      why: withMessage(
        `cannot pull its image ${JSON.stringify(container?.image ?? "")} (${waiting.reason})`,
        waiting.message,
      ),
    };
  }
  if (waiting !== undefined && START_FAILURES.has(waiting.reason)) {
    return {
      kind: "cannotStart",
      why: withMessage(`cannot start its build container (${waiting.reason})`, waiting.message),
    };
  }
  if (container?.running) return { kind: "running" };
  if (pod.unschedulable !== undefined) {
    return { kind: "starting", why: withMessage("cannot be scheduled", pod.unschedulable) };
  }
  if (waiting !== undefined && waiting.reason !== "") {
    return {
      kind: "starting",
      why: withMessage(`is still waiting (${waiting.reason})`, waiting.message),
    };
  }
  return { kind: "starting", why: `is still ${pod.phase === "Pending" ? "pending" : pod.phase}.` };
}
