/**
 * What every benchmark case shares: the options, a scratch directory with the
 * generated corpora, the rows of the result table, and the record of any byte
 * lost or process failed (the one thing a bench run treats as an error).
 *
 * @module
 */

import { type CorpusDigest, writeCorpus } from "./corpus.ts";
import type { BenchOptions } from "./options.ts";
import type { RouteRun } from "./routes.ts";

/** One row of the result table. */
export interface Row {
  /** The case, numbered as in the issue: "1. Bulk throughput". */
  case: string;
  /** What is measured, with its unit. */
  figure: string;
  /** phonehome's figure. */
  phonehome: string;
  /** The baseline's figure (socat, or what the row names). */
  baseline: string;
  /** phonehome against the baseline, or "" when no ratio makes sense. */
  ratio: string;
  /** The issue's target for this figure, or "". */
  target: string;
  /** Whether the target was met; null when there is none. */
  met: boolean | null;
  /** How the figure was measured. */
  how: string;
}

/** A corpus written to the scratch directory. */
export interface Corpus extends CorpusDigest {
  /** Where it is. */
  path: string;
}

/** Shared state of one bench run. */
export class BenchContext {
  /** The run's options. */
  readonly options: BenchOptions;
  /** Scratch space, removed at the end. */
  readonly workDir: string;
  /** The result table, in case order. */
  readonly rows: Row[] = [];
  /** Everything a case wants in the JSON, by case name. */
  readonly data: Record<string, unknown> = {};
  /** Lost bytes and failed processes, one sentence each; any makes the run fail. */
  readonly failures: string[] = [];
  #corpora = new Map<number, Promise<Corpus>>();

  /** Creates a context over a scratch directory. */
  constructor(options: BenchOptions, workDir: string) {
    this.options = options;
    this.workDir = workDir;
  }

  /** The corpus of `bytes` bytes for the run's seed, generated on first use. */
  corpus(bytes: number): Promise<Corpus> {
    let corpus = this.#corpora.get(bytes);
    if (corpus === undefined) {
      const path = `${this.workDir}/corpus-${this.options.seed}-${bytes}.txt`;
      corpus = writeCorpus(path, { seed: this.options.seed, bytes }).then((digest) => ({
        ...digest,
        path,
      }));
      this.#corpora.set(bytes, corpus);
    }
    return corpus;
  }

  /**
   * Checks that a run delivered exactly `expected` (its size, and its sha256
   * when the reader hashed) and that every process succeeded; records a
   * failure otherwise. Returns whether it was whole. phonehome's own exit
   * status 0 also means its receiver verified byte counts and SHA-256 of what
   * it wrote against the relay's.
   */
  verify(run: RouteRun, expected: CorpusDigest, what: string): boolean {
    const problems: string[] = [];
    if (!run.ok) problems.push(`a process failed (${JSON.stringify(run.exitCodes)})`);
    if (run.read.bytes !== expected.bytes) {
      problems.push(`${expected.bytes - run.read.bytes} of ${expected.bytes} bytes lost`);
    } else if (run.read.sha256 !== "" && run.read.sha256 !== expected.sha256) {
      problems.push("the bytes differ (sha256 mismatch)");
    }
    if (problems.length === 0) return true;
    const stderr = run.stderr.trim().split("\n").slice(-5).join(" | ");
    this.failures.push(`${what}: ${problems.join("; ")}${stderr ? `; stderr: ${stderr}` : ""}`);
    return false;
  }

  /** Prints a progress line on stderr (stdout carries only the table). */
  progress(text: string): void {
    console.error(`bench: ${text}`);
  }
}
