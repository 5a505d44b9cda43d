/**
 * Exit statuses of phonehome's own failures. A build's own status (0-255, or
 * 128+n for death by signal n) passes through unchanged; these follow the BSD
 * sysexits convention so that they rarely collide with a build's own codes.
 *
 * @module
 */

/** Exit statuses phonehome uses for its own failures; documented in the README. */
export const ExitCode = {
  /** The command line or the environment is wrong. */
  usage: 64,
  /** The build's source could not be packed, fetched, verified or unpacked: the build never ran. */
  sourceFailed: 65,
  /** The relay never connected before the deadline. */
  neverConnected: 69,
  /** An unexpected internal failure (a bug: please report it). */
  internal: 70,
  /** The receiver could not write the build's output (its reader went away). */
  outputClosed: 74,
  /** The relay connected, then disappeared and did not return within the grace period. */
  lostRelay: 75,
  /** The stream ended incomplete or corrupt: byte counts or checksums disagree, or the peer broke the protocol. */
  incompleteStream: 76,
  /** The Kubernetes API was unreachable or refused a request (a missing RBAC verb, as a rule). */
  kubernetesApi: 77,
  /** The build command could not be executed (it exists but is not executable). */
  cannotExecute: 126,
  /** The build command was not found. */
  commandNotFound: 127,
} as const;

/** Exit status for a process killed by `signal`, as a shell reports it (128+n). */
export function signalExitCode(signal: Deno.Signal): number {
  return 128 + signalNumber(signal);
}

const SIGNAL_NUMBERS: Partial<Record<Deno.Signal, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGSTKFLT: 16,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};

/** The Linux number of a signal; 0 for one this table does not know. */
export function signalNumber(signal: Deno.Signal): number {
  return SIGNAL_NUMBERS[signal] ?? 0;
}

/** Linux's first and last real-time signals, as the kernel numbers them for programs. */
const SIGRTMIN = 34;
const SIGRTMAX = 64;

/**
 * The name of signal `n` (1-64), as `kill -l` prints it: `SIGTERM`, or for the
 * real-time signals `SIGRTMIN+3` and `SIGRTMAX-2`; `SIG32` and `SIG33`, which
 * the C library keeps for itself, by number.
 */
export function signalName(n: number): string {
  const known = Object.entries(SIGNAL_NUMBERS).find(([, number]) => number === n);
  if (known !== undefined) return known[0];
  if (n < SIGRTMIN || n > SIGRTMAX) return `SIG${n}`;
  if (n === SIGRTMIN) return "SIGRTMIN";
  if (n === SIGRTMAX) return "SIGRTMAX";
  const fromMin = n - SIGRTMIN;
  return fromMin <= (SIGRTMAX - SIGRTMIN) / 2 ? `SIGRTMIN+${fromMin}` : `SIGRTMAX-${SIGRTMAX - n}`;
}
