/**
 * The two routes a build's output can take in the benchmarks, each with real
 * processes: through phonehome (`phonehome build`, which runs the receiver and
 * starts the relay, which runs the build), or through the baseline, a plain
 * TCP relay of two socat processes (the build's pipe into one, the other's
 * stdout into the reader's pipe). Both end in the same reader.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { childrenOf } from "../src/process_tree.ts";
import { V8_FLAGS_ARGUMENT } from "../src/v8_flags.ts";
import { processName } from "../tests/support/proc_status.ts";
import { ProcessSampler } from "./process_sampler.ts";
import { type ReadOptions, readOutput, type ReadResult } from "./reader.ts";

/** The CLI entry point measured. */
export const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

/** The project's deno.json, so subprocesses resolve imports like the project does. */
export const CONFIG = fileURLToPath(new URL("../deno.json", import.meta.url));

/** The `deno` binary running the bench; it also runs phonehome and the Deno writers. */
export const DENO = Deno.execPath();

/** A route: phonehome, or the socat baseline. */
export type Route = "phonehome" | "socat";

/** Longest any single run may take before it is killed and reported as failed. */
const RUN_DEADLINE_MS = 30 * 60_000;

/** Settings of one run. */
export interface RouteRunOptions {
  route: Route;
  /** The build command and its arguments. */
  command: readonly string[];
  /** How the reader reads. */
  read?: ReadOptions;
  /** socat's `-b` (bytes per transfer) for the baseline. */
  socatBlockBytes: number;
  /** Extra flags for `phonehome build`. */
  buildFlags?: readonly string[];
}

/** What one run produced. */
export interface RouteRun {
  /** What the reader saw. */
  read: ReadResult;
  /** `performance.now()` when the first process was spawned. */
  startedAt: number;
  /** `performance.now()` when every process had exited. */
  endedAt: number;
  /** Whether every process of the route exited 0. */
  ok: boolean;
  /** Exit codes, by process role, for a report when not ok. */
  exitCodes: Record<string, number>;
  /**
   * Peak RSS in bytes of the two middle processes: phonehome's `relay` and
   * `receiver`, or the baseline's `relay` (the socat the build writes into)
   * and `receiver` (the socat the reader reads from).
   */
  peakRss: { relay: number; receiver: number };
  /** The same processes' largest sampled private (anonymous) RSS, without shared code pages. */
  peakAnonymousRss: { relay: number; receiver: number };
  /** The same processes' CPU seconds (user and system), at the last sample before each exited. */
  cpuSeconds: { relay: number; receiver: number };
  /** What the processes said on stderr (for a failure report). */
  stderr: string;
}

/** The environment for spawned processes, without settings that would change phonehome's. */
export function cleanEnvironment(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([name]) =>
      !/^(PHONEHOME_|BUILDER_POD_|SESSION_IDLE_INTERVAL$|POD_IP$)/.test(name)
    ),
  );
}

/** Arguments of `deno` that run `phonehome ...args` from this checkout. */
export function phonehomeArgs(...args: readonly string[]): string[] {
  return ["run", "-A", "--quiet", V8_FLAGS_ARGUMENT, `--config=${CONFIG}`, MAIN, ...args];
}

/** Arguments that run `phonehome build` with `flags` around `command`. */
export function phonehomeBuildArgs(
  command: readonly string[],
  flags: readonly string[] = [],
): string[] {
  return phonehomeArgs("build", "--idle-interval=0", ...flags, "--", ...command);
}

/** The first child of `pid` named `name`, if it has one yet. */
export function childNamed(pid: number, name: string): number | undefined {
  return childrenOf(pid).find((child) => processName(child) === name);
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * Starts `program` with piped output, no input, and the bench's clean
 * environment plus `env`.
 */
export function spawn(
  program: string,
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): Deno.ChildProcess {
  return new Deno.Command(program, {
    args: [...args],
    env: { ...cleanEnvironment(), ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** The processes of one route, started. */
interface Started {
  /** The process whose stdout the reader reads. */
  output: Deno.ChildProcess;
  /** Every process, by role. */
  all: Record<string, Deno.ChildProcess>;
}

function startPhonehome(options: RouteRunOptions, sampler: ProcessSampler): Started {
  const build = spawn(DENO, phonehomeBuildArgs(options.command, options.buildFlags));
  sampler.watch("receiver", () => build.pid);
  sampler.watch("relay", () => childNamed(build.pid, "deno"));
  return { output: build, all: { build } };
}

/**
 * The baseline's sending side, for `sh -c SCRIPT sh PORT BLOCK COMMAND...`:
 * COMMAND writes into a pipe whose other end is a socat that connects to
 * 127.0.0.1:PORT (retrying until something listens) with a BLOCK-byte buffer.
 * It leaves `port` and `block` set, for a script that goes on.
 */
export const SOCAT_SENDER_SCRIPT = 'port=$1 block=$2; shift 2; "$@" | exec socat -b "$block" -u ' +
  'STDIN "TCP:127.0.0.1:$port,retry=500,interval=0.01"';

function startSocat(options: RouteRunOptions, sampler: ProcessSampler): Started {
  const port = freePort();
  const block = String(options.socatBlockBytes);
  const listener = spawn("socat", [
    "-b",
    block,
    "-u",
    `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`,
    "STDOUT",
  ]);
  // The build writes into a pipe whose other end is the connecting socat, as it would into a relay.
  const sender = spawn("sh", [
    "-c",
    SOCAT_SENDER_SCRIPT,
    "sh",
    String(port),
    block,
    ...options.command,
  ]);
  sampler.watch("receiver", () => listener.pid);
  sampler.watch("relay", () => childNamed(sender.pid, "socat"));
  return { output: listener, all: { listener, sender } };
}

/** Runs `options.command` through a route to the reader and waits for every process to exit. */
export async function runRoute(options: RouteRunOptions): Promise<RouteRun> {
  const sampler = new ProcessSampler();
  const startedAt = performance.now();
  const started = options.route === "phonehome"
    ? startPhonehome(options, sampler)
    : startSocat(options, sampler);
  const deadline = setTimeout(() => {
    for (const child of Object.values(started.all)) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }, RUN_DEADLINE_MS);
  try {
    const errors = Object.values(started.all).map((child) =>
      new Response(child.stderr).text().catch(() => "")
    );
    const others = Object.values(started.all).filter((child) => child !== started.output);
    await Promise.all(others.map((child) => child.stdout.cancel()));
    const read = await readOutput(started.output.stdout, options.read ?? {});
    const statuses = await Promise.all(Object.values(started.all).map((child) => child.status));
    const endedAt = performance.now();
    sampler.sample();
    const peaks = sampler.stop();
    const anonymous = sampler.anonymousPeaks();
    const cpu = sampler.cpuSeconds();
    const exitCodes = Object.fromEntries(
      Object.keys(started.all).map((role, i) => [role, statuses[i].code]),
    );
    return {
      read,
      startedAt,
      endedAt,
      ok: statuses.every((status) => status.success),
      exitCodes,
      peakRss: { relay: peaks.relay, receiver: peaks.receiver },
      peakAnonymousRss: { relay: anonymous.relay, receiver: anonymous.receiver },
      cpuSeconds: { relay: cpu.relay, receiver: cpu.receiver },
      stderr: (await Promise.all(errors)).join(""),
    };
  } finally {
    sampler.stop();
    clearTimeout(deadline);
  }
}
