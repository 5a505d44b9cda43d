/**
 * `phonehome build`: what a git hook calls. Starts a receiver, launches the
 * build through a relay on the chosen backend, and exits with the build's status.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { DEFAULT_PING_INTERVAL_MS } from "../protocol.ts";
import { defaultRelayInvocation, runLocalBuild } from "../launchers/local.ts";
import { drainGraceFlag, receiverFlags, windowBytes, windowFlag } from "./common_flags.ts";
import type { CommandSpec, ParsedFlags } from "./flags.ts";
import { receiverOptions, startReceiver } from "./receive_command.ts";
import { onTerminationSignal } from "./signals.ts";

/** Backends `--backend` accepts. */
const BACKENDS = ["local"] as const;

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
      help: "Where the build runs: 'local' runs the relay as a subprocess of this one.",
    },
    ...receiverFlags("127.0.0.1:0"),
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
  ],
  examples: [
    "phonehome build -- sh ./build.sh",
    "phonehome build --merge --idle-interval 5000 -- make all",
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
  const options = receiverOptions(flags);
  const relayArgs = [
    `--window=${windowBytes(flags)}`,
    `--drain-grace=${flags.integer("drain-grace") ?? 2000}`,
    `--ping-interval=${flags.integer("ping-interval") ?? DEFAULT_PING_INTERVAL_MS}`,
    `--reconnect-grace=${flags.integer("reconnect-grace") ?? 120_000}`,
  ];
  const relayBin = flags.string("relay-bin");
  const receiver = startReceiver(options);
  const signals = new EventTarget();
  let received = 0;
  const stop = onTerminationSignal((signal, code) => {
    // The first signal lets the relay stop the build and report; a second one does not wait.
    if (++received > 1) {
      receiver.abort(code, `Stopped by a second ${signal}.`);
      return;
    }
    receiver.message(`Received ${signal}; stopping the build.`);
    signals.dispatchEvent(new CustomEvent("signal", { detail: signal }));
  });
  try {
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
  }
}
