/**
 * The build command as a child process group: started with `Deno.Command` as
 * the leader of a group of its own, so that a signal reaches every process the
 * build started, and reported the way a shell reports an exit.
 *
 * @module
 */

import { PhonehomeError } from "../errors.ts";
import { ExitCode, signalExitCode } from "../exit_codes.ts";
import type { ExitStatus } from "../protocol.ts";

/** A running build command. */
export class BuildProcess {
  #child: Deno.ChildProcess;
  /** Settles with the build's exit status once its main process has exited. */
  readonly status: Promise<ExitStatus>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.status = child.status.then((status) => ({
      code: status.signal === null ? status.code : signalExitCode(status.signal),
      signal: status.signal,
    }));
  }

  /**
   * Starts `command` with `env` as its whole environment. Throws
   * {@linkcode PhonehomeError} with status 127 or 126 when it cannot start.
   */
  static start(command: readonly string[], env: Record<string, string>): BuildProcess {
    try {
      const child = new Deno.Command(command[0], {
        args: command.slice(1),
        env,
        clearEnv: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        detached: true,
      }).spawn();
      return new BuildProcess(child);
    } catch (error) {
      const name = JSON.stringify(command[0]);
      if (error instanceof Deno.errors.NotFound) {
        throw new PhonehomeError(
          `Cannot start the build command ${name}: not found; check the image's PATH.`,
          ExitCode.commandNotFound,
          { cause: error },
        );
      }
      if (error instanceof Deno.errors.PermissionDenied) {
        throw new PhonehomeError(
          `Cannot start the build command ${name}: permission denied; is it executable?`,
          ExitCode.cannotExecute,
          { cause: error },
        );
      }
      throw new PhonehomeError(
        `Cannot start the build command ${name}: ${(error as Error).message}.`,
        ExitCode.cannotExecute,
        { cause: error },
      );
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

  /** The build's stderr pipe. */
  get stderr(): ReadableStream<Uint8Array> {
    return this.#child.stderr;
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
