/**
 * The objects of one build: the Secret that holds its phone-home secret, and
 * the Pod or Job that runs the relay, made from a template or from flags with
 * what the relay needs injected.
 *
 * @module
 */

import type * as k8s from "@kubernetes/client-node";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { errorMessage, UsageError } from "../../errors.ts";
import { RELAY_ENV } from "../../protocol/mod.ts";
import type { KubernetesSettings, WorkloadKind } from "./settings.ts";
import {
  APP_LABEL,
  BUILD_LABEL,
  buildName,
  dnsLabelPart,
  isLabelValue,
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
  MAX_JOB_NAME_LENGTH,
  MAX_POD_NAME_LENGTH,
  SECRET_CA_KEY,
  SECRET_TOKEN_KEY,
} from "./naming.ts";
import { buildContainerName } from "./pod_status.ts";

/** Name of the build container in a pod made from flags. */
const DEFAULT_CONTAINER_NAME = "build";

/** What was decided about a build's objects before the receiver listens. */
export interface WorkloadPlan {
  kind: WorkloadKind;
  /** The Pod's or the Job's name. */
  name: string;
  /** The Secret's name. */
  secretName: string;
  /** The container that runs the relay. */
  containerName: string;
  /** Labels on every object of the build. */
  labels: Record<string, string>;
  /** The template's pod spec, or one made from flags. */
  podSpec: k8s.V1PodSpec;
  /** Labels and annotations the template gave the pod. */
  podMetadata: k8s.V1ObjectMeta;
  /** The template's Job spec (without its pod template), for a Job. */
  jobSpec?: k8s.V1JobSpec;
}

/** What the relay in the pod needs to find its way home. */
export interface RelayWiring {
  /** The receiver's URL. */
  url: string;
  /** Further relay settings as environment, such as PHONEHOME_WINDOW. */
  relayEnv: Record<string, string>;
  /** Whether the build's Secret holds a per-build CA for the relay to trust. */
  ca: boolean;
  /** The build command: the container's args, run by the image's relay entrypoint. */
  command: readonly string[];
}

/** What shapes a build's Pod or Job besides its plan. */
export interface WorkloadInputs {
  settings: KubernetesSettings;
  wiring: RelayWiring;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Parses a template file's text (JSON or YAML) and checks it is a Pod or a Job. */
export function parseTemplate(text: string, path: string): Record<string, unknown> {
  let value: unknown;
  try {
    const documents = parseAllDocuments(text);
    const list = Array.isArray(documents) ? documents : [documents];
    if (list.length > 1) {
      throw new UsageError(
        `The pod template ${path} holds ${list.length} documents; give it exactly one Pod or Job.`,
      );
    }
    value = parseYaml(text, { prettyErrors: false });
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(
      `The pod template ${path} is neither JSON nor YAML: ${errorMessage(error)}`,
    );
  }
  if (!isRecord(value)) {
    throw new UsageError(`The pod template ${path} is not an object; give a Pod or a Job.`);
  }
  const where = `${value.apiVersion}/${value.kind}`;
  const spec = value.kind === "Job"
    ? (value.spec as Record<string, unknown> | undefined)?.template
    : value;
  if (!(where === "v1/Pod" || where === "batch/v1/Job") || !isRecord(spec)) {
    throw new UsageError(
      `The pod template ${path} is ${JSON.stringify(where)}; it must be a v1 Pod or a ` +
        `batch/v1 Job with spec.template.`,
    );
  }
  const podSpec = spec.spec;
  if (!isRecord(podSpec) || !Array.isArray(podSpec.containers) || podSpec.containers.length === 0) {
    throw new UsageError(`The pod template ${path} has no containers; give at least one.`);
  }
  for (const container of podSpec.containers) {
    if (!isRecord(container) || typeof container.name !== "string" || container.name === "") {
      throw new UsageError(`The pod template ${path} has a container without a name.`);
    }
  }
  return value;
}

/** Reads and checks a template file. */
export async function loadTemplate(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new UsageError(`Cannot read the pod template ${path}: ${errorMessage(error)}.`);
  }
  return parseTemplate(text, path);
}

function labelsFor(settings: KubernetesSettings, name: string): Record<string, string> {
  const labels: Record<string, string> = {
    [MANAGED_BY_LABEL]: MANAGED_BY_VALUE,
    [BUILD_LABEL]: name,
  };
  if (settings.app !== undefined) {
    const app = settings.app.slice(0, 63).replace(/[^-A-Za-z0-9_.]/g, "-").replace(
      /^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g,
      "",
    );
    if (app !== "" && isLabelValue(app)) labels[APP_LABEL] = app;
  }
  return labels;
}

/**
 * Decides the build's kind, names and pod spec. Throws {@linkcode UsageError}
 * when the template and the flags do not make a runnable pod.
 */
export function planWorkload(
  settings: KubernetesSettings,
  template: Record<string, unknown> | undefined,
): WorkloadPlan {
  const templateKind: WorkloadKind | undefined = template === undefined
    ? undefined
    : template.kind === "Job"
    ? "job"
    : "pod";
  const kind = settings.kind ?? templateKind ?? "pod";
  let podSource: Record<string, unknown> | undefined;
  let jobSpec: k8s.V1JobSpec | undefined;
  if (template !== undefined && templateKind === "job") {
    const spec = structuredClone(template.spec) as Record<string, unknown>;
    podSource = spec.template as Record<string, unknown>;
    delete spec.template;
    jobSpec = spec as unknown as k8s.V1JobSpec;
  } else if (template !== undefined) {
    podSource = structuredClone(template);
  }
  const podSpec: k8s.V1PodSpec = podSource === undefined
    ? { containers: [{ name: DEFAULT_CONTAINER_NAME }] }
    : podSource.spec as k8s.V1PodSpec;
  const podMetadata = (podSource?.metadata ?? {}) as k8s.V1ObjectMeta;
  const containerName = buildContainerName(podSpec as unknown as Record<string, unknown>);
  const container = podSpec.containers.find((c) => c.name === containerName);
  if (settings.image === undefined && (container?.image ?? "") === "") {
    throw new UsageError(
      template === undefined
        ? "The kubernetes backend needs the build image: set --image or PHONEHOME_IMAGE, " +
          "or give --pod-template."
        : `The pod template's container ${JSON.stringify(containerName)} has no image; ` +
          `set one there or give --image.`,
    );
  }
  const name = buildName({
    prefix: settings.namePrefix,
    app: settings.app === undefined ? undefined : dnsLabelPart(settings.app),
    sha: settings.sha,
    maxLength: kind === "job" ? MAX_JOB_NAME_LENGTH : MAX_POD_NAME_LENGTH,
  });
  return {
    kind,
    name,
    secretName: `${name}-phonehome`,
    containerName,
    labels: labelsFor(settings, name),
    podSpec,
    podMetadata,
    jobSpec: kind === "job" ? (jobSpec ?? {} as k8s.V1JobSpec) : undefined,
  };
}

/** The Secret holding the build's phone-home secret. */
export function buildSecret(
  plan: WorkloadPlan,
  { token, caPem }: { token: string; caPem?: string },
): k8s.V1Secret {
  const data: Record<string, string> = { [SECRET_TOKEN_KEY]: btoa(token) };
  if (caPem !== undefined) data[SECRET_CA_KEY] = btoa(caPem);
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: plan.secretName, labels: { ...plan.labels } },
    type: "Opaque",
    data,
  };
}

/** Escapes `$` so Kubernetes does not expand `$(VAR)` in the build command. */
function literalArg(arg: string): string {
  return arg.replaceAll("$", "$$$$");
}

function injectedEnv(plan: WorkloadPlan, { settings, wiring }: WorkloadInputs): k8s.V1EnvVar[] {
  return [
    ...settings.env.map(([name, value]) => ({ name, value })),
    { name: RELAY_ENV.url, value: wiring.url },
    {
      name: RELAY_ENV.token,
      valueFrom: { secretKeyRef: { name: plan.secretName, key: SECRET_TOKEN_KEY } },
    },
    ...(wiring.ca
      ? [{
        name: RELAY_ENV.tlsCa,
        valueFrom: { secretKeyRef: { name: plan.secretName, key: SECRET_CA_KEY } },
      }]
      : []),
    ...Object.entries(wiring.relayEnv).map(([name, value]) => ({ name, value })),
  ];
}

function deadlineSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

function finishPodSpec(plan: WorkloadPlan, inputs: WorkloadInputs): k8s.V1PodSpec {
  const { settings, wiring } = inputs;
  const spec = structuredClone(plan.podSpec);
  // A restarted container would start a second relay on a stream that has an owner.
  spec.restartPolicy = "Never";
  spec.automountServiceAccountToken ??= false;
  if (Object.keys(settings.nodeSelector).length > 0) {
    spec.nodeSelector = { ...spec.nodeSelector, ...settings.nodeSelector };
  }
  spec.containers = spec.containers.map((container) => {
    if (container.name !== plan.containerName) return container;
    const env = injectedEnv(plan, inputs);
    const names = new Set(env.map((variable) => variable.name));
    const updated: k8s.V1Container = {
      ...container,
      args: wiring.command.map(literalArg),
      env: [...(container.env ?? []).filter((variable) => !names.has(variable.name)), ...env],
    };
    if (settings.image !== undefined) updated.image = settings.image;
    if (settings.pullPolicy !== undefined) updated.imagePullPolicy = settings.pullPolicy;
    const requests = { ...container.resources?.requests, ...settings.requests };
    const limits = { ...container.resources?.limits, ...settings.limits };
    if (Object.keys(requests).length > 0 || Object.keys(limits).length > 0) {
      updated.resources = { ...container.resources };
      if (Object.keys(requests).length > 0) updated.resources.requests = requests;
      if (Object.keys(limits).length > 0) updated.resources.limits = limits;
    }
    return updated;
  });
  return spec;
}

/** The Pod that runs the build. */
export function buildPod(plan: WorkloadPlan, inputs: WorkloadInputs): k8s.V1Pod {
  const { settings } = inputs;
  const spec = finishPodSpec(plan, inputs);
  if (settings.buildDeadlineMs !== undefined) {
    spec.activeDeadlineSeconds = deadlineSeconds(settings.buildDeadlineMs);
  }
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      ...plan.podMetadata,
      name: plan.name,
      generateName: undefined,
      labels: { ...plan.podMetadata.labels, ...plan.labels },
    },
    spec,
  };
}

/** The Job that runs the build: one pod, never retried, removed by Kubernetes after its TTL. */
export function buildJob(plan: WorkloadPlan, inputs: WorkloadInputs): k8s.V1Job {
  const { settings } = inputs;
  const jobSpec: k8s.V1JobSpec = {
    ...plan.jobSpec,
    // A retry would start a second relay on a stream that already has an owner.
    backoffLimit: 0,
    ttlSecondsAfterFinished: Math.ceil(settings.jobTtlMs / 1000),
    template: {
      metadata: {
        ...plan.podMetadata,
        name: undefined,
        generateName: undefined,
        labels: { ...plan.podMetadata.labels, ...plan.labels },
      },
      spec: finishPodSpec(plan, inputs),
    },
  };
  if (settings.buildDeadlineMs !== undefined) {
    jobSpec.activeDeadlineSeconds = deadlineSeconds(settings.buildDeadlineMs);
  }
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name: plan.name, labels: { ...plan.labels } },
    spec: jobSpec,
  };
}
