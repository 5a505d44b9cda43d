/**
 * Reading a process from outside through /proc: its peak and private resident
 * memory, its CPU time, its command name, whether it is still alive. The tests and the
 * benchmark observe phonehome's processes with these same readers; process
 * trees come from `childrenOf` in src/process_tree.ts, which the relay itself
 * uses.
 *
 * @module
 */

/** The text of `/proc/PID/NAME`, or undefined once the process has gone. */
function procFile(pid: number, name: string): string | undefined {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/${name}`);
  } catch {
    return undefined;
  }
}

/** A `NAME:  N kB` line of /proc/PID/status in bytes; undefined when absent or gone. */
function statusBytes(pid: number, field: string): number | undefined {
  const status = procFile(pid, "status");
  if (status === undefined) return undefined;
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(status);
  // A zombie has no memory figures left.
  return match === null ? undefined : Number(match[1]) * 1024;
}

/**
 * Peak resident memory of a process in bytes (VmHWM): the kernel's own
 * high-water mark, so reading it now and then loses nothing that happened in
 * between. Undefined once it has exited.
 */
export function peakRssBytes(pid: number): number | undefined {
  return statusBytes(pid, "VmHWM");
}

/**
 * Private (anonymous) resident memory of a process in bytes (RssAnon): RSS
 * without the pages of the deno executable, which every Deno process on the
 * machine shares. The kernel keeps no high-water mark of it. Undefined once
 * it has exited.
 */
export function anonymousRssBytes(pid: number): number | undefined {
  return statusBytes(pid, "RssAnon");
}

/** The command name of a process (`deno`, `socat`), or undefined once it has gone. */
export function processName(pid: number): string | undefined {
  return procFile(pid, "comm")?.trim();
}

/** Whether a process with this id exists (and is not a zombie). */
export function isAlive(pid: number): boolean {
  const stat = procFile(pid, "stat");
  return stat !== undefined && !/^\d+ \(.*\) Z /.test(stat);
}

let ticksPerSecond: number | undefined;

/** Clock ticks per second, the unit of CPU times in /proc (`getconf CLK_TCK`), read once. */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    let ticks = Number.NaN;
    try {
      const output = new Deno.Command("getconf", { args: ["CLK_TCK"], stderr: "null" })
        .outputSync();
      ticks = Number(new TextDecoder().decode(output.stdout).trim());
    } catch {
      // No getconf: the fallback below.
    }
    // USER_HZ, which the kernel reports CPU times in, is 100 on every common Linux ABI.
    ticksPerSecond = Number.isFinite(ticks) && ticks > 0 ? ticks : 100;
  }
  return ticksPerSecond;
}

/**
 * CPU time a process has used so far, user and system, in seconds: fields 14
 * and 15 of /proc/PID/stat over the clock tick (its children's are not
 * counted). Undefined once it has gone.
 */
export function cpuSeconds(pid: number): number | undefined {
  const stat = procFile(pid, "stat");
  if (stat === undefined) return undefined;
  // The command name may hold spaces and parentheses: fields resume after the last ')', at 3.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[14 - 3]) + Number(fields[15 - 3]);
  return Number.isFinite(ticks) ? ticks / clockTicksPerSecond() : undefined;
}
