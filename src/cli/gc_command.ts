/**
 * `phonehome gc`: deletes the build pods, Jobs and Secrets that phonehome
 * created in a namespace and that are older than a given age.
 *
 * @module
 */

import { ExitCode } from "../exit_codes.ts";
import { verboseFlag } from "./common_flags.ts";
import { type CommandSpec, flag, type ParsedFlags } from "./flags.ts";
import { apiRetrySettings, clusterAccess, clusterFlags } from "./kubernetes_flags.ts";

/** The command line of `phonehome gc`. */
export const gcSpec = {
  name: "gc",
  usage: "gc [options]",
  summary: "Delete leftover build Pods, Jobs and Secrets: those labelled " +
    "app.kubernetes.io/managed-by=phonehome and older than --older-than. A build whose " +
    "builder was killed, or that ran with --keep-pod, leaves them behind. Prints one line " +
    "per deleted object; exits 77 when the Kubernetes API refuses. Transient API failures " +
    "are retried, as during a build.",
  takesCommand: false,
  flags: {
    ...clusterFlags,
    "older-than": flag({
      kind: "integer",
      env: ["PHONEHOME_GC_OLDER_THAN"],
      default: 3_600_000,
      valueName: "MS",
      min: 0,
      // An age to compare with, never a timer's delay: longer than a timer can wait is fine.
      max: Number.MAX_SAFE_INTEGER,
      help: "Only delete objects created at least this long ago; keep it above your longest " +
        "build, since a running build's pod is deleted too.",
    }),
    "dry-run": flag({
      kind: "boolean",
      env: ["PHONEHOME_GC_DRY_RUN"],
      default: false,
      help: "Print what would be deleted, delete nothing.",
    }),
    verbose: flag({ ...verboseFlag, help: "Also report each retried API call on stderr." }),
  },
  examples: [
    "phonehome gc --older-than 3600000",
    "KUBECONFIG=~/.kube/config phonehome gc --namespace deis --dry-run",
  ],
} as const satisfies CommandSpec;

/** Runs `phonehome gc`; resolves with the exit status. */
export async function runGc(flags: ParsedFlags<typeof gcSpec.flags>): Promise<number> {
  const { values } = flags;
  // Loaded only when used: the Kubernetes client takes a while to load.
  const { collectGarbage } = await import("../launchers/kubernetes/gc.ts");
  const encoder = new TextEncoder();
  const say = (line: string): void => {
    Deno.stderr.writeSync(encoder.encode(`phonehome: ${line}\n`));
  };
  const report = await collectGarbage({
    access: clusterAccess(values),
    retry: apiRetrySettings(values),
    onRetry: values.verbose ? say : undefined,
    olderThanMs: values["older-than"],
    dryRun: values["dry-run"],
    out: Deno.stdout,
  });
  for (const failure of report.failures) say(failure);
  return report.failures.length > 0 ? ExitCode.kubernetesApi : 0;
}
