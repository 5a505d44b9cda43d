/**
 * The V8 settings every phonehome process runs with, wherever it is started:
 * deno.json's tasks, the compiled binaries, and the relay the local launcher
 * starts from a checkout. A Deno process cannot change them once running.
 *
 * @module
 */

/**
 * Most megabytes of each of V8's two young-generation semi-spaces. Left to
 * itself V8 grows them to 16 MiB each under a steady stream of short-lived
 * buffers and promises, as streaming makes, and keeps that memory: tens of MB
 * of private memory per process, and under a flood of connections most of
 * the receiver's. 1 MiB costs more frequent, shorter scavenges, and at full
 * speed as much CPU as 2 MiB, with 2 MB less private memory (bench/README.md).
 */
export const SEMI_SPACE_MB = 1;

/** The `deno run` and `deno compile` argument that applies these settings. */
export const V8_FLAGS_ARGUMENT = `--v8-flags=--max-semi-space-size=${SEMI_SPACE_MB}`;
