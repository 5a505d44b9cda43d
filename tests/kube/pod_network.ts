/**
 * Pod networking for the kubelet stand-in: a bridge on the host, standing for
 * the cluster network, and one network namespace per pod with its own IP on
 * it. Needs root and `ip`; {@linkcode podNetworkUnavailable} says why it cannot.
 *
 * @module
 */

import { unavailable } from "../support/requirements.ts";

async function ip(...args: string[]): Promise<void> {
  const result = await new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).output();
  if (!result.success) {
    throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(result.stderr).trim()}`);
  }
}

async function addressesInUse(): Promise<string> {
  const result = await new Deno.Command("ip", { args: ["-4", "-o", "addr"], stdout: "piped" })
    .output();
  const routes = await new Deno.Command("ip", { args: ["-4", "route"], stdout: "piped" }).output();
  return new TextDecoder().decode(result.stdout) + new TextDecoder().decode(routes.stdout);
}

/**
 * Why pod network namespaces cannot be used here, or undefined when they can;
 * the cluster then runs pods on the host's network instead. Only root and `ip`
 * (on PATH, as it is run) are needed: pod networking uses no nftables.
 */
export function podNetworkUnavailable(): string | undefined {
  return unavailable({ root: "for network namespaces", programs: ["ip"] });
}

/** A pod's place on the network. */
export interface PodAddress {
  /** The network namespace to run the pod's processes in. */
  namespace: string;
  /** The pod's IP. */
  ip: string;
}

/** A bridge standing for the cluster network, with a namespace per pod. */
export class PodNetwork {
  #bridge: string;
  #prefix: string;
  #next = 2;
  #namespaces = new Set<string>();
  /** The host's address on the bridge: where the builder listens, as its pod IP. */
  readonly hostAddress: string;

  private constructor(bridge: string, prefix: string) {
    this.#bridge = bridge;
    this.#prefix = prefix;
    this.hostAddress = `${prefix}.1`;
  }

  /** Creates the bridge on a /24 of 10.0.0.0/8 that this machine does not use yet. */
  static async create(): Promise<PodNetwork> {
    const tag = crypto.randomUUID().replace(/-/g, "").slice(0, 6);
    const bridge = `pk${tag}`;
    const used = await addressesInUse();
    let prefix = "";
    for (let attempt = 0; attempt < 50; attempt++) {
      const candidate = `10.${100 + Math.floor(Math.random() * 100)}.${
        Math.floor(Math.random() * 256)
      }`;
      if (!used.includes(`${candidate}.`)) {
        prefix = candidate;
        break;
      }
    }
    if (prefix === "") throw new Error("No free /24 in 10.100.0.0-10.199.255.0 for the pods.");
    await ip("link", "add", bridge, "type", "bridge");
    const network = new PodNetwork(bridge, prefix);
    try {
      await ip("addr", "add", `${prefix}.1/24`, "dev", bridge);
      await ip("link", "set", bridge, "up");
    } catch (error) {
      await network.destroy();
      throw error;
    }
    return network;
  }

  /** Gives a pod a namespace and an IP on the bridge. */
  async attach(): Promise<PodAddress> {
    const n = this.#next++;
    if (n > 254) throw new Error("The pod network is full.");
    const namespace = `${this.#bridge}-pod${n}`;
    const hostEnd = `${this.#bridge}h${n}`;
    const podEnd = `${this.#bridge}p${n}`;
    const address = `${this.#prefix}.${n}`;
    await ip("netns", "add", namespace);
    this.#namespaces.add(namespace);
    await ip("link", "add", hostEnd, "type", "veth", "peer", "name", podEnd);
    await ip("link", "set", podEnd, "netns", namespace);
    await ip("link", "set", hostEnd, "master", this.#bridge, "up");
    await ip("-n", namespace, "addr", "add", `${address}/24`, "dev", podEnd);
    await ip("-n", namespace, "link", "set", podEnd, "up");
    await ip("-n", namespace, "link", "set", "lo", "up");
    return { namespace, ip: address };
  }

  /** Removes a pod's namespace (and with it both ends of its link). */
  async detach(namespace: string): Promise<void> {
    if (!this.#namespaces.delete(namespace)) return;
    await ip("netns", "del", namespace).catch(() => {});
  }

  /** Removes every namespace and the bridge. */
  async destroy(): Promise<void> {
    for (const namespace of [...this.#namespaces]) await this.detach(namespace);
    await ip("link", "del", this.#bridge).catch(() => {});
  }
}
