/**
 * A kubelet (and scheduler) stand-in for the fake API server: places each pod
 * on its one node when the node selector fits, "pulls" images from a table,
 * resolves the container's environment (values, Secrets, the downward API),
 * runs the container's command as a local process group (in a network
 * namespace of its own when root), records its output as the pod log, and
 * reports phases, container states and exit codes through the API. Tests can
 * evict or OOM-kill a pod, and deletion follows the grace period.
 *
 * @module
 */

import { signalNumber } from "../../src/exit_codes.ts";
import type { FakeApiServer, KObject, StoreEvent } from "./fake_api_server.ts";
import type { PodAddress, PodNetwork } from "./pod_network.ts";

/** What an image holds, for the stand-in: its ENTRYPOINT, CMD and environment. */
export interface ImageSpec {
  entrypoint?: string[];
  cmd?: string[];
  env?: Record<string, string>;
}

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

const NODE_NAME = "fake-node-1";

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}

/** Expands `$(VAR)` the way Kubernetes does in env values, command and args; `$$` is a `$`. */
export function expandVariables(text: string, env: Record<string, string>): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== "$" || i + 1 >= text.length) {
      out += c;
      continue;
    }
    const next = text[i + 1];
    if (next === "$") {
      out += "$";
      i++;
    } else if (next === "(") {
      const close = text.indexOf(")", i + 2);
      const name = close === -1 ? "" : text.slice(i + 2, close);
      if (close !== -1 && name in env) {
        out += env[name];
        i = close;
      } else {
        out += c;
      }
    } else {
      out += c;
    }
  }
  return out;
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
    for (const container of this.#running.values()) this.#killGroup(container, "SIGKILL");
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
      this.#killGroup(container, "SIGKILL");
    }
  }

  /** Kills a pod's whole container as the kernel's OOM killer does with memory.oom.group. */
  oomKill(namespace: string, name: string): void {
    const container = this.#running.get(`${namespace}/${name}`);
    if (container === undefined) throw new Error(`pod ${namespace}/${name} is not running`);
    container.killedFor = "oom";
    this.#killGroup(container, "SIGKILL");
  }

  /**
   * Signals every process of a container, as a runtime does through its cgroup: the main
   * process's whole tree and their process groups (the relay runs the build in a group of
   * its own), gathered before any of them dies and orphans the rest.
   */
  #killGroup(container: RunningContainer, signal: Deno.Signal): void {
    const pids = processTree(container.child.pid);
    const groups = new Set(pids.map(processGroup).filter((g) => g > 1));
    for (const target of [...pids, ...[...groups].map((g) => -g)]) {
      try {
        Deno.kill(target, signal);
      } catch {
        // Already gone.
      }
    }
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
      if (container !== undefined) this.#killGroup(container, "SIGKILL");
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
      const timer = setTimeout(() => this.#killGroup(container, "SIGKILL"), graceMs);
      container.finished.finally(() => clearTimeout(timer));
    }
  }

  #update(pod: KObject, change: (status: Json, pod: KObject) => void): KObject | undefined {
    return this.#options.api.update("pods", pod.metadata.namespace, pod.metadata.name, (p) => {
      p.status ??= {};
      change(p.status as Json, p);
    });
  }

  async #admit(pod: KObject): Promise<void> {
    const spec = pod.spec as Json;
    const nodeLabels = {
      "kubernetes.io/hostname": NODE_NAME,
      "kubernetes.io/os": "linux",
      ...this.#options.nodeLabels,
    };
    const selector = (spec.nodeSelector ?? {}) as Record<string, string>;
    const fits = Object.entries(selector).every(([k, v]) =>
      (nodeLabels as Record<string, string>)[k] === v
    );
    if (!fits) {
      this.#update(pod, (status) => {
        status.conditions = [{
          type: "PodScheduled",
          status: "False",
          reason: "Unschedulable",
          message: "0/1 nodes are available: 1 node(s) didn't match Pod's node " +
            "affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not " +
            "helpful for scheduling.",
          lastProbeTime: null,
          lastTransitionTime: now(),
        }];
      });
      return;
    }
    const containerSpec = (spec.containers as Json[])[0];
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
          hostIP: "10.0.0.1",
          conditions: [scheduled],
          containerStatuses: [waitingStatus(containerName, image, "ContainerCreating", "")],
        };
      },
    );
    if (bound === undefined) return;
    const imageSpec = this.#options.images[image];
    if (imageSpec === undefined) {
      const reference = image.includes("/") ? image : `docker.io/library/${image}`;
      const pullError = `failed to pull and unpack image "${reference}": failed to resolve ` +
        `reference "${reference}": ${reference}: not found`;
      this.#update(pod, (status) => {
        status.containerStatuses = [waitingStatus(containerName, image, "ErrImagePull", pullError)];
      });
      // Newer kubelets keep the pull error in the back-off message.
      this.#update(pod, (status) => {
        status.containerStatuses = [
          waitingStatus(
            containerName,
            image,
            "ImagePullBackOff",
            `Back-off pulling image "${image}": ErrImagePull: ${pullError}`,
          ),
        ];
      });
      return;
    }
    const address = this.#options.network === undefined
      ? undefined
      : await this.#options.network.attach();
    const podIP = address?.ip ?? "127.0.0.1";
    const env = this.#resolveEnv(bound, containerSpec, imageSpec, podIP);
    if (typeof env === "string") {
      this.#update(pod, (status) => {
        status.containerStatuses = [
          waitingStatus(containerName, image, "CreateContainerConfigError", env),
        ];
      });
      if (address !== undefined) await this.#options.network?.detach(address.namespace);
      return;
    }
    const expand = (list: unknown): string[] =>
      ((list ?? []) as string[]).map((arg) => expandVariables(arg, env));
    const command = containerSpec.command === undefined
      ? (imageSpec.entrypoint ?? [])
      : expand(containerSpec.command);
    const args = containerSpec.args === undefined
      ? (containerSpec.command === undefined ? (imageSpec.cmd ?? []) : [])
      : expand(containerSpec.args);
    const argv = [...command, ...args];
    const current = this.#options.api.get("pods", pod.metadata.namespace, pod.metadata.name);
    if (
      this.#stopped || current === undefined || current.metadata.deletionTimestamp !== undefined
    ) {
      if (address !== undefined) await this.#options.network?.detach(address.namespace);
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
        status.containerStatuses = [{
          ...waitingStatus(containerName, image, "", ""),
          state: {
            terminated: {
              exitCode: 128,
              reason: "StartError",
              message: `failed to create containerd task: exec: "${argv[0]}": ` +
                `${(error as Error).message}`,
              startedAt: null,
              finishedAt: now(),
            },
          },
        }];
      });
      if (address !== undefined) await this.#options.network?.detach(address.namespace);
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
        name: containerName,
        image,
        imageID: `${image}@sha256:${"0".repeat(64)}`,
        containerID: `containerd://${crypto.randomUUID().replace(/-/g, "")}`,
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt } },
      }];
    });
    const uid = String(bound.metadata.uid);
    const collect = async (stream: ReadableStream<Uint8Array>): Promise<void> => {
      for await (const chunk of stream) this.#options.api.appendLog(uid, containerName, chunk);
    };
    const pipes = Promise.all([collect(child.stdout), collect(child.stderr)]);
    const exit = await child.status;
    // When a container's main process exits, the rest of its processes go with it.
    this.#killGroup(running, "SIGKILL");
    await pipes;
    await Deno.remove(workdir, { recursive: true }).catch(() => {});
    const exitCode = exit.signal === null ? exit.code : 128 + signalNumber(exit.signal);
    const oom = running.killedFor === "oom";
    const finishedAt = now();
    const after = this.#update(pod, (status) => {
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
    });
    this.#running.delete(key(pod));
    if (address !== undefined) await this.#options.network?.detach(address.namespace);
    if (
      after !== undefined &&
      (after.metadata.deletionTimestamp !== undefined || this.#options.deleteWhenDone)
    ) {
      this.#options.api.remove("pods", pod.metadata.namespace, pod.metadata.name);
    }
    resolveFinished();
  }

  /** The container's environment, or why it cannot be made. */
  #resolveEnv(
    pod: KObject,
    container: Json,
    image: ImageSpec,
    podIP: string,
  ): Record<string, string> | string {
    const env: Record<string, string> = {
      PATH: Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/root",
      HOSTNAME: pod.metadata.name,
      NO_COLOR: "1",
      ...image.env,
    };
    const denoDir = Deno.env.get("DENO_DIR");
    if (denoDir !== undefined) env.DENO_DIR = denoDir;
    for (const variable of (container.env ?? []) as Json[]) {
      const name = String(variable.name);
      const from = variable.valueFrom as Json | undefined;
      if (from === undefined) {
        env[name] = expandVariables(String(variable.value ?? ""), env);
        continue;
      }
      const secretRef = from.secretKeyRef as Json | undefined;
      const fieldRef = from.fieldRef as Json | undefined;
      if (secretRef !== undefined) {
        const secret = this.#options.api.get(
          "secrets",
          pod.metadata.namespace,
          String(secretRef.name),
        );
        if (secret === undefined) {
          if (secretRef.optional === true) continue;
          return `secret "${secretRef.name}" not found`;
        }
        const data = (secret.data ?? {}) as Record<string, string>;
        const value = data[String(secretRef.key)];
        if (value === undefined) {
          return `couldn't find key ${secretRef.key} in Secret ${pod.metadata.namespace}/` +
            `${secretRef.name}`;
        }
        env[name] = atob(value);
      } else if (fieldRef !== undefined) {
        const fields: Record<string, string> = {
          "metadata.name": pod.metadata.name,
          "metadata.namespace": pod.metadata.namespace,
          "metadata.uid": String(pod.metadata.uid),
          "spec.nodeName": NODE_NAME,
          "status.podIP": podIP,
          "status.hostIP": "10.0.0.1",
        };
        env[name] = fields[String(fieldRef.fieldPath)] ?? "";
      }
    }
    return env;
  }
}

/** `pid` and all its descendants, from /proc. */
function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) {
    try {
      // A child belongs to the thread that forked it, so every thread's list counts.
      for (const task of Deno.readDirSync(`/proc/${all[i]}/task`)) {
        const children = Deno.readTextFileSync(`/proc/${all[i]}/task/${task.name}/children`);
        all.push(...children.trim().split(/\s+/).filter((c) => c !== "").map(Number));
      }
    } catch {
      // Exited meanwhile.
    }
  }
  return all;
}

/** The process group of `pid`, or 0 when it is gone. */
function processGroup(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
  } catch {
    return 0;
  }
}

function waitingStatus(name: string, image: string, reason: string, message: string): Json {
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
