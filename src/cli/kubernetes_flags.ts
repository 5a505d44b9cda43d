/**
 * The Kubernetes backend's flags (for `build` and `gc`) and the settings the
 * launcher gets from them. Kept apart from the backend itself, so that
 * `--help` and the local backend never load the Kubernetes client.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import type { ClusterAccess, RetrySettings } from "../launchers/kubernetes/client.ts";
import { type KubernetesSettings, PULL_POLICIES } from "../launchers/kubernetes/settings.ts";
import { flag, type FlagValues, type ParsedFlags } from "./flags.ts";

/** Flags that say where the cluster is, shared by `build` and `gc`. */
export const clusterFlags = {
  kubeconfig: flag({
    kind: "string",
    env: ["KUBECONFIG"],
    valueName: "PATH",
    help: "Kubernetes backend: a kubeconfig file. Without it the pod's own service account " +
      "is used (in-cluster configuration).",
  }),
  context: flag({
    kind: "string",
    env: ["PHONEHOME_KUBE_CONTEXT"],
    valueName: "NAME",
    help: "Kubernetes backend: the kubeconfig context to use instead of its current one.",
  }),
  namespace: flag({
    kind: "string",
    env: ["PHONEHOME_NAMESPACE", "POD_NAMESPACE"],
    valueName: "NAME",
    help: "Kubernetes backend: the namespace of the build pods. Defaults to the kubeconfig " +
      "context's, or the service account's own namespace.",
  }),
  "api-retry-budget": flag({
    kind: "integer",
    env: ["PHONEHOME_API_RETRY_BUDGET"],
    default: 30_000,
    valueName: "MS",
    min: 1000,
    help: "Kubernetes backend: how long one API call may keep trying when the API fails in " +
      "passing (429 after its Retry-After; 500, 502, 503, 504, dropped connections and " +
      "timeouts after a growing pause). Each deletion after the build gets as long again.",
  }),
} as const;

/** Flags of `build --backend kubernetes`. */
export const kubernetesBuildFlags = {
  ...clusterFlags,
  "pod-template": flag({
    kind: "string",
    env: ["PHONEHOME_POD_TEMPLATE"],
    valueName: "PATH",
    help: "Kubernetes backend: a Pod (v1) or Job (batch/v1) in JSON or YAML to start from. " +
      "Its first container runs the build; phonehome sets the name, labels, the relay's " +
      "environment, restartPolicy Never, and the container's args (COMMAND).",
  }),
  image: flag({
    kind: "string",
    env: ["PHONEHOME_IMAGE"],
    valueName: "IMAGE",
    help: "Kubernetes backend: the build image (its entrypoint must be 'phonehome relay --'). " +
      "Required without --pod-template; overrides the template's image.",
  }),
  env: flag({
    kind: "list",
    valueName: "NAME=VALUE",
    help: "Kubernetes backend: an environment variable for the build container.",
  }),
  kind: flag({
    kind: "string",
    env: ["PHONEHOME_POD_KIND"],
    valueName: "pod|job",
    help: "Kubernetes backend: run the build as a bare Pod or as a Job. Defaults to the " +
      "template's kind, or pod.",
  }),
  "name-prefix": flag({
    kind: "string",
    env: ["PHONEHOME_NAME_PREFIX"],
    default: "slugbuild",
    valueName: "PREFIX",
    help: "Kubernetes backend: names are PREFIX-APP-SHA8-RANDOM8, at most 63 characters " +
      "(slugbuild or dockerbuild, as the old builder named them).",
  }),
  app: flag({
    kind: "string",
    env: ["PHONEHOME_APP"],
    valueName: "NAME",
    help: "Kubernetes backend: the application being built, for the pod's name and labels.",
  }),
  sha: flag({
    kind: "string",
    env: ["PHONEHOME_GIT_SHA"],
    valueName: "SHA",
    help: "Kubernetes backend: the commit being built; its first 8 characters go in the name.",
  }),
  requests: flag({
    kind: "string",
    env: ["PHONEHOME_POD_REQUESTS"],
    valueName: "cpu=Q,memory=Q",
    help: "Kubernetes backend: resource requests of the build container.",
  }),
  limits: flag({
    kind: "string",
    env: ["PHONEHOME_POD_LIMITS"],
    valueName: "cpu=Q,memory=Q",
    help: "Kubernetes backend: resource limits of the build container.",
  }),
  "node-selector": flag({
    kind: "string",
    env: ["BUILDER_POD_NODE_SELECTOR"],
    valueName: "K:V,K2:V2",
    help: "Kubernetes backend: node labels the build pod must be scheduled on.",
  }),
  "pull-policy": flag({
    kind: "string",
    env: ["PHONEHOME_IMAGE_PULL_POLICY"],
    valueName: "POLICY",
    help: "Kubernetes backend: Always, IfNotPresent or Never. When absent, " +
      "SLUG_BUILDER_IMAGE_PULL_POLICY applies (DOCKER_BUILDER_IMAGE_PULL_POLICY when " +
      "--name-prefix is dockerbuild), then the cluster's default.",
  }),
  "build-deadline": flag({
    kind: "integer",
    env: ["PHONEHOME_BUILD_DEADLINE"],
    valueName: "MS",
    min: 1000,
    help: "Kubernetes backend: stop the build pod after this long (activeDeadlineSeconds).",
  }),
  "job-ttl": flag({
    kind: "integer",
    env: ["PHONEHOME_JOB_TTL"],
    default: 3_600_000,
    valueName: "MS",
    min: 0,
    help: "Kubernetes backend: a finished Job is removed by Kubernetes after this long " +
      "(ttlSecondsAfterFinished), should phonehome not delete it first.",
  }),
  "keep-pod": flag({
    kind: "boolean",
    default: false,
    env: ["PHONEHOME_KEEP_POD"],
    help: "Kubernetes backend: keep the pod or Job after the build (its Secret is deleted " +
      "regardless).",
  }),
  "watch-timeout": flag({
    kind: "integer",
    env: ["PHONEHOME_WATCH_TIMEOUT"],
    default: 60_000,
    valueName: "MS",
    min: 1000,
    help: "Kubernetes backend: each watch of the build pod asks the API to end after this " +
      "long and is then renewed; one still open 5 s later is abandoned and restarted.",
  }),
  tick: flag({
    kind: "integer",
    env: ["BUILDER_POD_TICK_DURATION"],
    default: 100,
    valueName: "MS",
    min: 1,
    help: "Kubernetes backend: the first pause before retrying a failed watch, doubling up " +
      "to 5 s.",
  }),
} as const;

/** Reads the cluster-access flags. */
export function clusterAccess(values: FlagValues<typeof clusterFlags>): ClusterAccess {
  return {
    kubeconfig: values.kubeconfig || undefined,
    context: values.context || undefined,
    namespace: values.namespace || undefined,
  };
}

/** Reads `--api-retry-budget`. */
export function apiRetrySettings(values: FlagValues<typeof clusterFlags>): RetrySettings {
  return { budgetMs: values["api-retry-budget"] };
}

/** Parses `K<sep>V,K2<sep>V2`; an empty value gives an empty record. */
function parsePairs(value: string | undefined, separator: string, source: string): Record<
  string,
  string
> {
  const pairs: Record<string, string> = {};
  if (value === undefined || value.trim() === "") return pairs;
  for (const item of value.split(",")) {
    const at = item.indexOf(separator);
    const key = item.slice(0, at).trim();
    if (at <= 0 || key === "") {
      throw new UsageError(
        `${source} must look like KEY${separator}VALUE,KEY2${separator}VALUE2, not ${
          JSON.stringify(value)
        }.`,
      );
    }
    pairs[key] = item.slice(at + 1).trim();
  }
  return pairs;
}

function parseResources(
  flags: ParsedFlags<typeof kubernetesBuildFlags>,
  name: "requests" | "limits",
): Record<string, string> {
  const resources = parsePairs(flags.values[name], "=", flags.source(name));
  for (const [resource, quantity] of Object.entries(resources)) {
    if (!/^[+]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+|[numkMGTPE]i?)?$/.test(quantity)) {
      throw new UsageError(
        `${flags.source(name)} gives ${resource} the quantity ${
          JSON.stringify(quantity)
        }, which Kubernetes would reject; use forms like 500m, 2 or 1Gi.`,
      );
    }
  }
  return resources;
}

function parseEnv(flags: ParsedFlags<typeof kubernetesBuildFlags>): Array<[string, string]> {
  return flags.values.env.map((item) => {
    const at = item.indexOf("=");
    const name = item.slice(0, at);
    if (at <= 0 || !/^[-._a-zA-Z][-._a-zA-Z0-9]*$/.test(name)) {
      throw new UsageError(`--env must look like NAME=VALUE, not ${JSON.stringify(item)}.`);
    }
    if (name.startsWith("PHONEHOME_")) {
      throw new UsageError(
        `--env cannot set ${name}: phonehome sets the relay's PHONEHOME_* variables itself.`,
      );
    }
    return [name, item.slice(at + 1)];
  });
}

/** Reads and checks the Kubernetes backend's settings; throws {@linkcode UsageError}. */
export function kubernetesSettings(
  flags: ParsedFlags<typeof kubernetesBuildFlags>,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): KubernetesSettings {
  const { values } = flags;
  const kind = values.kind;
  if (kind !== undefined && kind !== "pod" && kind !== "job") {
    throw new UsageError(
      `${flags.source("kind")} must be pod or job, not ${JSON.stringify(kind)}.`,
    );
  }
  const namePrefix = values["name-prefix"];
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(namePrefix) || namePrefix.length > 30) {
    throw new UsageError(
      `${flags.source("name-prefix")} must be lower-case letters, digits and dashes ` +
        `(at most 30), not ${JSON.stringify(namePrefix)}.`,
    );
  }
  let pullPolicy = values["pull-policy"];
  let pullSource = flags.source("pull-policy");
  if (pullPolicy === undefined) {
    const variable = namePrefix === "dockerbuild"
      ? "DOCKER_BUILDER_IMAGE_PULL_POLICY"
      : "SLUG_BUILDER_IMAGE_PULL_POLICY";
    pullPolicy = env(variable) || undefined;
    pullSource = variable;
  }
  if (pullPolicy !== undefined && !(PULL_POLICIES as readonly string[]).includes(pullPolicy)) {
    throw new UsageError(
      `${pullSource} must be one of ${PULL_POLICIES.join(", ")}, not ${
        JSON.stringify(pullPolicy)
      }.`,
    );
  }
  return {
    access: clusterAccess(values),
    retry: apiRetrySettings(values),
    templatePath: values["pod-template"] || undefined,
    image: values.image || undefined,
    env: parseEnv(flags),
    kind,
    namePrefix,
    app: values.app || undefined,
    sha: values.sha || undefined,
    requests: parseResources(flags, "requests"),
    limits: parseResources(flags, "limits"),
    nodeSelector: parsePairs(values["node-selector"], ":", flags.source("node-selector")),
    pullPolicy,
    buildDeadlineMs: values["build-deadline"],
    jobTtlMs: values["job-ttl"],
    keepPod: values["keep-pod"],
    watchTimeoutMs: values["watch-timeout"],
    tickMs: values.tick,
  };
}
