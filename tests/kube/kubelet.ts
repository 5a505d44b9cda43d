/**
 * A kubelet (and scheduler) stand-in for the fake API server: places each pod
 * on its one node when the node selector fits, "pulls" images from a table,
 * resolves the container's environment and command line
 * (container_config.ts), runs the command as a local process group (in a
 * network namespace of its own when root), records its output as the pod log,
 * and reports phases, container states and exit codes through the API
 * (container_status.ts). Tests can evict or OOM-kill a pod, and deletion
 * follows the grace period, signalling the container's processes as a runtime
 * does (process_tree.ts).
 *
 * @module
 */

import { signalNumber } from "../../src/exit_codes.ts";
import { now } from "./api_objects.ts";
import {
  containerArgv,
  containerEnv,
  HOST_IP,
  type ImageSpec,
  NODE_NAME,
} from "./container_config.ts";
import {
  markRunning,
  markTerminated,
  pullFailures,
  startErrorStatus,
  unschedulableCondition,
  waitingStatus,
} from "./container_status.ts";
import type { FakeApiServer, KObject, StoreEvent } from "./fake_api_server.ts";
import type { PodAddress, PodNetwork } from "./pod_network.ts";
import { signalContainer } from "./process_tree.ts";

export { expandVariables, type ImageSpec } from "./container_config.ts";

/** Settings of a {@linkcode Kubelet}. */
export interface KubeletOptions {
  api: FakeApiServer;
  /** Images that can be pulled; any other name fails with ErrImagePull. */
  images: Record<string, ImageSpec>;
  /** The node's labels, for node selectors. */
  nodeLabels?: Record<string, string>;
  /** Pod networking; without it pods share the host's network. */
  network?: PodNetwork;
  /** Delete each pod the moment its container has exited (as an eager garbage collector would). */
  deleteWhenDone?: boolean;
}

interface RunningContainer {
  child: Deno.ChildProcess;
  /** Set once a deletion has sent SIGTERM. */
  terminating?: boolean;
  startedAt: string;
  /** How the stand-in is killing it: out of memory, or evicted. */
  killedFor?: "oom" | "eviction";
  address?: PodAddress;
  finished: Promise<void>;
}

function key(pod: KObject): string {
  return `${pod.metadata.namespace}/${pod.metadata.name}`;
}

type Json = Record<string, unknown>;

/** The node: runs the pods of a {@linkcode FakeApiServer}. */
export class Kubelet {
  #options: KubeletOptions;
  #unsubscribe: () => void;
  #running = new Map<string, RunningContainer>();
  #starting = new Set<Promise<void>>();
  #stopped = false;

  /** Starts running pods as they are created. */
  constructor(options: KubeletOptions) {
    this.#options = options;
    this.#unsubscribe = options.api.subscribe((event) => this.#onEvent(event));
  }

  /** The address pods reach the builder at. */
  get builderAddress(): string {
    return this.#options.network?.hostAddress ?? "127.0.0.1";
  }

  /** Kills every container and stops reacting. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unsubscribe();
    for (const container of this.#running.values()) signalContainer(container.child.pid, "SIGKILL");
    // A pod still starting checks #stopped before it spawns anything.
    await Promise.all(this.#starting);
  }

  /** The process id of a pod's container, while it runs. */
  pid(namespace: string, name: string): number | undefined {
    return this.#running.get(`${namespace}/${name}`)?.child.pid;
  }

  /**
   * Evicts a pod as the kubelet does under node pressure (a hard threshold, so
   * no grace period): marks it Failed/Evicted, then kills its container.
   */
  evict(namespace: string, name: string, message: string): void {
    const container = this.#running.get(`${namespace}/${name}`);
    this.#options.api.update("pods", namespace, name, (pod) => {
      const status = pod.status as Json;
      status.phase = "Failed";
      status.reason = "Evicted";
      status.message = message;
      status.conditions = [
        ...((status.conditions ?? []) as Json[]).filter((c) => c.type !== "DisruptionTarget"),
        {
          type: "DisruptionTarget",
          status: "True",
          reason: "TerminationByKubelet",
          message,
          lastTransitionTime: now(),
        },
      ];
    });
    if (container !== undefined) {
      container.killedFor = "eviction";
      signalContainer(container.child.pid, "SIGKILL");
    }
  }

  /** Kills a pod's whole container as the kernel's OOM killer does with memory.oom.group. */
  oomKill(namespace: string, name: string): void {
    const container = this.#running.get(`${namespace}/${name}`);
    if (container === undefined) throw new Error(`pod ${namespace}/${name} is not running`);
    container.killedFor = "oom";
    signalContainer(container.child.pid, "SIGKILL");
  }

  #onEvent(event: StoreEvent): void {
    if (this.#stopped || event.resource !== "pods") return;
    const pod = event.object;
    if (event.type === "ADDED") {
      const start = this.#admit(pod).catch((error) => {
        console.error(`kubelet stand-in: ${key(pod)}: ${(error as Error).stack}`);
      });
      this.#starting.add(start);
      start.finally(() => this.#starting.delete(start));
      return;
    }
    const container = this.#running.get(key(pod));
    if (event.type === "DELETED") {
      if (container !== undefined) signalContainer(container.child.pid, "SIGKILL");
      return;
    }
    const metadata = pod.metadata;
    if (metadata.deletionTimestamp !== undefined && container === undefined) {
      // Nothing runs (yet, or any more): the kubelet confirms the deletion at once.
      queueMicrotask(() => {
        if (!this.#running.has(key(pod))) {
          this.#options.api.remove("pods", metadata.namespace, metadata.name);
        }
      });
      return;
    }
    if (metadata.deletionTimestamp !== undefined && container !== undefined) {
      if (container.terminating) return;
      container.terminating = true;
      // The runtime signals the container's main process only; the rest of its
      // processes die with it when the grace period ends.
      try {
        Deno.kill(container.child.pid, "SIGTERM");
      } catch {
        // Exited meanwhile.
      }
      const graceMs = Number(metadata.deletionGracePeriodSeconds ?? 30) * 1000;
      const timer = setTimeout(() => signalContainer(container.child.pid, "SIGKILL"), graceMs);
      container.finished.finally(() => clearTimeout(timer));
    }
  }

  #update(pod: KObject, change: (status: Json, pod: KObject) => void): KObject | undefined {
    return this.#options.api.update("pods", pod.metadata.namespace, pod.metadata.name, (p) => {
      p.status ??= {};
      change(p.status as Json, p);
    });
  }

  #fits(pod: KObject): boolean {
    const nodeLabels: Record<string, string> = {
      "kubernetes.io/hostname": NODE_NAME,
      "kubernetes.io/os": "linux",
      ...this.#options.nodeLabels,
    };
    const selector = ((pod.spec as Json).nodeSelector ?? {}) as Record<string, string>;
    return Object.entries(selector).every(([k, v]) => nodeLabels[k] === v);
  }

  async #admit(pod: KObject): Promise<void> {
    if (!this.#fits(pod)) {
      this.#update(pod, (status) => {
        status.conditions = [unschedulableCondition()];
      });
      return;
    }
    const containerSpec = ((pod.spec as Json).containers as Json[])[0];
    const containerName = String(containerSpec.name);
    const image = String(containerSpec.image);
    const scheduled = { type: "PodScheduled", status: "True", lastTransitionTime: now() };
    const bound = this.#options.api.update(
      "pods",
      pod.metadata.namespace,
      pod.metadata.name,
      (p) => {
        (p.spec as Json).nodeName = NODE_NAME;
        p.status = {
          ...(p.status as Json),
          phase: "Pending",
          hostIP: HOST_IP,
          conditions: [scheduled],
          containerStatuses: [waitingStatus(containerName, image, "ContainerCreating", "")],
        };
      },
    );
    if (bound === undefined) return;
    const imageSpec = this.#options.images[image];
    if (imageSpec === undefined) {
      for (const failure of pullFailures(containerName, image)) {
        this.#update(pod, (status) => {
          status.containerStatuses = [failure];
        });
      }
      return;
    }
    const network = this.#options.network;
    const address = network === undefined ? undefined : await network.attach();
    const detach = async (): Promise<void> => {
      if (address !== undefined) await network?.detach(address.namespace);
    };
    const podIP = address?.ip ?? "127.0.0.1";
    const env = containerEnv(this.#options.api, bound, containerSpec, imageSpec, podIP);
    if (typeof env === "string") {
      this.#update(pod, (status) => {
        status.containerStatuses = [
          waitingStatus(containerName, image, "CreateContainerConfigError", env),
        ];
      });
      await detach();
      return;
    }
    const argv = containerArgv(containerSpec, imageSpec, env);
    const current = this.#options.api.get("pods", pod.metadata.namespace, pod.metadata.name);
    if (
      this.#stopped || current === undefined || current.metadata.deletionTimestamp !== undefined
    ) {
      await detach();
      return;
    }
    const launch = address === undefined
      ? argv
      : ["ip", "netns", "exec", address.namespace, ...argv];
    let child: Deno.ChildProcess;
    // A container's filesystem of its own, as far as its working directory goes (the image's
    // WORKDIR): a build that unpacks its source there must not touch the test's directory.
    const workdir = await Deno.makeTempDir({ prefix: "phonehome-container-" });
    try {
      if (argv.length === 0) throw new Error("no command specified");
      child = new Deno.Command(launch[0], {
        args: launch.slice(1),
        env,
        clearEnv: true,
        cwd: workdir,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        detached: true,
      }).spawn();
    } catch (error) {
      await Deno.remove(workdir, { recursive: true }).catch(() => {});
      this.#update(pod, (status) => {
        status.phase = "Failed";
        status.containerStatuses = [
          startErrorStatus(containerName, image, argv[0], (error as Error).message),
        ];
      });
      await detach();
      return;
    }
    const startedAt = now();
    let resolveFinished!: () => void;
    const running: RunningContainer = {
      child,
      startedAt,
      address,
      finished: new Promise((resolve) => (resolveFinished = resolve)),
    };
    this.#running.set(key(pod), running);
    this.#update(pod, (status) => {
      markRunning(status, { scheduled, podIP, startedAt, name: containerName, image });
    });
    const uid = String(bound.metadata.uid);
    const collect = async (stream: ReadableStream<Uint8Array>): Promise<void> => {
      for await (const chunk of stream) this.#options.api.appendLog(uid, containerName, chunk);
    };
    const pipes = Promise.all([collect(child.stdout), collect(child.stderr)]);
    const exit = await child.status;
    // When a container's main process exits, the rest of its processes go with it.
    signalContainer(child.pid, "SIGKILL");
    await pipes;
    await Deno.remove(workdir, { recursive: true }).catch(() => {});
    const exitCode = exit.signal === null ? exit.code : 128 + signalNumber(exit.signal);
    const oom = running.killedFor === "oom";
    const finishedAt = now();
    const after = this.#update(pod, (status) => {
      markTerminated(status, { exitCode, oom, startedAt, finishedAt });
    });
    this.#running.delete(key(pod));
    await detach();
    if (
      after !== undefined &&
      (after.metadata.deletionTimestamp !== undefined || this.#options.deleteWhenDone)
    ) {
      this.#options.api.remove("pods", pod.metadata.namespace, pod.metadata.name);
    }
    resolveFinished();
  }
}
