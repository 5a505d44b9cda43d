/**
 * Test support: run phonehome's real subcommands as processes, and observe
 * them from outside (output hashes, exit status, memory from /proc, files).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { Crc32 } from "../../src/protocol/mod.ts";
import { V8_FLAGS_ARGUMENT } from "../../src/v8_flags.ts";

/** The CLI entry point under test. */
export const MAIN = fileURLToPath(new URL("../../main.ts", import.meta.url));

/** The project's deno.json, so subprocesses resolve imports like the tests do. */
export const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));

/** A fixture script's path. */
export function fixture(name: string): string {
  return fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
}

/** The `deno` binary running the tests. */
export const DENO = Deno.execPath();

/** Argument vector that runs a fixture TypeScript file under Deno. */
export function denoScript(name: string, ...args: string[]): string[] {
  return [DENO, "run", "-A", "--quiet", fixture(name), ...args];
}

/** Argument vector that runs `phonehome ...args` from this checkout, as a process would. */
export function phonehomeArgv(...args: string[]): string[] {
  return [DENO, "run", "-A", "--quiet", V8_FLAGS_ARGUMENT, `--config=${CONFIG}`, MAIN, ...args];
}

/** Options for {@linkcode spawnPhonehome}. */
export interface SpawnOptions {
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Remove inherited PHONEHOME_* and builder variables first (default true). */
  cleanEnv?: boolean;
  stdout?: "piped" | "null" | "inherit";
  stderr?: "piped" | "null" | "inherit";
  cwd?: string;
}

const INHERITED_SETTINGS = /^(PHONEHOME_|BUILDER_POD_|SESSION_IDLE_INTERVAL$|POD_IP$)/;

/** Starts `deno run -A main.ts ...args` as a real process. */
export function spawnPhonehome(args: string[], options: SpawnOptions = {}): Deno.ChildProcess {
  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([name]) =>
      options.cleanEnv === false || !INHERITED_SETTINGS.test(name)
    ),
  );
  const [program, ...argv] = phonehomeArgv(...args);
  return new Deno.Command(program, {
    args: argv,
    env: { ...env, ...options.env },
    clearEnv: true,
    stdin: "null",
    stdout: options.stdout ?? "piped",
    stderr: options.stderr ?? "piped",
    cwd: options.cwd,
  }).spawn();
}

/**
 * Starts `phonehome build [flags] -- sh -c SCRIPT` as a real process, without
 * the idle ticker's dots in its stderr.
 */
export function spawnShellBuild(
  script: string,
  flags: readonly string[] = [],
  options: SpawnOptions = {},
): Deno.ChildProcess {
  return spawnPhonehome(
    ["build", "--idle-interval=0", ...flags, "--", "sh", "-c", script],
    options,
  );
}

/** Size and sha256 of everything read from a stream. */
export interface StreamDigest {
  bytes: number;
  sha256: string;
}

/** Reads `stream` to its end, hashing as it goes, keeping at most `keepBytes` of it. */
export async function digestStream(
  stream: ReadableStream<Uint8Array>,
  keepBytes = 0,
): Promise<StreamDigest & { head: Uint8Array }> {
  const hash = createHash("sha256");
  let bytes = 0;
  const kept: Uint8Array[] = [];
  let keptBytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    bytes += chunk.byteLength;
    if (keptBytes < keepBytes) {
      const part = chunk.subarray(0, keepBytes - keptBytes);
      kept.push(part.slice());
      keptBytes += part.byteLength;
    }
  }
  const head = new Uint8Array(keptBytes);
  let at = 0;
  for (const part of kept) {
    head.set(part, at);
    at += part.byteLength;
  }
  return { bytes, sha256: hash.digest("hex"), head };
}

/** Reads a stream to its end as bytes. */
export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** How a process ended, and everything it wrote. */
export interface Finished {
  code: number;
  stdout: string;
  stderr: string;
}

/** Waits for `child` to end, reading both of its piped outputs to their ends. */
export async function collect(child: Deno.ChildProcess): Promise<Finished> {
  const [stdout, stderr, status] = await Promise.all([
    readText(child.stdout),
    readText(child.stderr),
    child.status,
  ]);
  return { code: status.code, stdout, stderr };
}

/** Reads a stream to its end as UTF-8 text. */
export async function readText(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream).text();
}

/** CRC-32 of bytes in memory, as FINISHED carries it (8 lower-case hex digits). */
export function crc32Of(bytes: Uint8Array | string): string {
  const checksum = new Crc32();
  checksum.update(typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes);
  return checksum.hex();
}

/** sha256 of bytes in memory, as lower-case hex. */
export function sha256(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** A port that was free a moment ago (the OS picked it; we released it). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

// The benchmark observes processes through /proc with the same readers; one copy serves both.
export { isAlive, peakRssBytes } from "./proc_status.ts";

/** Pids of the living children of a process (the relay's own reader of process trees). */
export { childrenOf as childPids } from "../../src/process_tree.ts";

/**
 * Waits for `path` to exist with content, reacting to file-system events
 * rather than polling; fails after `timeoutMs`.
 */
export async function waitForFile(path: string, timeoutMs = 20_000): Promise<string> {
  const directory = path.slice(0, path.lastIndexOf("/")) || "/";
  const watcher = Deno.watchFs(directory, { recursive: false });
  const timer = setTimeout(() => watcher.close(), timeoutMs);
  try {
    const existing = await readIfPresent(path);
    if (existing) return existing;
    for await (const _event of watcher) {
      const text = await readIfPresent(path);
      if (text) return text;
    }
    throw new Error(`${path} did not appear within ${timeoutMs} ms`);
  } finally {
    clearTimeout(timer);
    try {
      watcher.close();
    } catch {
      // Already closed by the timeout.
    }
  }
}

async function readIfPresent(path: string): Promise<string | undefined> {
  try {
    return (await Deno.readTextFile(path)) || undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * Reads lines from a text stream as they arrive; `waitFor` resolves at the
 * first line (seen or still to come) matching a pattern.
 */
export class LineWatcher {
  #lines: string[] = [];
  #waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  /** Settles when the stream has ended, with all of its text. */
  readonly done: Promise<string>;

  /** Starts reading `stream`. */
  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = this.#read(stream);
  }

  /** Every line seen so far. */
  get lines(): readonly string[] {
    return this.#lines;
  }

  async #read(stream: ReadableStream<Uint8Array>): Promise<string> {
    let all = "";
    let carry = "";
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      all += text;
      const parts = (carry + text).split("\n");
      carry = parts.pop() ?? "";
      for (const line of parts) this.#add(line);
    }
    if (carry) this.#add(carry);
    for (const waiter of this.#waiters) waiter.resolve("");
    return all;
  }

  #add(line: string): void {
    this.#lines.push(line);
    this.#waiters = this.#waiters.filter((waiter) => {
      if (!waiter.pattern.test(line)) return true;
      waiter.resolve(line);
      return false;
    });
  }

  /** Resolves with the first line matching `pattern`; with "" if the stream ends first. */
  waitFor(pattern: RegExp): Promise<string> {
    const seen = this.#lines.find((line) => pattern.test(line));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => this.#waiters.push({ pattern, resolve }));
  }
}

/** A temporary directory removed by the returned disposer. */
export async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "phonehome-test-" });
  return {
    path,
    async [Symbol.asyncDispose](): Promise<void> {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}
