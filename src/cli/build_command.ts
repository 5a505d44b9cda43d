/**
 * `phonehome build`: what a git hook calls. Starts a receiver, launches the
 * build through a relay on the chosen backend, and exits with the build's status.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { ExitCode } from "../exit_codes.ts";
import { defaultRelayInvocation, runLocalBuild } from "../launchers/local.ts";
import { kubernetesBuildFlags, kubernetesSettings } from "./kubernetes_flags.ts";
import { DEFAULT_OUTPUT_CHECK_INTERVAL_MS, OutputWatch } from "./output_watch.ts";
import { advertisedHost, type ReceiverOptions } from "../receiver/receiver.ts";
import { SourceArchive } from "../receiver/source_archive.ts";
import { mergeFlag, receiverFlags, relayTuning, sourceFlag, tuningFlags } from "./common_flags.ts";
import { type CommandSpec, flag, type ParsedFlags } from "./flags.ts";
import { receiverOptions, startReceiver } from "./receive_command.ts";
import { stdoutIsStderr } from "./outputs.ts";
import { onTerminationSignal } from "./signals.ts";
import { resolveTls } from "./receiver_tls.ts";
import { DEFAULT_CERTIFICATE_VALIDITY_MS } from "./tls_flags.ts";

/** Backends `--backend` accepts. */
const BACKENDS = ["local", "kubernetes"] as const;

/** Where each backend listens by default: build pods elsewhere in the cluster must reach it. */
const DEFAULT_LISTEN: Readonly<Record<string, string>> = {
  local: "127.0.0.1:0",
  kubernetes: "0.0.0.0:0",
};

/** The command line of `phonehome build`. */
export const buildSpec = {
  name: "build",
  usage: "build [options] -- COMMAND [ARG...]",
  summary: "Run one build and show its output here as it happens: start a receiver, launch " +
    "COMMAND under a relay on the chosen backend, write the build's stdout and stderr to " +
    "this process's stdout and stderr, and exit with the build's own exit status.",
  takesCommand: true,
  flags: {
    backend: flag({
      kind: "string",
      env: ["PHONEHOME_BACKEND"],
      default: "local",
      valueName: "NAME",
      help: "Where the build runs: 'local' runs the relay as a subprocess of this one; " +
        "'kubernetes' runs it in a build pod (see docs/kubernetes.md).",
    }),
    ...receiverFlags,
    ...tuningFlags,
    // Which of these a build wants depends on where it runs and where its output goes.
    listen: flag({
      kind: "string",
      env: receiverFlags.listen.env,
      valueName: receiverFlags.listen.valueName,
      help: `${receiverFlags.listen.help} Defaults to 127.0.0.1:0, or 0.0.0.0:0 for the ` +
        "kubernetes backend.",
    }),
    merge: flag({
      kind: "boolean",
      env: mergeFlag.env,
      help: `${mergeFlag.help} On by itself when this process's stdout and stderr are one ` +
        "file (a terminal, a git hook, > log 2>&1); --no-merge keeps the streams apart even " +
        "then.",
    }),
    source: flag({
      ...sourceFlag,
      help: `${sourceFlag.help} Locally the build then runs in a fresh directory; in a pod, in ` +
        "its working directory.",
    }),
    "relay-bin": flag({
      kind: "string",
      env: ["PHONEHOME_RELAY_BIN"],
      valueName: "PATH",
      help: "The relay program for the local backend. Defaults to phonehome-relay beside a " +
        "compiled phonehome-builder, or this source tree's main.ts under Deno.",
    }),
    "watch-output": flag({
      kind: "string",
      env: ["PHONEHOME_WATCH_OUTPUT"],
      valueName: "PATH",
      help: "Also stop the build once this pipe, given as /proc/PID/fd/N, has no reader left. " +
        "A git hook passes /proc/$PPID/fd/1, git-receive-pack's stdout, which leads to the " +
        "user's session. This process's own stdout and stderr are always watched.",
    }),
    ...kubernetesBuildFlags,
  },
  examples: [
    "phonehome build -- sh ./build.sh",
    "phonehome build --merge --idle-interval 5000 -- make all",
    "phonehome build --backend kubernetes --image registry/slugbuilder:v3 --app web \\\n" +
    '    --sha "$SHA" -- /builder/build.sh',
  ],
} as const satisfies CommandSpec;

/** Runs `phonehome build`; resolves with the exit status. */
export async function runBuild(flags: ParsedFlags<typeof buildSpec.flags>): Promise<number> {
  const { values } = flags;
  const backend = values.backend;
  if (!(BACKENDS as readonly string[]).includes(backend)) {
    throw new UsageError(
      `Unknown backend ${JSON.stringify(backend)} from ${flags.source("backend")}; ` +
        `choose one of: ${BACKENDS.join(", ")}.`,
    );
  }
  // One pipe for both of the build's outputs keeps the order of its writes exactly; worth it
  // when they end up in one place anyway, unless --no-merge says otherwise.
  const merge = values.merge ?? stdoutIsStderr();
  let options: ReceiverOptions = receiverOptions(flags, {
    listen: values.listen ?? DEFAULT_LISTEN[backend],
    merge,
  });
  const tuning = relayTuning(values, { merge, fetchSource: values.source !== undefined });
  const settings = backend === "kubernetes" ? kubernetesSettings(flags) : undefined;
  // Loaded only when used: the Kubernetes client takes a while to load.
  const kubernetes = settings !== undefined
    ? await (await import("../launchers/kubernetes/launcher.ts")).prepareKubernetesBuild({
      settings,
      receiverOptions: options,
      tuning,
    })
    : undefined;
  if (kubernetes !== undefined) options = kubernetes.receiverOptions;
  // Certificates last: they name the address the relay dials, which the backend may set.
  const tls = await resolveTls(flags, {
    enabledByDefault: backend === "kubernetes",
    host: advertisedHost(options),
    validForMs: (settings?.buildDeadlineMs ?? DEFAULT_CERTIFICATE_VALIDITY_MS) +
      options.connectTimeoutMs,
  });
  options = { ...options, tls: tls.serve };
  await using source = values.source === undefined
    ? undefined
    : await SourceArchive.prepare(values.source, values["source-limit"]);
  options = { ...options, source };
  const receiver = startReceiver(options, flags.source("listen"));
  const watchOutput = values["watch-output"];
  let outputWatch: OutputWatch;
  try {
    // Even a build that prints nothing stops soon after the user's session ends.
    outputWatch = OutputWatch.start({
      fds: [1, 2],
      paths: watchOutput === undefined ? [] : [watchOutput],
      intervalMs: DEFAULT_OUTPUT_CHECK_INTERVAL_MS,
      onClosed: (what) =>
        receiver.abort(
          ExitCode.outputClosed,
          `Stopping the build: ${what}, so whoever started it has gone away.`,
        ),
    });
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    receiver.abort(error.exitCode, error.message);
    return (await receiver.outcome).exitCode;
  }
  if (watchOutput !== undefined && outputWatch.unavailable !== undefined) {
    receiver.message(
      `Cannot watch ${watchOutput} for a dropped session: ${outputWatch.unavailable}; ` +
        `a build that prints nothing will run on after the session ends.`,
    );
  }
  const signals = new EventTarget();
  let received = 0;
  const stop = onTerminationSignal((signal, code) => {
    // The first signal lets the relay stop the build and report; a second one does not wait.
    if (++received > 1) {
      signals.dispatchEvent(new Event("kill"));
      receiver.abort(code, `Stopped by a second ${signal}.`);
      return;
    }
    receiver.message(`Received ${signal}; stopping the build.`);
    signals.dispatchEvent(new CustomEvent("signal", { detail: signal }));
  });
  try {
    if (kubernetes !== undefined) {
      return await kubernetes.run({
        command: flags.command,
        receiver,
        token: options.token,
        caPem: tls.caPem,
        signals,
      });
    }
    return await runLocalBuild({
      command: flags.command,
      receiver,
      token: options.token,
      relayInvocation: values["relay-bin"] === undefined
        ? defaultRelayInvocation()
        : [values["relay-bin"]],
      tuning,
      caPem: tls.caPem,
      freshWorkdir: source !== undefined,
      signals,
    });
  } finally {
    stop();
    outputWatch.stop();
  }
}
