/**
 * A cluster you can run here: the fake API server (enforcing deploy/rbac.yaml),
 * the Job controller and kubelet stand-ins, pod networking when root, and a
 * kubeconfig for `phonehome build --backend kubernetes`.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { type Fault, FaultProxy } from "../support/fault_proxy.ts";
import {
  CONFIG,
  DENO,
  freePort,
  MAIN,
  type SpawnOptions,
  spawnPhonehome,
} from "../support/processes.ts";
import { FakeApiServer, type RbacRule } from "./fake_api_server.ts";
import { JobController } from "./job_controller.ts";
import { type ImageSpec, Kubelet } from "./kubelet.ts";
import { PodNetwork, podNetworkUnavailable } from "./pod_network.ts";

/** An image whose entrypoint is the relay, as the example build image's is. */
export const RELAY_IMAGE = "registry.example/slugbuilder:relay";

/** An image that runs its command directly, without the relay. */
export const PLAIN_IMAGE = "registry.example/slugbuilder:no-relay";

/** The namespace builds run in. */
export const NAMESPACE = "builds";

/** The Role's rules from deploy/rbac.yaml. */
export function roleRules(): RbacRule[] {
  const path = fileURLToPath(new URL("../../deploy/rbac.yaml", import.meta.url));
  for (const document of parseAllDocuments(Deno.readTextFileSync(path))) {
    const value = document.toJSON() as { kind?: string; rules?: RbacRule[] };
    if (value.kind === "Role") return value.rules ?? [];
  }
  throw new Error("deploy/rbac.yaml has no Role");
}

/** Settings of a test cluster. */
export interface ClusterOptions {
  /** Delete each pod as soon as its container exits. */
  deleteWhenDone?: boolean;
  /** Give pods network namespaces of their own when possible (default true). */
  podNetwork?: boolean;
  /** The Role the API server enforces (default: the one in deploy/rbac.yaml). */
  rbac?: RbacRule[];
}

/** A running test cluster; dispose it to stop everything. */
export class TestCluster implements AsyncDisposable {
  readonly api: FakeApiServer;
  readonly kubelet: Kubelet;
  readonly jobs: JobController;
  readonly kubeconfigPath: string;
  readonly dir: string;
  #network: PodNetwork | undefined;

  private constructor(parts: {
    api: FakeApiServer;
    kubelet: Kubelet;
    jobs: JobController;
    dir: string;
    network?: PodNetwork;
  }) {
    this.api = parts.api;
    this.kubelet = parts.kubelet;
    this.jobs = parts.jobs;
    this.dir = parts.dir;
    this.kubeconfigPath = `${parts.dir}/kubeconfig`;
    this.#network = parts.network;
  }

  /** Starts a cluster. */
  static async start(options: ClusterOptions = {}): Promise<TestCluster> {
    const dir = await Deno.makeTempDir({ prefix: "phonehome-kube-" });
    const api = FakeApiServer.start({
      token: crypto.randomUUID(),
      rbac: options.rbac ?? roleRules(),
    });
    const network = options.podNetwork !== false && podNetworkUnavailable() === undefined
      ? await PodNetwork.create()
      : undefined;
    const images: Record<string, ImageSpec> = {
      [RELAY_IMAGE]: {
        entrypoint: [DENO, "run", "-A", "--quiet", `--config=${CONFIG}`, MAIN, "relay", "--"],
        cmd: ["/builder/build.sh"],
      },
      [PLAIN_IMAGE]: { cmd: ["/builder/build.sh"] },
    };
    const kubelet = new Kubelet({
      api,
      images,
      network,
      deleteWhenDone: options.deleteWhenDone,
      nodeLabels: { "phonehome.test/pool": "builders" },
    });
    const jobs = new JobController(api);
    const cluster = new TestCluster({ api, kubelet, jobs, dir, network });
    await Deno.writeTextFile(cluster.kubeconfigPath, api.kubeconfig(NAMESPACE));
    return cluster;
  }

  /** Where the builder is reachable from pods. */
  get advertiseHost(): string {
    return this.kubelet.builderAddress;
  }

  /** Starts `phonehome build --backend kubernetes` against this cluster. */
  build(flags: string[], command: string[], options: SpawnOptions = {}): Deno.ChildProcess {
    return spawnPhonehome([
      "build",
      "--backend=kubernetes",
      `--kubeconfig=${this.kubeconfigPath}`,
      `--advertise-host=${this.advertiseHost}`,
      "--idle-interval=0",
      ...flags,
      "--",
      ...command,
    ], options);
  }

  /**
   * Starts a build whose relay dials the builder through a fault proxy: the
   * receiver listens on 127.0.0.1:P, the proxy on 127.0.0.2:P, and the pod is
   * told the latter; the cluster must run pods in this network namespace
   * (`podNetwork: false`) to reach it.
   */
  buildThroughProxy(
    command: string[],
    plan: (index: number) => Fault,
    flags: string[] = [],
  ): { builder: Deno.ChildProcess; proxy: FaultProxy } {
    const port = freePort();
    const proxy = FaultProxy.start(port, plan, { hostname: "127.0.0.2", port });
    const builder = this.build(
      [
        `--image=${RELAY_IMAGE}`,
        `--listen=127.0.0.1:${port}`,
        "--advertise-host=127.0.0.2",
        "--ping-interval=200",
        ...flags,
      ],
      command,
    );
    return { builder, proxy };
  }

  /** Every object of a kind left in the build namespace. */
  leftovers(): { pods: string[]; secrets: string[]; jobs: string[] } {
    return {
      pods: this.api.list("pods", NAMESPACE).map((o) => o.metadata.name),
      secrets: this.api.list("secrets", NAMESPACE).map((o) => o.metadata.name),
      jobs: this.api.list("jobs", NAMESPACE).map((o) => o.metadata.name),
    };
  }

  /** Stops everything and removes the pod network. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.jobs.stop();
    await this.kubelet.stop();
    await this.api.close();
    await this.#network?.destroy();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
