/**
 * Before the build starts: the source the receiver offers, fetched, verified
 * and unpacked into the build's work directory, or one sentence saying why
 * not, so that a build never starts on a partial tree.
 *
 * @module
 */

import { ArchiveError } from "../archive/tar_format.ts";
import { unpackArchive } from "../archive/tar_reader.ts";
import { errorMessage } from "../errors.ts";
import { ExitCode, signalExitCode } from "../exit_codes.ts";
import { formatBytes } from "../format.ts";
import type { ExitStatus } from "../protocol/mod.ts";
import { type SourceFetch, SourceFetchError } from "./source_fetch.ts";

/** Signals that stop the relay while it fetches, before there is a build to pass them to. */
const STOPPING_SIGNALS: readonly Deno.Signal[] = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"];

/** Why the build could not start: the status to report, and a sentence for the user. */
export interface SourceFailure {
  exit: ExitStatus;
  note: string;
}

/**
 * Waits for `fetch`, then unpacks the archive into `workdir`; resolves with
 * what went wrong, or undefined when the tree is ready.
 */
export async function setUpSource(
  { fetch, workdir, log }: { fetch: SourceFetch; workdir: string; log: (text: string) => void },
): Promise<SourceFailure | undefined> {
  let stoppedBy: Deno.Signal | undefined;
  const removers = STOPPING_SIGNALS.map((signal) => {
    const handler = (): void => {
      stoppedBy ??= signal;
      fetch.fail(`The relay was stopped by ${signal} before the build started.`);
    };
    Deno.addSignalListener(signal, handler);
    return () => Deno.removeSignalListener(signal, handler);
  });
  try {
    const fetched = await fetch.done;
    try {
      const made = await unpackArchive(fetched.path, workdir);
      log(
        `Unpacked the source (${formatBytes(fetched.bytes)}: ${made.files} files, ` +
          `${made.directories} directories, ${made.links} links) into ${workdir}.`,
      );
      return undefined;
    } finally {
      await Deno.remove(fetched.path).catch(() => {});
    }
  } catch (error) {
    if (stoppedBy !== undefined) {
      return {
        exit: { code: signalExitCode(stoppedBy), signal: stoppedBy },
        note: errorMessage(error),
      };
    }
    const why = error instanceof SourceFetchError || error instanceof ArchiveError
      ? error.message
      : `Cannot unpack the source into ${workdir}: ${errorMessage(error)}.`;
    return {
      exit: { code: ExitCode.sourceFailed, signal: null },
      note: `The build did not start: ${why}`,
    };
  } finally {
    removers.forEach((remove) => remove());
  }
}
