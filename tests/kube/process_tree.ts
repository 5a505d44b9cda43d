/**
 * A container's processes, for the kubelet stand-in: the main process's whole
 * tree and their process groups, read from /proc, and signalled together as a
 * runtime signals a container through its cgroup.
 *
 * @module
 */

/** `pid` and all its descendants, from /proc. */
function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) {
    try {
      // A child belongs to the thread that forked it, so every thread's list counts.
      for (const task of Deno.readDirSync(`/proc/${all[i]}/task`)) {
        const children = Deno.readTextFileSync(`/proc/${all[i]}/task/${task.name}/children`);
        all.push(...children.trim().split(/\s+/).filter((c) => c !== "").map(Number));
      }
    } catch {
      // Exited meanwhile.
    }
  }
  return all;
}

/** The process group of `pid`, or 0 when it is gone. */
function processGroup(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
  } catch {
    return 0;
  }
}

/**
 * Signals every process of a container whose main process is `pid`: its whole
 * tree and their process groups (the relay runs the build in a group of its
 * own), gathered before any of them dies and orphans the rest.
 */
export function signalContainer(pid: number, signal: Deno.Signal): void {
  const pids = processTree(pid);
  const groups = new Set(pids.map(processGroup).filter((g) => g > 1));
  for (const target of [...pids, ...[...groups].map((g) => -g)]) {
    try {
      Deno.kill(target, signal);
    } catch {
      // Already gone.
    }
  }
}
