/**
 * `phonehome gc`'s work: find the Pods, Jobs and Secrets phonehome created (by
 * label) that are older than a given age, and delete them. Builds whose
 * builder died, or that ran with --keep-pod, leave such objects behind. Every
 * call retries transient failures under the same policy as a build's.
 *
 * @module
 */

import { errorMessage } from "../../errors.ts";
import { formatDuration } from "../../format.ts";
import type { ByteSink } from "../../io.ts";
import { writeAll } from "../../io.ts";
import {
  type ClusterAccess,
  KubeClient,
  type ObjectSummary,
  type RetrySettings,
} from "./client.ts";
import { MANAGED_SELECTOR } from "./naming.ts";

/** Settings of a collection. */
export interface GcOptions {
  access: ClusterAccess;
  /** How API calls retry. */
  retry: RetrySettings;
  /** Where a line about each retry goes (with --verbose); undefined says nothing. */
  onRetry?: (line: string) => void;
  /** Only objects created longer ago than this are deleted. */
  olderThanMs: number;
  /** Say what would be deleted, delete nothing. */
  dryRun: boolean;
  /** Where each deletion is reported, one line each. */
  out: ByteSink;
  /** The current time, in epoch milliseconds. */
  nowMs?: number;
}

/** What a collection did. */
export interface GcReport {
  deleted: number;
  /** Messages of the deletions that failed. */
  failures: string[];
}

/** Deletes leftover build objects; resolves with what it did. Throws KubernetesApiError when listing fails. */
export async function collectGarbage(options: GcOptions): Promise<GcReport> {
  const client = KubeClient.load(options.access, options.retry);
  client.onRetry = options.onRetry;
  const nowMs = options.nowMs ?? Date.now();
  const found = await client.listLabelled(MANAGED_SELECTOR);
  const old = (item: ObjectSummary): boolean =>
    Number.isFinite(item.createdMs) && nowMs - item.createdMs >= options.olderThanMs;
  const targets: Array<{ kind: string; item: ObjectSummary; remove: () => Promise<boolean> }> = [
    ...found.jobs.filter(old).map((item) => ({
      kind: "job",
      item,
      remove: () => client.deleteJob(item.name),
    })),
    // A Job's pods go with their Job (background propagation).
    ...found.pods.filter((item) => old(item) && !item.ownerKinds.includes("Job")).map((item) => ({
      kind: "pod",
      item,
      remove: () => client.deletePod(item.name),
    })),
    ...found.secrets.filter(old).map((item) => ({
      kind: "secret",
      item,
      remove: () => client.deleteSecret(item.name),
    })),
  ];
  const report: GcReport = { deleted: 0, failures: [] };
  const encoder = new TextEncoder();
  for (const { kind, item, remove } of targets) {
    const ageMs = Math.max(0, nowMs - item.createdMs);
    // Ages are read by people: whole minutes, or whole seconds below one.
    const age = formatDuration(ageMs >= 60_000 ? ageMs - ageMs % 60_000 : ageMs - ageMs % 1000);
    if (options.dryRun) {
      await writeAll(
        options.out,
        encoder.encode(`would delete ${kind}/${item.name} (age ${age})\n`),
      );
      continue;
    }
    try {
      if (await remove()) {
        report.deleted++;
        await writeAll(options.out, encoder.encode(`deleted ${kind}/${item.name} (age ${age})\n`));
      }
    } catch (error) {
      report.failures.push(errorMessage(error));
    }
  }
  return report;
}
