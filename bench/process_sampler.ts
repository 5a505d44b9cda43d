/**
 * Watching the processes under test from /proc while they run: peak resident
 * memory (VmHWM, the kernel's own high-water mark, so sampling it now and
 * then loses nothing that happened in between), the largest private memory
 * sampled, and the CPU time used up to the last sample before each exits.
 *
 * @module
 */

import { anonymousRssBytes, cpuSeconds, peakRssBytes } from "../tests/support/proc_status.ts";

/** How often the processes are read, unless told otherwise. */
export const DEFAULT_SAMPLE_INTERVAL_MS = 20;

/** Finds a process to watch: called at each sample until it returns a pid. */
export type PidFinder = () => number | undefined;

/** Keeps the largest of each label's readings. */
class Largest {
  #values = new Map<string, number>();

  note(label: string, value: number | undefined): void {
    if (value !== undefined) this.#values.set(label, Math.max(value, this.#values.get(label) ?? 0));
  }

  /** Each label's largest reading, 0 for a label never read. */
  of(labels: Iterable<string>): Record<string, number> {
    return Object.fromEntries([...labels].map((label) => [label, this.#values.get(label) ?? 0]));
  }
}

/** Samples named processes every few milliseconds until stopped. */
export class ProcessSampler {
  #finders = new Map<string, PidFinder>();
  #pids = new Map<string, number>();
  #peaks = new Largest();
  #anonymousPeaks = new Largest();
  #cpuSeconds = new Largest();
  #timer: ReturnType<typeof setInterval>;

  /** Starts sampling at once, every `intervalMs`. */
  constructor(intervalMs: number = DEFAULT_SAMPLE_INTERVAL_MS) {
    this.#timer = setInterval(() => this.sample(), intervalMs);
  }

  /** Watches the process `find` returns, under `label`. */
  watch(label: string, find: PidFinder): void {
    this.#finders.set(label, find);
  }

  /** Reads every watched process now. */
  sample(): void {
    for (const [label, find] of this.#finders) {
      let pid = this.#pids.get(label);
      if (pid === undefined) {
        pid = find();
        if (pid === undefined) continue;
        this.#pids.set(label, pid);
      }
      this.#peaks.note(label, peakRssBytes(pid));
      // The kernel keeps no high-water mark of this one: the largest sample stands for it.
      this.#anonymousPeaks.note(label, anonymousRssBytes(pid));
      // CPU time only grows: the largest reading is the last one before the process exited.
      this.#cpuSeconds.note(label, cpuSeconds(pid));
    }
  }

  /** Stops sampling and returns each label's peak RSS in bytes (0 when never seen). */
  stop(): Record<string, number> {
    clearInterval(this.#timer);
    return this.#peaks.of(this.#finders.keys());
  }

  /** Each label's largest sampled private (anonymous) RSS in bytes (0 when never seen). */
  anonymousPeaks(): Record<string, number> {
    return this.#anonymousPeaks.of(this.#finders.keys());
  }

  /**
   * Each label's CPU seconds (user and system) at its last sample, 0 when
   * never seen: up to one interval's worth before its exit goes unseen.
   */
  cpuSeconds(): Record<string, number> {
    return this.#cpuSeconds.of(this.#finders.keys());
  }
}
