/**
 * What this process's own outputs are, as far as the order of a build's
 * output is concerned.
 *
 * @module
 */

/**
 * Whether stdout and stderr are one open file (a terminal, `> log 2>&1`, a git
 * hook's pipe): then whatever order the build wrote in across the two is the
 * order the reader sees, so it is worth keeping exactly.
 */
export function stdoutIsStderr(): boolean {
  try {
    // Through /proc the descriptors' own files are stat'ed, pipes and terminals included.
    const stdout = Deno.statSync("/proc/self/fd/1");
    const stderr = Deno.statSync("/proc/self/fd/2");
    return stdout.ino !== null && stdout.dev === stderr.dev && stdout.ino === stderr.ino;
  } catch {
    return false;
  }
}
