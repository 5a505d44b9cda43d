/**
 * What the example hook's build prints for a test app, for the git push
 * tests: a bin/compile that succeeds with lines on stdout and a note on
 * stderr, and the lines of a successful build in the order they must arrive.
 *
 * @module
 */

/** A bin/compile that prints five numbered lines and a note on stderr, then succeeds. */
export const COMPILE_OK = [
  "#!/bin/sh",
  "set -eu",
  'for i in 1 2 3 4 5; do echo "       compiled module $i of 5"; done',
  'echo "       a note on stderr" >&2',
  "",
].join("\n");

/**
 * The lines of a successful build, in the order they must arrive: a hook's
 * stdout and stderr are one pipe, so phonehome gives the build one pipe too,
 * and its stderr lines arrive exactly where it wrote them.
 */
export function successLines(sha: string, app: string): string[] {
  return [
    "Starting build... but first, coffee!",
    `\x1b[1G-----> Building ${app} at ${sha.slice(0, 8)}`,
    "       Received 1 file",
    "\x1b[1G-----> App with its own bin/compile detected",
    "\x1b[1G-----> Restoring cache",
    "       [##########] 100%",
    "       warning: no cache yet, so this build starts from scratch",
    "\x1b[1G-----> Compiling",
    "       compiled module 1 of 5",
    "       compiled module 2 of 5",
    "       compiled module 3 of 5",
    "       compiled module 4 of 5",
    "       compiled module 5 of 5",
    "       a note on stderr",
    "\x1b[1G-----> Build succeeded",
    "Build complete.",
  ];
}
