/**
 * Peak resident memory of the processes under test, from /proc: VmHWM is the
 * kernel's own high-water mark, so sampling it now and then loses nothing
 * that happened between samples, only what happens after the last one.
 *
 * @module
 */

/** How often the peaks are read, unless told otherwise. */
export const DEFAULT_SAMPLE_INTERVAL_MS = 20;

/** Peak resident memory of a process in bytes (VmHWM); undefined once it has exited. */
export function peakRssBytes(pid: number): number | undefined {
  let status: string;
  try {
    status = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch {
    return undefined;
  }
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  // A zombie has no memory figures left.
  return match === null ? undefined : Number(match[1]) * 1024;
}

/**
 * Private (anonymous) resident memory of a process in bytes (RssAnon): RSS
 * without the pages of the deno executable, which every Deno process on the
 * machine shares. Undefined once it has exited.
 */
export function anonymousRssBytes(pid: number): number | undefined {
  let status: string;
  try {
    status = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch {
    return undefined;
  }
  const match = /^RssAnon:\s+(\d+) kB$/m.exec(status);
  return match === null ? undefined : Number(match[1]) * 1024;
}

/** Process ids of the direct children of `pid`. */
export function childPids(pid: number): number[] {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`);
    return text.trim().split(/\s+/).filter((s) => s.length > 0).map(Number);
  } catch {
    return [];
  }
}

/** The command name of a process (`deno`, `socat`), or undefined once it has gone. */
export function processName(pid: number): string | undefined {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/comm`).trim();
  } catch {
    return undefined;
  }
}

/** Finds a process to watch: called at each sample until it returns a pid. */
export type PidFinder = () => number | undefined;

/** Samples the peak RSS of named processes until stopped. */
export class PeakRssSampler {
  #finders = new Map<string, PidFinder>();
  #pids = new Map<string, number>();
  #peaks = new Map<string, number>();
  #anonymousPeaks = new Map<string, number>();
  #timer: ReturnType<typeof setInterval>;

  /** Starts sampling at once, every `intervalMs`. */
  constructor(intervalMs: number = DEFAULT_SAMPLE_INTERVAL_MS) {
    this.#timer = setInterval(() => this.sample(), intervalMs);
  }

  /** Watches the process `find` returns, under `label`. */
  watch(label: string, find: PidFinder): void {
    this.#finders.set(label, find);
  }

  /** Reads every watched process's peak now. */
  sample(): void {
    for (const [label, find] of this.#finders) {
      let pid = this.#pids.get(label);
      if (pid === undefined) {
        pid = find();
        if (pid === undefined) continue;
        this.#pids.set(label, pid);
      }
      const peak = peakRssBytes(pid);
      if (peak !== undefined) this.#peaks.set(label, Math.max(peak, this.#peaks.get(label) ?? 0));
      // The kernel keeps no high-water mark of this one: the largest sample stands for it.
      const anonymous = anonymousRssBytes(pid);
      if (anonymous !== undefined) {
        this.#anonymousPeaks.set(
          label,
          Math.max(anonymous, this.#anonymousPeaks.get(label) ?? 0),
        );
      }
    }
  }

  /** Stops sampling and returns each label's peak in bytes (0 when never seen). */
  stop(): Record<string, number> {
    clearInterval(this.#timer);
    return Object.fromEntries([...this.#finders.keys()].map((label) => [
      label,
      this.#peaks.get(label) ?? 0,
    ]));
  }

  /** Each label's largest sampled private (anonymous) RSS in bytes (0 when never seen). */
  anonymousPeaks(): Record<string, number> {
    return Object.fromEntries([...this.#finders.keys()].map((label) => [
      label,
      this.#anonymousPeaks.get(label) ?? 0,
    ]));
  }
}
