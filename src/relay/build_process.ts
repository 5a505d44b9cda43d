/**
 * The build command as a child process group: started with `Deno.Command` as
 * the leader of a group of its own, so that a signal reaches every process the
 * build started, and reported the way a shell reports an exit.
 *
 * @module
 */

import { enlargePipes } from "./pipe_size.ts";
import { PhonehomeError } from "../errors.ts";
import { ExitCode, signalExitCode, signalName } from "../exit_codes.ts";
import type { ExitStatus } from "../protocol/mod.ts";

/** The file `program` names: itself when it has a slash, else the first match on `path`. */
function resolveCommand(program: string, path: string): string | undefined {
  const candidates = program.includes("/")
    ? [program]
    : path.split(":").map((dir) => `${dir === "" ? "." : dir}/${program}`);
  return candidates.find((candidate) => {
    try {
      return Deno.statSync(candidate).isFile;
    } catch {
      return false;
    }
  });
}

/** The interpreter a script's `#!` line names, or undefined when `file` has none. */
function interpreterOf(file: string): string | undefined {
  let head: Uint8Array;
  try {
    using handle = Deno.openSync(file);
    const buffer = new Uint8Array(256);
    head = buffer.subarray(0, handle.readSync(buffer) ?? 0);
  } catch {
    return undefined;
  }
  const line = new TextDecoder().decode(head).split("\n")[0];
  if (!line.startsWith("#!")) return undefined;
  return line.slice(2).trim().split(/\s+/)[0] || undefined;
}

/**
 * Why `file`, which exists, could still not be started with "not found": what
 * the kernel did not find is the interpreter of its `#!` line, or for a binary
 * its dynamic loader.
 */
function missingInterpreter(file: string): string {
  const interpreter = interpreterOf(file);
  if (interpreter === undefined) {
    return `${file} exists, but the program loader or a library it needs was not found; ` +
      "check that it was built for this image.";
  }
  return `its interpreter ${JSON.stringify(interpreter)} (from the #! line of ${file}) was ` +
    "not found; check the script's first line.";
}

/** The shell that joins stdout and stderr in one pipe for a merged build. */
const MERGING_SHELL = "/bin/sh";

function isExecutable(file: string): boolean {
  try {
    const info = Deno.statSync(file);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Why `program` could not be started, as the error the relay reports. */
function startFailure(program: string, path: string, error: unknown): PhonehomeError {
  const name = JSON.stringify(program);
  if (error instanceof Deno.errors.NotFound) {
    const file = resolveCommand(program, path);
    return new PhonehomeError(
      file === undefined
        ? `Cannot start the build command ${name}: not found; check the image's PATH.`
        : `Cannot start the build command ${name}: ${missingInterpreter(file)}`,
      ExitCode.commandNotFound,
      { cause: error },
    );
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return new PhonehomeError(
      `Cannot start the build command ${name}: permission denied; is it executable?`,
      ExitCode.cannotExecute,
      { cause: error },
    );
  }
  return new PhonehomeError(
    `Cannot start the build command ${name}: ${
      error instanceof Error ? error.message : String(error)
    }.`,
    ExitCode.cannotExecute,
    { cause: error },
  );
}

/**
 * Finds out before a shell starts `program` what would stop it, so that a
 * merged build fails with the same message as any other: a shell would only
 * print its own, in the build's output.
 */
function checkStartable(program: string, path: string): void {
  const file = resolveCommand(program, path);
  if (file === undefined) throw startFailure(program, path, new Deno.errors.NotFound(program));
  if (!isExecutable(file)) {
    throw startFailure(program, path, new Deno.errors.PermissionDenied(program));
  }
  const interpreter = interpreterOf(file);
  if (interpreter !== undefined && !isExecutable(interpreter)) {
    throw startFailure(program, path, new Deno.errors.NotFound(program));
  }
}

/** A running build command. */
export class BuildProcess {
  #child: Deno.ChildProcess;
  /** Settles with the build's exit status once its main process has exited. */
  readonly status: Promise<ExitStatus>;
  /** Whether the build's stdout and stderr are one pipe (its stdout). */
  readonly merged: boolean;

  private constructor(child: Deno.ChildProcess, merged: boolean) {
    this.#child = child;
    this.merged = merged;
    this.status = child.status.then(
      (status) => ({
        code: status.signal === null ? status.code : signalExitCode(status.signal),
        signal: status.signal,
      }),
      (error) => {
        // Deno names only the classic signals; a real-time one (34-64) fails the status
        // with "Invalid signal: N" although the child has exited and been reaped.
        const number = Number(/Invalid signal: (\d+)/.exec(String(error))?.[1]);
        if (!Number.isInteger(number) || number < 1 || number > 64) throw error;
        return { code: 128 + number, signal: signalName(number) };
      },
    );
  }

  /**
   * Starts `command` with `env` as its whole environment; with `merged`, its
   * stdout and stderr are one pipe, as `2>&1` makes them, so that the order of
   * its writes across both survives. Throws {@linkcode PhonehomeError} with
   * status 127 or 126 when it cannot start.
   */
  static start(
    command: readonly string[],
    env: Record<string, string>,
    options: { merged?: boolean; cwd?: string } = {},
  ): BuildProcess {
    const path = env.PATH ?? Deno.env.get("PATH") ?? "";
    // Deno.Command cannot point two of a child's descriptors at one pipe; a shell can, and
    // then replaces itself with the build, which keeps its pid, group and exit status.
    const merged = options.merged === true && isExecutable(MERGING_SHELL);
    if (merged) checkStartable(command[0], path);
    try {
      const child = new Deno.Command(merged ? MERGING_SHELL : command[0], {
        args: merged ? ["-c", 'exec "$@" 2>&1', "sh", ...command] : command.slice(1),
        env,
        clearEnv: true,
        cwd: options.cwd,
        stdin: "null",
        stdout: "piped",
        stderr: merged ? "null" : "piped",
        detached: true,
      }).spawn();
      enlargePipes(child.pid, merged ? [1] : [1, 2]);
      return new BuildProcess(child, merged);
    } catch (error) {
      throw startFailure(command[0], path, error);
    }
  }

  /** The process id of the build's main process, also its process group id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** The build's stdout pipe. */
  get stdout(): ReadableStream<Uint8Array> {
    return this.#child.stdout;
  }

  /** The build's stderr pipe; undefined when stderr shares the stdout pipe. */
  get stderr(): ReadableStream<Uint8Array> | undefined {
    return this.merged ? undefined : this.#child.stderr;
  }

  /**
   * Sends `signal` to the build's whole process group; returns false when the
   * group no longer exists.
   */
  signalGroup(signal: Deno.Signal): boolean {
    try {
      Deno.kill(-this.#child.pid, signal);
      return true;
    } catch {
      return false;
    }
  }
}
