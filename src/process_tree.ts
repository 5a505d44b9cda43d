/**
 * Keeping a build's processes in hand on Linux: guarding a process's secret
 * from other processes of its user, adopting the orphans its descendants
 * leave (a `setsid` daemon escapes any process-group kill), and stopping
 * every descendant, adopted or not, so that nothing of a build outlives it.
 *
 * @module
 */

import { libc } from "./libc.ts";

/** prctl(2) options. */
const PR_SET_DUMPABLE = 4;
const PR_SET_CHILD_SUBREAPER = 36;

/** waitpid(2) and waitid(2) options: do not block; report exits; leave the child unreaped. */
const WNOHANG = 1;
const WEXITED = 4;
const WNOWAIT = 0x01000000;

/** waitid(2)'s idtype for any child. */
const P_ALL = 0;

/** Bytes of a siginfo_t, and where its si_pid is on 64-bit Linux (after three ints and padding). */
const SIGINFO_BYTES = 128;
const SIGINFO_PID_OFFSET = 16;

/**
 * Makes this process non-dumpable: its /proc files (environ, mem, fd)
 * become root's, so another process of the same user, a build among them,
 * can no longer read the secret out of them. Children start dumpable again
 * (exec resets it), so the build itself is unaffected. Returns why it could
 * not, or undefined.
 */
export function guardSecrets(): string | undefined {
  const c = libc();
  if (typeof c === "string") return c;
  return c.prctl(PR_SET_DUMPABLE, 0n, 0n, 0n, 0n) === 0
    ? undefined
    : "prctl(PR_SET_DUMPABLE) failed";
}

/**
 * Makes this process a child subreaper: a descendant orphaned by its parent
 * becomes this process's child instead of init's, where it can be found and
 * stopped. Returns why it could not, or undefined.
 */
export function adoptOrphans(): string | undefined {
  const c = libc();
  if (typeof c === "string") return c;
  return c.prctl(PR_SET_CHILD_SUBREAPER, 1n, 0n, 0n, 0n) === 0
    ? undefined
    : "prctl(PR_SET_CHILD_SUBREAPER) failed";
}

/** Each process's parent pid and state (as /proc/PID/stat gives them), read once. */
type ProcessTable = Map<number, { ppid: number; state: string }>;

/**
 * Every process this one can see in /proc, read in one pass: each question
 * below reads the table once, since a pass costs a file per process, and a
 * builder with many pushes has many processes.
 */
function readProcessTable(): ProcessTable {
  const table: ProcessTable = new Map();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let text: string;
    try {
      text = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
    } catch {
      continue; // Gone meanwhile.
    }
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    table.set(Number(entry.name), { state: fields[0], ppid: Number(fields[1]) });
  }
  return table;
}

/** Pids of the living (not zombie) children of `pid` in `table`. */
function livingChildren(table: ProcessTable, pid: number): number[] {
  const children: number[] = [];
  for (const [child, { ppid, state }] of table) {
    if (ppid === pid && state !== "Z") children.push(child);
  }
  return children;
}

/** Every living descendant of `pid` in `table`, children first. */
function livingDescendants(table: ProcessTable, pid: number): number[] {
  const found: number[] = [];
  const queue = [pid];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    const children = livingChildren(table, next);
    found.push(...children);
    queue.push(...children);
  }
  return found;
}

/** Pids of the living (not zombie) children of `pid`. */
export function childrenOf(pid: number = Deno.pid): number[] {
  return livingChildren(readProcessTable(), pid);
}

/** Every living descendant of `pid`, children first. */
export function descendantsOf(pid: number = Deno.pid): number[] {
  return livingDescendants(readProcessTable(), pid);
}

/** Settings of {@linkcode stopDescendants}. */
export interface StopOptions {
  /** Pids spawned through Deno.Command, which Deno reaps itself: never reaped here. */
  spawned?: readonly number[];
  /** How long to keep killing what appears (children of the killed being adopted). */
  timeoutMs: number;
}

/**
 * SIGKILLs every descendant of this process, and keeps at it while orphans
 * come back to it (as a subreaper), until none is left or the time is up.
 * Adopted orphans are reaped here, since Deno reaps only what it spawned.
 * Returns how many processes were killed.
 */
export async function stopDescendants(options: StopOptions): Promise<number> {
  const spawned = new Set(options.spawned ?? []);
  const killed = new Set<number>();
  const deadline = performance.now() + options.timeoutMs;
  // With no child at all there is no descendant: the common end of a build needs no table.
  while (firstExitedChild() !== undefined) {
    const table = readProcessTable();
    reapZombies(table, spawned);
    const living = livingDescendants(table, Deno.pid);
    if (living.length === 0 || performance.now() >= deadline) break;
    for (const pid of living) {
      try {
        Deno.kill(pid, "SIGKILL");
        killed.add(pid);
      } catch {
        // Exited meanwhile.
      }
    }
    // The kernel needs a moment to re-parent the children of the killed.
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return killed.size;
}

/**
 * Reaps adopted orphans as they exit (on SIGCHLD), so that none lingers as a
 * zombie while the build runs; `spawned` are Deno's own children, which Deno
 * reaps. Returns a function that stops it.
 */
export function reapOrphans(spawned: () => readonly number[]): () => void {
  if (typeof libc() === "string") return () => {};
  const listener = (): void => reapAdopted(new Set(spawned()));
  Deno.addSignalListener("SIGCHLD", listener);
  return () => Deno.removeSignalListener("SIGCHLD", listener);
}

/**
 * The pid of a child that has exited and is not yet reaped (left so), 0 when
 * no child has exited or the kernel cannot be asked (then a table must tell),
 * undefined when this process has no child at all. Asking the kernel costs one
 * call; a table costs a file per process.
 */
function firstExitedChild(): number | undefined {
  const c = libc();
  if (typeof c === "string") return 0;
  const info = new Uint8Array(SIGINFO_BYTES);
  if (c.waitid(P_ALL, 0, info, WEXITED | WNOHANG | WNOWAIT) !== 0) return undefined;
  return new DataView(info.buffer).getInt32(SIGINFO_PID_OFFSET, true);
}

/**
 * Reaps the zombie children that Deno did not spawn and so will never wait
 * for, one by one as the kernel names them. When it names one of Deno's own,
 * which Deno is about to reap, it stops there: that is the build (or the
 * relay) ending, and whatever may have exited behind it is reaped on the next
 * SIGCHLD or by {@linkcode stopDescendants}, which comes next.
 */
function reapAdopted(spawned: ReadonlySet<number>): void {
  const c = libc();
  if (typeof c === "string") return;
  for (let pid = firstExitedChild(); pid !== undefined && pid !== 0; pid = firstExitedChild()) {
    if (spawned.has(pid)) return;
    if (c.waitpid(pid, new Uint8Array(4), WNOHANG) !== pid) return; // Never ask about it again.
  }
}

/** Reaps the zombie children in `table` that Deno did not spawn. */
function reapZombies(table: ProcessTable, spawned: ReadonlySet<number>): void {
  const c = libc();
  if (typeof c === "string") return;
  for (const [pid, { ppid, state }] of table) {
    if (ppid === Deno.pid && state === "Z" && !spawned.has(pid)) {
      c.waitpid(pid, new Uint8Array(4), WNOHANG);
    }
  }
}
