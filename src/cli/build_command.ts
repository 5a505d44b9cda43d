/**
 * `phonehome build`: what a git hook calls. Starts a receiver, launches the
 * build through a relay on the chosen backend, and exits with the build's status.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { ExitCode } from "../exit_codes.ts";
import { DEFAULT_PING_INTERVAL_MS } from "../protocol.ts";
import { defaultRelayInvocation, runLocalBuild } from "../launchers/local.ts";
import { kubernetesBuildFlags } from "../launchers/kubernetes/flags.ts";
import { DEFAULT_OUTPUT_CHECK_INTERVAL_MS, OutputWatch } from "../receiver/output_watch.ts";
import type { ReceiverOptions } from "../receiver/receiver.ts";
import {
  drainGraceFlag,
  parseListen,
  receiverFlags,
  windowBytes,
  windowFlag,
} from "./common_flags.ts";
import type { CommandSpec, ParsedFlags } from "./flags.ts";
import { receiverOptions, startReceiver } from "./receive_command.ts";
import { stdoutIsStderr } from "./outputs.ts";
import { onTerminationSignal } from "./signals.ts";

/** Backends `--backend` accepts. */
const BACKENDS = ["local", "kubernetes"] as const;

/** Where each backend listens by default: build pods elsewhere in the cluster must reach it. */
const DEFAULT_LISTEN: Readonly<Record<string, string>> = {
  local: "127.0.0.1:0",
  kubernetes: "0.0.0.0:0",
};

/** The command line of `phonehome build`. */
export const buildSpec: CommandSpec = {
  name: "build",
  usage: "build [options] -- COMMAND [ARG...]",
  summary: "Run one build and show its output here as it happens: start a receiver, launch " +
    "COMMAND under a relay on the chosen backend, write the build's stdout and stderr to " +
    "this process's stdout and stderr, and exit with the build's own exit status.",
  takesCommand: true,
  flags: [
    {
      name: "backend",
      kind: "string",
      env: ["PHONEHOME_BACKEND"],
      default: "local",
      valueName: "NAME",
      help: "Where the build runs: 'local' runs the relay as a subprocess of this one; " +
        "'kubernetes' runs it in a build pod (see docs/kubernetes.md).",
    },
    ...receiverFlags("127.0.0.1:0").map((flag) =>
      flag.name === "listen"
        ? {
          ...flag,
          default: undefined,
          help: `${flag.help} Defaults to 127.0.0.1:0, or 0.0.0.0:0 for the kubernetes backend.`,
        }
        : flag.name === "merge"
        ? {
          ...flag,
          help: "Give the build one pipe for stdout and stderr, as 2>&1 does, and write it all " +
            "to stdout: the order of the build's writes across both is then kept exactly. On " +
            "by itself when this process's stdout and stderr are one file (a terminal, a git " +
            "hook, > log 2>&1); --no-merge keeps the streams apart even then.",
        }
        : flag
    ),
    windowFlag,
    drainGraceFlag,
    {
      name: "relay-bin",
      kind: "string",
      env: ["PHONEHOME_RELAY_BIN"],
      valueName: "PATH",
      help: "The relay program for the local backend. Defaults to phonehome-relay beside a " +
        "compiled phonehome-builder, or this source tree's main.ts under Deno.",
    },
    {
      name: "watch-output",
      kind: "string",
      env: ["PHONEHOME_WATCH_OUTPUT"],
      valueName: "PATH",
      help: "Also stop the build once this pipe, given as /proc/PID/fd/N, has no reader left. " +
        "A git hook passes /proc/$PPID/fd/1, git-receive-pack's stdout, which leads to the " +
        "user's session. This process's own stdout and stderr are always watched.",
    },
    ...kubernetesBuildFlags,
  ],
  examples: [
    "phonehome build -- sh ./build.sh",
    "phonehome build --merge --idle-interval 5000 -- make all",
    "phonehome build --backend kubernetes --image registry/slugbuilder:v3 --app web \\\n" +
    '    --sha "$SHA" -- /builder/build.sh',
  ],
};

/** Runs `phonehome build`; resolves with the exit status. */
export async function runBuild(flags: ParsedFlags): Promise<number> {
  const backend = flags.string("backend") ?? "local";
  if (!(BACKENDS as readonly string[]).includes(backend)) {
    throw new UsageError(
      `Unknown backend ${JSON.stringify(backend)} from ${flags.source("backend")}; ` +
        `choose one of: ${BACKENDS.join(", ")}.`,
    );
  }
  // One pipe for both of the build's outputs keeps the order of its writes exactly; worth it
  // when they end up in one place anyway, unless --no-merge says otherwise.
  const sameFile = stdoutIsStderr();
  const merge = flags.optionalBoolean("merge") ?? sameFile;
  let options: ReceiverOptions = { ...receiverOptions(flags), merge, sameFile };
  if (flags.string("listen") === undefined) {
    options = { ...options, ...parseListen(DEFAULT_LISTEN[backend], "--listen") };
  }
  const relayArgs = [
    `--merge=${merge}`,
    `--window=${windowBytes(flags)}`,
    `--drain-grace=${flags.integer("drain-grace") ?? 2000}`,
    `--ping-interval=${flags.integer("ping-interval") ?? DEFAULT_PING_INTERVAL_MS}`,
    `--reconnect-grace=${flags.integer("reconnect-grace") ?? 120_000}`,
  ];
  const relayBin = flags.string("relay-bin");
  // Loaded only when used: the Kubernetes client takes a while to load.
  const kubernetes = backend === "kubernetes"
    ? await (await import("../launchers/kubernetes/launcher.ts")).prepareKubernetesBuild({
      flags,
      receiverOptions: options,
      relayArgs,
    })
    : undefined;
  if (kubernetes !== undefined) options = kubernetes.receiverOptions;
  const receiver = startReceiver(options, flags.source("listen"));
  const watchOutput = flags.string("watch-output");
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
        signals,
      });
    }
    return await runLocalBuild({
      command: flags.command,
      receiver,
      token: options.token,
      relayInvocation: relayBin === undefined ? defaultRelayInvocation() : [relayBin],
      relayArgs,
      signals,
    });
  } finally {
    stop();
    outputWatch.stop();
  }
}
