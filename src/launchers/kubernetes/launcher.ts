/**
 * The Kubernetes launcher: runs one build as a Pod or Job whose relay phones
 * home to this process's receiver, fails fast when the pod cannot, and deletes
 * what it created when the build is over, however it ended: the Secret first,
 * each deletion retried within its own budget, and whatever stays behind named
 * with the command that removes it.
 *
 * @module
 */

import type * as k8s from "@kubernetes/client-node";
import { UsageError } from "../../errors.ts";
import { signalExitCode } from "../../exit_codes.ts";
import { type BuildReceiver, isWildcard, type ReceiverOptions } from "../../receiver/receiver.ts";
import type { RelayTuning } from "../../relay/tuning.ts";
import { KubeClient } from "./client.ts";
import { KubernetesApiError } from "./errors.ts";
import type { KubernetesSettings } from "./settings.ts";
import {
  buildJob,
  buildPod,
  buildSecret,
  loadTemplate,
  planWorkload,
  type WorkloadPlan,
} from "./manifest.ts";
import { BuildSupervisor } from "./supervisor.ts";

/**
 * Extra time the receiver waits for the relay beyond the pod's start deadline,
 * so that the supervisor, which knows why the pod did not start, speaks first.
 */
const RECEIVER_DEADLINE_SLACK_MS = 10_000;

/**
 * Whether a build object exists: created, never made, or unknown (a create
 * that failed after its request may have been carried out).
 */
type Presence = "created" | "absent" | "unknown";

/**
 * Where a failed create leaves its object: tries that were all refused or
 * never sent, or a 409 for an object that is not this build's, made nothing;
 * after a lost answer, a 5xx or a timeout the object may exist.
 */
function presenceAfter(error: KubernetesApiError): Presence {
  return error.status === 409 || !error.mayHaveTakenEffect ? "absent" : "unknown";
}

/** What running a prepared build needs. */
export interface KubernetesRunInput {
  /** The build command: the container's args, run by the image's relay entrypoint. */
  command: readonly string[];
  /** A started receiver, made from {@linkcode KubernetesBuild.receiverOptions}. */
  receiver: BuildReceiver;
  /** The per-build secret the receiver expects. */
  token: string;
  /** The per-build CA the receiver's certificate comes from, for the relay to trust. */
  caPem?: string;
  /** Dispatches a `signal` event (detail: the signal name) on the first SIGINT/SIGTERM. */
  signals?: EventTarget;
}

/**
 * Loads cluster credentials and the template, and plans the build's objects;
 * everything that can be wrong with the settings is found here, before
 * anything is created. `tuning` goes to the relay in the pod, through its
 * environment.
 */
export async function prepareKubernetesBuild(
  { settings, receiverOptions, tuning }: {
    settings: KubernetesSettings;
    receiverOptions: ReceiverOptions;
    tuning: RelayTuning;
  },
): Promise<KubernetesBuild> {
  const relayEnv = tuning.toEnv();
  if (receiverOptions.advertiseHost === undefined && isWildcard(receiverOptions.hostname)) {
    throw new UsageError(
      "The kubernetes backend needs an address the build pod can dial: set POD_IP from the " +
        "downward API (status.podIP) or --advertise-host.",
    );
  }
  const template = settings.templatePath === undefined
    ? undefined
    : await loadTemplate(settings.templatePath);
  const plan = planWorkload(settings, template);
  const client = KubeClient.load(settings.access, settings.retry);
  return new KubernetesBuild({ settings, plan, client, receiverOptions, relayEnv });
}

/** One planned build on Kubernetes; {@linkcode run} creates and follows it. */
export class KubernetesBuild {
  #settings: KubernetesSettings;
  #plan: WorkloadPlan;
  #client: KubeClient;
  #startTimeoutMs: number;
  #relayEnv: Record<string, string>;
  /** Receiver settings for this build: the relay's deadline leaves the supervisor room. */
  readonly receiverOptions: ReceiverOptions;

  /** Use {@linkcode prepareKubernetesBuild}. */
  constructor(parts: {
    settings: KubernetesSettings;
    plan: WorkloadPlan;
    client: KubeClient;
    receiverOptions: ReceiverOptions;
    relayEnv: Record<string, string>;
  }) {
    this.#settings = parts.settings;
    this.#plan = parts.plan;
    this.#client = parts.client;
    this.#relayEnv = parts.relayEnv;
    this.#startTimeoutMs = parts.receiverOptions.connectTimeoutMs;
    this.receiverOptions = {
      ...parts.receiverOptions,
      connectTimeoutMs: parts.receiverOptions.connectTimeoutMs + RECEIVER_DEADLINE_SLACK_MS,
    };
  }

  /** Creates the Secret and the Pod or Job, follows the build, cleans up; resolves with the status. */
  async run(input: KubernetesRunInput): Promise<number> {
    const { receiver } = input;
    const plan = this.#plan;
    const wiring = {
      url: receiver.url,
      relayEnv: this.#relayEnv,
      command: input.command,
      ca: input.caPem !== undefined,
    };
    const workload = plan.kind === "job"
      ? buildJob(plan, { settings: this.#settings, wiring })
      : buildPod(plan, { settings: this.#settings, wiring });
    const podSpec = plan.kind === "job"
      ? (workload as k8s.V1Job).spec?.template.spec
      : (workload as k8s.V1Pod).spec;
    const image = podSpec?.containers.find((c) => c.name === plan.containerName)?.image ?? "";
    const created: { secret: Presence; workload: Presence } = {
      secret: "absent",
      workload: "absent",
    };
    // Each retry is one line, and only with --verbose: a retry that succeeds is nobody's concern.
    if (this.receiverOptions.verbose) {
      this.#client.onRetry = (line) => {
        receiver.message(line);
      };
    }
    const supervisor = new BuildSupervisor({
      client: this.#client,
      plan,
      receiver,
      url: receiver.url,
      image,
      startTimeoutMs: this.#startTimeoutMs,
      watchTimeoutMs: this.#settings.watchTimeoutMs,
      tickMs: this.#settings.tickMs,
    });
    // Listening from the start: a signal while the pod is being created must not be lost.
    const onSignal: EventListener = (event) => {
      const signal = (event as CustomEvent<Deno.Signal>).detail;
      if (!receiver.connected) {
        receiver.abort(
          signalExitCode(signal),
          `Stopped by ${signal} before the build pod phoned home.`,
        );
        return;
      }
      // Deleting the pod makes the kubelet send SIGTERM to the relay, which passes it on to
      // the build and still reports how the build ended.
      supervisor.deletingOurselves();
      this.#deleteWorkload().catch((error: Error) => {
        receiver.abort(signalExitCode(signal), `${error.message} Stopped by ${signal}.`);
      });
    };
    input.signals?.addEventListener("signal", onSignal);
    let creating: keyof typeof created = "secret";
    try {
      await this.#client.createSecret(
        buildSecret(plan, { token: input.token, caPem: input.caPem }),
      );
      created.secret = "created";
      creating = "workload";
      if (plan.kind === "job") await this.#client.createJob(workload as k8s.V1Job);
      else await this.#client.createPod(workload as k8s.V1Pod);
      created.workload = "created";
    } catch (error) {
      input.signals?.removeEventListener("signal", onSignal);
      if (!(error instanceof KubernetesApiError)) throw error;
      created[creating] = presenceAfter(error);
      receiver.abort(error.exitCode, error.message);
      const outcome = await receiver.outcome;
      await this.#cleanUp(receiver, created);
      return outcome.exitCode;
    }
    // A signal may already have ended the receiver; then there is nothing to watch.
    if (!receiver.done) supervisor.start();
    const outcome = await receiver.outcome;
    input.signals?.removeEventListener("signal", onSignal);
    await supervisor.stop();
    // The old builder's banners ("Build complete.") are the hook's; a failed build gets how
    // Kubernetes ended its pod, when it did.
    const explanation = outcome.exit !== undefined && outcome.exitCode !== 0
      ? supervisor.explanation()
      : undefined;
    if (explanation !== undefined) await receiver.message(explanation);
    await this.#cleanUp(receiver, created);
    return outcome.exitCode;
  }

  #deleteWorkload(): Promise<boolean> {
    return this.#plan.kind === "job"
      ? this.#client.deleteJob(this.#plan.name)
      : this.#client.deletePod(this.#plan.name);
  }

  /**
   * Deletes what the build created, the Secret first: the token must not
   * outlive the build. Each deletion retries within its own budget; what still
   * cannot be deleted is named, with the command that removes it.
   */
  async #cleanUp(
    receiver: BuildReceiver,
    created: { secret: Presence; workload: Presence },
  ): Promise<void> {
    const plan = this.#plan;
    if (created.secret !== "absent") {
      await this.#remove(
        receiver,
        { kind: "secret", name: plan.secretName, presence: created.secret },
        () => this.#client.deleteSecret(plan.secretName),
      );
    }
    if (created.workload === "absent") return;
    if (created.workload === "created" && this.#settings.keepPod) {
      await receiver.message(
        `Keeping ${plan.kind} ${plan.name} (--keep-pod); 'phonehome gc' removes it later.`,
      );
      return;
    }
    await this.#remove(
      receiver,
      { kind: plan.kind, name: plan.name, presence: created.workload },
      () => this.#deleteWorkload(),
    );
  }

  /**
   * Runs one deletion; when it fails for good, says what is left (or may be,
   * after a create whose outcome is unknown) and how to remove it.
   */
  async #remove(
    receiver: BuildReceiver,
    object: { kind: string; name: string; presence: Presence },
    remove: () => Promise<boolean>,
  ): Promise<void> {
    try {
      await remove();
    } catch (error) {
      if (!(error instanceof KubernetesApiError)) throw error;
      const { kind, name } = object;
      const tries = `${error.tries} ${error.tries === 1 ? "try" : "tries"}`;
      const command = `kubectl -n ${this.#client.namespace} delete ${kind} ${name}`;
      const sure = object.presence === "created";
      const holding = kind !== "secret"
        ? ""
        : sure
        ? "; it holds the build's token"
        : "; it may hold the build's token";
      await receiver.message(
        sure
          ? `Could not delete ${kind} ${name} after ${tries}: ${error.problem}${holding}. ` +
            `Remove it with: ${command}`
          : `Could not make sure ${kind} ${name} is gone after ${tries}: ${error.problem}` +
            `${holding}. If it exists, remove it with: ${command}`,
      );
    }
  }
}
