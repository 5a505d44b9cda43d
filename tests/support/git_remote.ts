/**
 * Test support: bare repositories with the example pre-receive hook installed
 * by its own install.sh, clones with a commit ready to push, and `git push` as
 * a real process whose stderr is read while it streams.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { childPids, DENO, LineWatcher } from "./processes.ts";

/** The example hook's directory. */
export const EXAMPLE_DIR = fileURLToPath(new URL("../../examples/git-receive", import.meta.url));

/** The environment git runs in: nothing from the user's or the system's git config. */
export function gitEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin",
    // A hook run over file:// inherits this; Deno keeps its cache under HOME.
    HOME: Deno.env.get("HOME") ?? "/root",
    LANG: "C",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_AUTHOR_NAME: "Dev Eloper",
    GIT_AUTHOR_EMAIL: "dev@example.com",
    GIT_COMMITTER_NAME: "Dev Eloper",
    GIT_COMMITTER_EMAIL: "dev@example.com",
  };
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir !== undefined) env.DENO_DIR = denoDir;
  return { ...env, ...extra };
}

async function run(
  program: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(program, {
    args,
    cwd: options.cwd,
    env: options.env ?? gitEnv(),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  if (code !== 0) {
    throw new Error(
      `${program} ${args.join(" ")} exited with ${code}: ${decoder.decode(stderr)}`,
    );
  }
  return decoder.decode(stdout);
}

/** Runs git in `cwd`; resolves with its stdout, or fails with its stderr. */
export function git(cwd: string, ...args: string[]): Promise<string> {
  return run("git", args, { cwd });
}

/** Settings of a hooked repository. */
export interface HookedRepoOptions {
  /** Where the hook puts the work directories of builds (BUILD_WORK_ROOT). */
  workRoot: string;
  /** Extra lines for the installed phonehome.env, such as `export PHONEHOME_VERBOSE=1`. */
  settings?: string[];
  /** Extra environment for install.sh, such as `PHONEHOME_BIN`. */
  installEnv?: Record<string, string>;
}

/** Creates a bare repository at `path` and installs the hook with the example's install.sh. */
export async function createHookedRepo(path: string, options: HookedRepoOptions): Promise<void> {
  await git("/", "init", "-q", "--bare", path);
  await run("sh", [`${EXAMPLE_DIR}/install.sh`, path], {
    env: gitEnv({ DENO, BUILD_WORK_ROOT: options.workRoot, ...options.installEnv }),
  });
  if (options.settings !== undefined) {
    await Deno.writeTextFile(`${path}/hooks/phonehome.env`, options.settings.join("\n") + "\n", {
      append: true,
    });
  }
}

/**
 * Creates a repository at `path` with `files` committed on `main` (`bin/compile`
 * executable); resolves with the commit's id.
 */
export async function createClone(path: string, files: Record<string, string>): Promise<string> {
  await git("/", "init", "-q", "-b", "main", path);
  for (const [name, content] of Object.entries(files)) {
    const file = `${path}/${name}`;
    await Deno.mkdir(file.slice(0, file.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(file, content, { mode: name.startsWith("bin/") ? 0o755 : 0o644 });
  }
  await git(path, "add", "-A");
  await git(path, "commit", "-q", "-m", "Build me");
  return (await git(path, "rev-parse", "HEAD")).trim();
}

/** The id `ref` points to in `repository`, or undefined when it does not exist. */
export async function refOf(repository: string, ref: string): Promise<string | undefined> {
  try {
    return (await git(repository, "rev-parse", "--verify", "-q", ref)).trim();
  } catch {
    return undefined;
  }
}

/** What the user saw of the remote side: git's `remote: ` lines without prefix and padding. */
export function remoteLines(stderr: string): string[] {
  // git prints every line (and every \r-separated part of one) of the hook's
  // output as `remote: TEXT`, padded with spaces to overwrite what was there.
  return stderr.split(/\r|\n/)
    .filter((part) => part.startsWith("remote: "))
    .map((part) => part.slice("remote: ".length).replace(/ +$/, ""));
}

/** How a push ended. */
export interface PushResult {
  /** git push's exit status. */
  code: number;
  /** Everything git push wrote to stderr. */
  stderr: string;
  /** The `remote: ` lines, see {@linkcode remoteLines}. */
  remote: string[];
}

/** What to push, from where, to where. */
export interface PushOptions {
  /** The clone to push from. */
  cwd: string;
  /** The repository to push to. */
  url: string;
  /** Extra environment, such as `GIT_SSH_COMMAND`. */
  env?: Record<string, string>;
  /** Refspecs to push; by default `HEAD:refs/heads/main`. */
  refspecs?: string[];
}

/** A running `git push`, its stderr read as it arrives. */
export class Push {
  #child: Deno.ChildProcess;
  /** git push's stderr, line by line as it streams. */
  readonly stderr: LineWatcher;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.stderr = new LineWatcher(child.stderr);
  }

  /** Starts `git push URL REFSPEC...` in the clone. */
  static start(options: PushOptions): Push {
    const child = new Deno.Command("git", {
      args: ["push", options.url, ...(options.refspecs ?? ["HEAD:refs/heads/main"])],
      cwd: options.cwd,
      env: gitEnv(options.env),
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    return new Push(child);
  }

  /** The process id of git push. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Resolves when git push has exited, with what it showed. */
  async result(): Promise<PushResult> {
    const [status, stderr] = await Promise.all([this.#child.status, this.stderr.done]);
    return { code: status.code, stderr, remote: remoteLines(stderr) };
  }
}

/** Process ids of every descendant of `pid`, from /proc. */
export function descendants(pid: number): number[] {
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const children = childPids(queue.shift() ?? pid);
    found.push(...children);
    queue.push(...children);
  }
  return found;
}

/** The short command name of a process, from /proc; undefined once it is gone. */
export function commandName(pid: number): string | undefined {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/comm`).trim();
  } catch {
    return undefined;
  }
}

/**
 * Checks that `expected` appear in `lines` in this order, other lines allowed
 * between them; returns the expected lines from the first one missing or out of
 * order on (empty when all are there).
 */
export function missingInOrder(lines: readonly string[], expected: readonly string[]): string[] {
  let at = 0;
  for (const [i, wanted] of expected.entries()) {
    const found = lines.indexOf(wanted, at);
    if (found < 0) return expected.slice(i);
    at = found + 1;
  }
  return [];
}
