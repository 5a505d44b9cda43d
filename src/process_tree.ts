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

/** waitpid(2) option: do not block. */
const WNOHANG = 1;

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

/** Parent pid and state of process `pid`, from /proc; undefined once it is gone. */
function readStat(pid: number): { ppid: number; state: string } | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // The command name may hold spaces and parentheses: the fields start after the last ')'.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { state: fields[0], ppid: Number(fields[1]) };
}

/** Pids of the living (not zombie) children of `pid`. */
export function childrenOf(pid: number = Deno.pid): number[] {
  const children: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const stat = readStat(Number(entry.name));
    if (stat?.ppid === pid && stat.state !== "Z") children.push(Number(entry.name));
  }
  return children;
}

/** Every living descendant of `pid`, children first. */
export function descendantsOf(pid: number = Deno.pid): number[] {
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const next = childrenOf(queue.shift());
    found.push(...next);
    queue.push(...next);
  }
  return found;
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
  while (performance.now() < deadline) {
    const living = descendantsOf();
    if (living.length === 0) break;
    for (const pid of living) {
      try {
        Deno.kill(pid, "SIGKILL");
        killed.add(pid);
      } catch {
        // Exited meanwhile.
      }
    }
    reapAdopted(spawned);
    // The kernel needs a moment to re-parent the children of the killed.
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  reapAdopted(spawned);
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

/** Reaps zombie children that Deno did not spawn and so will never wait for. */
function reapAdopted(spawned: ReadonlySet<number>): void {
  const c = libc();
  if (typeof c === "string") return;
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    if (spawned.has(pid)) continue;
    const stat = readStat(pid);
    if (stat?.ppid === Deno.pid && stat.state === "Z") c.waitpid(pid, new Uint8Array(4), WNOHANG);
  }
}
