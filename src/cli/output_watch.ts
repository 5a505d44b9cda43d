/**
 * Noticing that nobody reads the builder's output any more, even while the
 * build prints nothing, so that a dropped SSH session stops its build.
 *
 * A write to a pipe whose reader is gone fails at once (EPIPE), but a silent
 * build writes nothing, so that alone can take hours to notice. Worse, a git
 * hook's own output pipe never loses its reader: when the SSH session ends,
 * git-receive-pack's sideband thread dies on EPIPE without closing its end of
 * the hook's pipe, and receive-pack itself waits for the hook forever (checked
 * with git 2.39 and OpenSSH 9.2). What does lose its reader is receive-pack's
 * own stdout, the pipe to sshd.
 *
 * So the watch asks the kernel directly, with poll(2) through Deno's FFI: the
 * write end of a pipe reports POLLERR once the last reader has closed, and a
 * hung-up terminal or socket reports POLLHUP. It polls this process's own
 * stdout and stderr, and, for another process's pipe named as
 * `/proc/PID/fd/N`, a write end it opens for the instant of the check.
 *
 * @module
 */

import { errorMessage, UsageError } from "../errors.ts";
import { cString, type Libc, libc } from "../libc.ts";
import type { Timer } from "../timing.ts";

/** How often the watch looks, by default: a dropped session is noticed within about this long. */
export const DEFAULT_OUTPUT_CHECK_INTERVAL_MS = 500;

/** poll(2) bits (the same on every Linux architecture). */
const POLLERR = 0x008;
const POLLHUP = 0x010;

/** open(2) flags (the same on x86-64 and arm64 Linux). */
const O_WRONLY = 0o1;
const O_NONBLOCK = 0o4000;
const O_NOCTTY = 0o400;
const O_CLOEXEC = 0o2000000;

/** Bytes in one `struct pollfd` (int fd; short events; short revents). */
const POLLFD_BYTES = 8;

/** Polls `fds` once without waiting; returns each one's `revents`. */
function pollNow(c: Libc, fds: readonly number[]): number[] {
  const buffer = new ArrayBuffer(POLLFD_BYTES * fds.length);
  // Typed arrays use the machine's byte order, as the kernel does.
  const ints = new Int32Array(buffer);
  const shorts = new Int16Array(buffer);
  fds.forEach((fd, i) => {
    ints[i * 2] = fd;
    // Asking for no events still reports POLLERR, POLLHUP and POLLNVAL.
    shorts[i * 4 + 2] = 0;
  });
  const ready = c.poll(new Uint8Array(buffer), BigInt(fds.length), 0);
  if (ready <= 0) return fds.map(() => 0);
  return fds.map((_, i) => shorts[i * 4 + 3]);
}

/** Another process's pipe, as found when the watch started. */
interface WatchedPipe {
  /** The `/proc/PID/fd/N` path. */
  path: string;
  /** What the path pointed to at the start, such as `pipe:[93499]`. */
  pipe: string;
}

/** Settings of an output watch. */
export interface OutputWatchOptions {
  /** This process's own descriptors to watch, normally 1 and 2. */
  fds: readonly number[];
  /**
   * Pipes of other processes, as `/proc/PID/fd/N`: a git hook passes
   * `/proc/$PPID/fd/1`, git-receive-pack's stdout, which leads to the user.
   */
  paths: readonly string[];
  /** How often to look. */
  intervalMs: number;
  /** Called once, with a sentence fragment saying which output lost its reader. */
  onClosed: (what: string) => void;
}

const FD_NAMES: Readonly<Record<number, string>> = { 1: "stdout", 2: "stderr" };

/** Watches outputs for a vanished reader; create it with {@linkcode OutputWatch.start}. */
export class OutputWatch {
  #options: OutputWatchOptions;
  #libc: Libc | undefined;
  #pipes: WatchedPipe[];
  #timer: Timer | undefined;
  /** Why the watch cannot work here, when it cannot; it then never reports anything. */
  readonly unavailable: string | undefined;

  private constructor(options: OutputWatchOptions, c: Libc | string, pipes: WatchedPipe[]) {
    this.#options = options;
    this.#pipes = pipes;
    if (typeof c === "string") {
      this.unavailable = c;
      return;
    }
    this.#libc = c;
    this.#timer = setInterval(() => this.#tick(), options.intervalMs);
    // The watch must never be what keeps the process alive.
    Deno.unrefTimer(this.#timer);
  }

  /**
   * Starts watching. Throws {@linkcode UsageError} when a path in `paths` does
   * not exist or is not a pipe.
   */
  static start(options: OutputWatchOptions): OutputWatch {
    const pipes = options.paths.map((path) => ({ path, pipe: pipeBehind(path) }));
    return new OutputWatch(options, libc(), pipes);
  }

  /** Looks once, now; returns what lost its reader, or undefined while all is well. */
  check(): string | undefined {
    const c = this.#libc;
    if (c === undefined) return undefined;
    const revents = pollNow(c, this.#options.fds);
    for (const [i, fd] of this.#options.fds.entries()) {
      if ((revents[i] & (POLLERR | POLLHUP)) !== 0) {
        return `nothing reads phonehome's ${FD_NAMES[fd] ?? `descriptor ${fd}`} any more`;
      }
    }
    for (const watched of this.#pipes) {
      const closed = checkPipe(c, watched);
      if (closed !== undefined) return closed;
    }
    return undefined;
  }

  /** Stops watching; nothing is reported after this. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #tick(): void {
    const closed = this.check();
    if (closed === undefined) return;
    this.stop();
    this.#options.onClosed(closed);
  }
}

/** What `path` points to, which must be a pipe. */
function pipeBehind(path: string): string {
  let target: string;
  try {
    target = Deno.readLinkSync(path);
  } catch (error) {
    throw new UsageError(
      `Cannot watch ${path}: ${errorMessage(error)}; ` +
        `pass /proc/PID/fd/N of a running process whose output is a pipe.`,
    );
  }
  if (!target.startsWith("pipe:[")) {
    throw new UsageError(
      `Cannot watch ${path}: it is ${target}, not a pipe; only a pipe's reader can be watched.`,
    );
  }
  return target;
}

/** Checks another process's pipe once; returns what happened to it, or undefined while it is read. */
function checkPipe(c: Libc, watched: WatchedPipe): string | undefined {
  let target: string;
  try {
    target = Deno.readLinkSync(watched.path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return `${watched.path} is gone (its process exited)`;
    }
    return undefined;
  }
  if (target !== watched.pipe) {
    return `${watched.path} no longer leads to ${watched.pipe} (its process exited)`;
  }
  // Opening an anonymous pipe through /proc gives a new write end, even with no
  // reader left (unlike a named FIFO); it is held only for the poll.
  const fd = c.open(cString(watched.path), O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return undefined;
  try {
    const [revents] = pollNow(c, [fd]);
    if ((revents & POLLERR) !== 0) {
      return `nothing reads ${watched.path} (${watched.pipe}) any more`;
    }
    return undefined;
  } finally {
    c.close(fd);
  }
}
