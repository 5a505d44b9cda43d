/**
 * Test support: what a test needs from the machine beyond Deno (root, system
 * programs), checked in one place. A test whose needs are not met is skipped,
 * with the reason at the end of its name, instead of failing: a fresh machine
 * with only Node.js runs the suite green. Only presence is checked, so a
 * program that is there but broken still fails its test.
 *
 * `.ci/run` installs every package named here and then insists that nothing
 * but the compile test was skipped.
 *
 * @module
 */

/** The Debian package that provides each program a test runs. */
export const PACKAGES: Readonly<Record<string, string>> = {
  sshd: "openssh-server",
  ssh: "openssh-client",
  "ssh-keygen": "openssh-client",
  git: "git",
  nft: "nftables",
  ip: "iproute2",
  tc: "iproute2",
  tini: "tini",
  socat: "socat",
  unshare: "util-linux",
  mkfifo: "coreutils",
  cksum: "coreutils",
  script: "bsdutils",
  openssl: "openssl",
};

/**
 * Where a daemon may be besides PATH: Debian puts sshd in /usr/sbin, which a
 * user's PATH often lacks, and the tests start it by absolute path.
 */
const OFF_PATH: Readonly<Record<string, readonly string[]>> = {
  sshd: ["/usr/sbin/sshd", "/usr/local/sbin/sshd"],
};

function isExecutableFile(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0o755) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * The path of `program` as a test would start it: the first executable match
 * on PATH (for sshd also its usual places off PATH), or undefined when there
 * is none.
 */
export function findProgram(program: string): string | undefined {
  const onPath = (Deno.env.get("PATH") ?? "").split(":").filter((dir) => dir !== "")
    .map((dir) => `${dir}/${program}`);
  return [...onPath, ...(OFF_PATH[program] ?? [])].find(isExecutableFile);
}

/** What a test needs. */
export interface Needs {
  /** Root, saying what for, such as "for network namespaces"; true for no reason given. */
  root?: string | true;
  /** Programs it runs, looked up like {@linkcode findProgram}. */
  programs?: readonly string[];
}

/**
 * Why a test cannot run here, such as "needs root (for network namespaces),
 * sshd (openssh-server)", or undefined when everything it needs is present.
 */
export function unavailable(needs: Needs): string | undefined {
  const missing: string[] = [];
  if (needs.root !== undefined && (Deno.build.os !== "linux" || Deno.uid() !== 0)) {
    missing.push(needs.root === true ? "root" : `root (${needs.root})`);
  }
  for (const program of needs.programs ?? []) {
    if (findProgram(program) !== undefined) continue;
    const from = PACKAGES[program];
    missing.push(from === undefined || from === program ? program : `${program} (${from})`);
  }
  return missing.length === 0 ? undefined : `needs ${missing.join(", ")}`;
}

/** Why programs are missing, or undefined when all are found: `unavailable({ programs })`. */
export function missing(programs: readonly string[]): string | undefined {
  return unavailable({ programs });
}

/** The end of a test's name: empty when it runs, " (skipped: REASON)" when it does not. */
export function skipNote(reason: string | undefined): string {
  return reason === undefined ? "" : ` (skipped: ${reason})`;
}

/**
 * A test definition that is skipped, with the reason ending its name, when
 * `reason` is defined, and runs as given otherwise.
 */
export function unlessUnavailable(
  reason: string | undefined,
  test: Deno.TestDefinition,
): Deno.TestDefinition {
  return { ...test, name: test.name + skipNote(reason), ignore: reason !== undefined };
}

/**
 * Makes `dir` a directory of links to `programs` (each as {@linkcode findProgram}
 * finds it), for a PATH that holds those and nothing else: how a test shows
 * what happens where some program is not installed. Resolves with `dir`.
 */
export async function pathOf(dir: string, programs: readonly string[]): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  for (const program of programs) {
    const found = findProgram(program);
    if (found === undefined) throw new Error(`${program} is not installed`);
    await Deno.symlink(found, `${dir}/${program}`);
  }
  return dir;
}
