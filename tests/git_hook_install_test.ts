/**
 * The example hook's install.sh on a machine without deno on PATH: it records
 * the deno that npx runs, or says in one line how to point it at one.
 */

import assert from "node:assert/strict";
import { DENO, tempDir } from "./support/processes.ts";
import { findProgram, missing, pathOf, unlessUnavailable } from "./support/requirements.ts";
import { EXAMPLE_DIR, git, gitEnv } from "./support/git_remote.ts";

/** Why install.sh cannot be tried here: it needs git. */
const gitMissing = missing(["git"]);

/** What install.sh runs, besides the shell's built-ins and deno or npx. */
const INSTALL_PROGRAMS = ["sh", "git", "dirname", "sed", "mkdir", "cp", "chmod"];

/**
 * Runs install.sh on a new bare repository under `dir` with PATH holding only
 * INSTALL_PROGRAMS and `extra` (name to script), without DENO or PHONEHOME_BIN.
 */
async function installWithout(
  dir: string,
  extra: Record<string, string>,
): Promise<{ code: number; stderr: string; repo: string }> {
  const bin = await pathOf(`${dir}/bin`, INSTALL_PROGRAMS);
  for (const [name, script] of Object.entries(extra)) {
    await Deno.writeTextFile(`${bin}/${name}`, script, { mode: 0o755 });
  }
  const repo = `${dir}/web.git`;
  await git("/", "init", "-q", "--bare", repo);
  const result = await new Deno.Command(findProgram("sh") ?? "/bin/sh", {
    args: [`${EXAMPLE_DIR}/install.sh`, repo],
    env: gitEnv({ PATH: bin }),
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code: result.code, stderr: new TextDecoder().decode(result.stderr), repo };
}

Deno.test(unlessUnavailable(gitMissing, {
  name: "install.sh without DENO and without deno on PATH records the deno that npx runs",
  fn: async () => {
    await using dir = await tempDir();
    // Stands in for npx (which needs no network once it has deno@2.9.6): runs the tests' deno.
    const npx = [
      "#!/bin/sh",
      '[ "$1 $2" = "--yes deno@2.9.6" ] || { echo "unexpected npx $*" >&2; exit 2; }',
      "shift 2",
      `exec '${DENO}' "$@"`,
      "",
    ].join("\n");
    const { code, stderr, repo } = await installWithout(dir.path, { npx });
    assert.equal(code, 0, stderr);
    const settings = await Deno.readTextFile(`${repo}/hooks/phonehome.env`);
    assert.ok(settings.split("\n").includes(`PHONEHOME_DENO='${DENO}'`), settings);
  },
}));

Deno.test(unlessUnavailable(gitMissing, {
  name: "install.sh without deno or npx says in one line how to point it at a deno",
  fn: async () => {
    await using dir = await tempDir();
    const { code, stderr } = await installWithout(dir.path, {});
    assert.equal(code, 64, stderr);
    assert.match(
      stderr,
      /^Cannot find deno: set DENO to its path \(with Node\.js, npx --yes deno@/,
    );
    assert.equal(stderr.trim().split("\n").length, 1, stderr);
  },
}));
