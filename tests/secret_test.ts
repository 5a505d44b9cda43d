/**
 * The build must not get hold of the per-build secret: with it, it could
 * forge its own stream. The relay keeps it out of the build's environment,
 * and every phonehome process hides its /proc files from other processes of
 * its user, so a build running as the same user cannot read it out of a
 * parent either. As root the suite runs phonehome as nobody for this, since
 * root may read every process.
 */

import assert from "node:assert/strict";
import { collect, DENO, phonehomeArgv, tempDir } from "./support/processes.ts";

const TOKEN = "secret-walk-0123456789abcdef";

/** A build that walks up its ancestors and looks for the secret in what /proc shows of each. */
const WALK = `
p=$PPID
while [ "$p" -gt 1 ]; do
  for file in environ cmdline; do
    if tr '\\0' '\\n' < /proc/$p/$file 2>/dev/null | grep -q "${TOKEN}"; then
      echo "found in $file of $p"
    fi
  done
  p=$(cut -d' ' -f4 /proc/$p/stat)
done
echo walked
`;

/**
 * How to run Deno as an unprivileged user when the tests run as root: the
 * Deno binary and its cache, hard-linked to where nobody can read them.
 */
async function unprivileged(dir: string): Promise<{ argv: string[]; env: Record<string, string> }> {
  if (Deno.uid() !== 0) return { argv: [DENO], env: {} };
  const denoDir = Deno.env.get("DENO_DIR") ??
    `${Deno.env.get("HOME")}/.cache/deno`;
  await Deno.link(DENO, `${dir}/deno`);
  const copied = await new Deno.Command("cp", { args: ["-al", denoDir, `${dir}/deno_dir`] })
    .output();
  assert.ok(copied.success, new TextDecoder().decode(copied.stderr));
  const opened = await new Deno.Command("sh", {
    args: ["-c", `chmod 777 "$1" && find "$1/deno_dir" -type d -exec chmod 777 {} +`, "sh", dir],
  }).output();
  assert.ok(opened.success, new TextDecoder().decode(opened.stderr));
  return {
    argv: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", `${dir}/deno`],
    env: { HOME: dir, DENO_DIR: `${dir}/deno_dir` },
  };
}

Deno.test("a build running as the relay's own user cannot read the secret from any process above it", async () => {
  await using dir = await tempDir();
  const { argv, env } = await unprivileged(dir.path);
  await Deno.writeTextFile(`${dir.path}/walk.sh`, WALK);
  const [program, ...args] = argv;
  const { code, stdout, stderr } = await collect(
    new Deno.Command(program, {
      // The checkout's command line, run by the Deno chosen above.
      args: [
        ...args,
        ...phonehomeArgv("build", "--idle-interval=0", "--", "sh", `${dir.path}/walk.sh`)
          .slice(1),
      ],
      env: { ...env, PHONEHOME_TOKEN: TOKEN },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
  assert.equal(code, 0, stderr);
  assert.equal(stdout, "walked\n");
});
