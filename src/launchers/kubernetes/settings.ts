/**
 * What the Kubernetes backend is told: its settings, typed, as the command
 * line makes them.
 *
 * @module
 */

import type { ClusterAccess, RetrySettings } from "./client.ts";

/** How the pod is wrapped: a bare Pod, or a `batch/v1` Job. */
export type WorkloadKind = "pod" | "job";

/** Image pull policies Kubernetes accepts. */
export const PULL_POLICIES = ["Always", "IfNotPresent", "Never"] as const;

/** Settings of the Kubernetes backend. */
export interface KubernetesSettings {
  access: ClusterAccess;
  /** How API calls retry. */
  retry: RetrySettings;
  /** Path of a Pod or Job template. */
  templatePath?: string;
  image?: string;
  /** Extra environment of the build container, in order. */
  env: Array<[string, string]>;
  /** Pod or Job; undefined lets the template decide. */
  kind?: WorkloadKind;
  namePrefix: string;
  app?: string;
  sha?: string;
  requests: Record<string, string>;
  limits: Record<string, string>;
  nodeSelector: Record<string, string>;
  pullPolicy?: string;
  buildDeadlineMs?: number;
  jobTtlMs: number;
  keepPod: boolean;
  watchTimeoutMs: number;
  tickMs: number;
}
