/**
 * Failing fast while the receiver waits: follows the build pod's status and
 * ends the build, with a plain sentence, when the pod cannot start, is killed
 * or deleted, or runs without ever phoning home. The phone-home stream stays
 * the source of truth: once the receiver has its verdict, pod status only
 * adds an explanation.
 *
 * @module
 */

import { ExitCode } from "../../exit_codes.ts";
import { formatDuration } from "../../format.ts";
import type { BuildReceiver } from "../../receiver/receiver.ts";
import { settlesWithin, type Timer } from "../../timing.ts";
import type { KubeClient } from "./client.ts";
import type { WorkloadPlan } from "./manifest.ts";
import { showPodLog } from "./pod_log.ts";
import { assessPod, type PodAssessment, type PodView } from "./pod_status.ts";
import { PodWatcher } from "./pod_watch.ts";

/**
 * How long the stream may take to conclude after the pod reports its container
 * ended: frames the relay sent before it died may still be in flight.
 */
const TERMINATION_SETTLE_MS = 2_000;

/** Settings of a {@linkcode BuildSupervisor}. */
export interface SupervisorOptions {
  client: KubeClient;
  plan: WorkloadPlan;
  receiver: BuildReceiver;
  /** The URL the relay must dial, for messages. */
  url: string;
  /** The image the pod runs, for messages. */
  image: string;
  /** How long the pod may take to phone home. */
  startTimeoutMs: number;
  watchTimeoutMs: number;
  tickMs: number;
}

/** Watches one build's pod and aborts the receiver when the pod cannot deliver. */
export class BuildSupervisor {
  #options: SupervisorOptions;
  #watcher: PodWatcher;
  #pod: PodView | undefined;
  #podName: string | undefined;
  #startTimer: Timer | undefined;
  #failing = false;
  #deletingOurselves = false;
  #reportedUnschedulable = false;
  #gone = false;
  #lastAssessment: PodAssessment | undefined;

  /** Creates a supervisor; {@linkcode start} begins watching. */
  constructor(options: SupervisorOptions) {
    this.#options = options;
    const { plan } = options;
    if (plan.kind === "pod") this.#podName = plan.name;
    this.#watcher = new PodWatcher({
      client: options.client,
      selector: plan.kind === "pod"
        ? { fieldSelector: `metadata.name=${plan.name}` }
        : { labelSelector: Object.entries(plan.labels).map(([k, v]) => `${k}=${v}`).join(",") },
      containerName: plan.containerName,
      watchTimeoutMs: options.watchTimeoutMs,
      tickMs: options.tickMs,
      listener: {
        onList: (pods) => this.#onList(pods),
        onPod: (pod) => this.#onPod(pod),
        onDeleted: (pod) => {
          if (pod.name === this.#podName) this.#onGone();
        },
        onTrouble: (message) => this.#options.receiver.message(message),
      },
    });
  }

  /** Starts watching the pod and the start deadline. */
  start(): void {
    this.#watcher.start();
    this.#startTimer = setTimeout(() => this.#startDeadlinePassed(), this.#options.startTimeoutMs);
  }

  /** Stops watching; waits a little for the watch loop, never long. */
  async stop(): Promise<void> {
    clearTimeout(this.#startTimer);
    await settlesWithin(this.#watcher.stop(), 1_000);
  }

  /** Tells the supervisor that phonehome itself is deleting the pod, so that is no failure. */
  deletingOurselves(): void {
    this.#deletingOurselves = true;
  }

  /**
   * A sentence explaining how Kubernetes ended the pod (evicted, deadline,
   * OOM-killed, deleted), for a build whose own status is a failure.
   */
  explanation(): string | undefined {
    const pod = this.#pod;
    if (pod === undefined) return undefined;
    if (pod.disruption !== undefined) {
      return `Kubernetes was ending pod ${pod.name} (${pod.disruption}).`;
    }
    const assessment = assessPod(pod);
    if (assessment.kind === "ended" && /evicted|deadline|OOM/.test(assessment.why)) {
      return `Pod ${pod.name} ${assessment.why}`;
    }
    if ((pod.deleting || this.#gone) && !this.#deletingOurselves) {
      return `Pod ${pod.name} was deleted while the build ran.`;
    }
    return undefined;
  }

  /**
   * Whether the build's end is no longer the pod's to decide: the supervisor
   * failed it already, or FINISHED has arrived, so everything the build wrote
   * is here and the receiver concludes on its own, however slowly its output
   * is read.
   */
  get #settled(): boolean {
    const { receiver } = this.#options;
    return this.#failing || receiver.done || receiver.answered || receiver.finishedArrived;
  }

  #onList(pods: PodView[]): void {
    const pod = pods.find((p) => p.name === this.#podName) ??
      (this.#podName === undefined ? pods[0] : undefined);
    if (pod !== undefined) {
      this.#onPod(pod);
    } else if (this.#podName !== undefined && (this.#options.plan.kind === "pod" || this.#pod)) {
      // The pod was created before the first list, so its absence means it was deleted.
      this.#onGone();
    }
  }

  #onPod(pod: PodView): void {
    // A Job's pod is not known by name until it appears; follow the first one.
    this.#podName ??= pod.name;
    if (pod.name !== this.#podName) return;
    this.#pod = pod;
    if (this.#settled) return;
    const assessment = assessPod(pod);
    this.#lastAssessment = assessment;
    switch (assessment.kind) {
      case "cannotStart":
        this.#fail(ExitCode.neverConnected, `Pod ${pod.name} ${assessment.why}`);
        return;
      case "ended":
        this.#ended(pod, assessment);
        return;
      case "starting":
        if (pod.unschedulable !== undefined && !this.#reportedUnschedulable) {
          this.#reportedUnschedulable = true;
          this.#options.receiver.message(
            `Pod ${pod.name} ${assessment.why} Waiting up to ` +
              `${formatDuration(this.#options.startTimeoutMs)} for room on a node.`,
          );
        }
        return;
      case "running":
        return;
    }
  }

  async #ended(pod: PodView, assessment: PodAssessment & { kind: "ended" }): Promise<void> {
    const { receiver } = this.#options;
    if (receiver.connected) {
      // The relay is gone; let whatever it sent before it died arrive first.
      await settlesWithin(receiver.outcome, TERMINATION_SETTLE_MS);
      if (this.#settled) return;
      this.#fail(
        ExitCode.lostRelay,
        `Pod ${pod.name} ${assessment.why.replace(/\.$/, "")}, before the build finished.`,
      );
      return;
    }
    this.#failing = true;
    if (assessment.ran) await this.#showLog(pod.name);
    this.#failNow(
      ExitCode.neverConnected,
      `Pod ${pod.name} ${assessment.why.replace(/\.$/, "")}, and its relay never phoned home. ` +
        `Check that the image ${JSON.stringify(this.#options.image)} runs ` +
        `'phonehome relay -- ...' as its entrypoint and that the pod can reach ` +
        `${this.#options.url}.`,
    );
  }

  async #onGone(): Promise<void> {
    if (this.#gone) return;
    this.#gone = true;
    if (this.#settled || this.#deletingOurselves) return;
    const { receiver, plan, client } = this.#options;
    const name = this.#podName ?? plan.name;
    let why = `Pod ${name} was deleted`;
    if (plan.kind === "job") {
      const job = await client.readJob(plan.name).catch(() => undefined);
      const failed = job?.status?.conditions?.find((c) =>
        c.type === "Failed" && c.status === "True"
      );
      if (failed?.reason === "DeadlineExceeded") {
        why =
          `Job ${plan.name} ran past its deadline (activeDeadlineSeconds) and its pod was deleted`;
      } else if (job === undefined) {
        why = `Job ${plan.name} was deleted, and its pod with it`;
      }
    }
    if (receiver.connected) {
      await settlesWithin(receiver.outcome, TERMINATION_SETTLE_MS);
      if (this.#settled) return;
      this.#fail(ExitCode.lostRelay, `${why} before the build finished.`);
    } else {
      this.#fail(ExitCode.neverConnected, `${why} before its relay phoned home.`);
    }
  }

  async #startDeadlinePassed(): Promise<void> {
    const { receiver, startTimeoutMs, plan } = this.#options;
    if (this.#settled || receiver.connected) return;
    const within = formatDuration(startTimeoutMs);
    const pod = this.#pod;
    if (pod === undefined) {
      this.#fail(
        ExitCode.neverConnected,
        plan.kind === "job"
          ? `Job ${plan.name} created no pod within ${within}; check the job's events ` +
            `(kubectl describe job ${plan.name}) for quota or admission errors.`
          : `Pod ${plan.name} was not seen within ${within}; check that the API server is ` +
            `reachable from the builder.`,
      );
      return;
    }
    const assessment = this.#lastAssessment ?? assessPod(pod);
    if (assessment.kind === "running") {
      this.#failing = true;
      await this.#showLog(pod.name);
      this.#failNow(
        ExitCode.neverConnected,
        `Pod ${pod.name} is running, but its relay did not phone home within ${within}. ` +
          `Check that the image ${JSON.stringify(this.#options.image)} runs ` +
          `'phonehome relay -- ...' as its entrypoint and that the pod can reach ` +
          `${this.#options.url} (network policies).`,
      );
      return;
    }
    const why = assessment.kind === "starting" ? assessment.why : "did not start.";
    const hint = pod.unschedulable !== undefined
      ? " Check the node selector (BUILDER_POD_NODE_SELECTOR), the resource requests and " +
        "the cluster's free capacity."
      : "";
    this.#fail(
      ExitCode.neverConnected,
      `Pod ${pod.name} did not start within ${within}: it ${why}${hint}`,
    );
  }

  async #showLog(pod: string): Promise<void> {
    await showPodLog({
      client: this.#options.client,
      receiver: this.#options.receiver,
      pod,
      container: this.#options.plan.containerName,
      heading: `The relay in pod ${pod} never phoned home; here is what the pod log holds:`,
    });
  }

  #fail(exitCode: number, message: string): void {
    if (this.#settled) return;
    this.#failNow(exitCode, message);
  }

  #failNow(exitCode: number, message: string): void {
    this.#failing = true;
    clearTimeout(this.#startTimer);
    this.#options.receiver.abort(exitCode, message);
  }
}
