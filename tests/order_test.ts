/**
 * Output in the order the build wrote it: when the builder's stdout and
 * stderr are one file, the build gets one pipe for both and the result is
 * byte for byte what `2>&1` gives; kept apart, each stream is exact.
 */

import assert from "node:assert/strict";
import {
  collect,
  phonehomeArgv,
  readAll,
  readText,
  spawnPhonehome,
  tempDir,
} from "./support/processes.ts";
import { skipNote, unavailable } from "./support/requirements.ts";

/** 10,000 lines on stdout and 10,000 on stderr, alternating, with no pause. */
const ALTERNATING = 'i=0; while [ $i -lt 10000 ]; do echo "out$i"; echo "err$i" >&2; ' +
  "i=$((i+1)); done";

/** Runs `command` under sh with its outputs redirected by `redirect`; resolves with its status. */
async function shell(command: string[], redirect: string): Promise<number> {
  const quoted = command.map((word) => `'${word.replaceAll("'", `'\\''`)}'`).join(" ");
  const { code } = await new Deno.Command("sh", {
    args: ["-c", `${quoted} ${redirect}`],
    stdin: "null",
  }).output();
  return code;
}

/** `phonehome build` from this checkout, as a command line. */
function phonehomeBuild(...flags: string[]): string[] {
  return phonehomeArgv("build", "--idle-interval=0", ...flags);
}

Deno.test("with stdout and stderr to one file, the output is byte for byte what 2>&1 gives", async (t) => {
  await using dir = await tempDir();
  assert.equal(await shell(["sh", "-c", ALTERNATING], `> ${dir.path}/expected 2>&1`), 0);
  const expected = await Deno.readFile(`${dir.path}/expected`);
  for (const run of [1, 2, 3]) {
    await t.step(`run ${run}`, async () => {
      const status = await shell(
        [...phonehomeBuild(), "--", "sh", "-c", ALTERNATING],
        `> ${dir.path}/got 2>&1`,
      );
      assert.equal(status, 0);
      assert.deepEqual(await Deno.readFile(`${dir.path}/got`), expected);
    });
  }
});

Deno.test("--merge with stderr thrown away puts the build's writes, in order, on stdout", async () => {
  await using dir = await tempDir();
  assert.equal(await shell(["sh", "-c", ALTERNATING], `> ${dir.path}/expected 2>&1`), 0);
  const status = await shell(
    [...phonehomeBuild("--merge"), "--", "sh", "-c", ALTERNATING],
    `> ${dir.path}/got 2>/dev/null`,
  );
  assert.equal(status, 0);
  assert.deepEqual(
    await Deno.readFile(`${dir.path}/got`),
    await Deno.readFile(`${dir.path}/expected`),
  );
});

Deno.test("with stdout and stderr to two files, each file holds exactly its stream", async () => {
  await using dir = await tempDir();
  const status = await shell(
    [...phonehomeBuild(), "--", "sh", "-c", ALTERNATING],
    `> ${dir.path}/out 2> ${dir.path}/err`,
  );
  assert.equal(status, 0);
  const lines = (prefix: string): string =>
    Array.from({ length: 10000 }, (_, i) => `${prefix}${i}\n`).join("");
  assert.equal(await Deno.readTextFile(`${dir.path}/out`), lines("out"));
  assert.equal(await Deno.readTextFile(`${dir.path}/err`), lines("err"));
});

const scriptMissing = unavailable({ programs: ["script"] });

Deno.test({
  name: `the demo in a terminal shows its stderr warning before it says the build succeeded, ` +
    `10 runs out of 10${skipNote(scriptMissing)}`,
  ignore: scriptMissing !== undefined,
  async fn(): Promise<void> {
    const demo = [...phonehomeBuild(), "--", "sh", "examples/demo/build.sh"]
      .map((word) => `'${word}'`).join(" ");
    for (let run = 1; run <= 10; run++) {
      // script(1) gives the command a pseudo-terminal: its stdout and stderr are that one file.
      const child = new Deno.Command("script", {
        args: ["-qec", demo, "/dev/null"],
        cwd: new URL("..", import.meta.url).pathname,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const [output, errors, status] = await Promise.all([
        readAll(child.stdout),
        readText(child.stderr),
        child.status,
      ]);
      assert.equal(status.code, 0, errors);
      const text = new TextDecoder().decode(output);
      const warning = text.indexOf("warning: this is what stderr looks like");
      const succeeded = text.indexOf("-----> Build succeeded");
      assert.ok(warning >= 0 && warning < succeeded, `run ${run}:\n${text}`);
      assert.ok(text.trimEnd().endsWith("done"), `run ${run} ends with the unfinished line`);
    }
  },
});

Deno.test("with one pipe, a build that cannot start is reported as it is without", async (t) => {
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir.path}/broken.sh`, "#!/nonexistent/bin/sh\necho never\n", {
    mode: 0o755,
  });
  await Deno.writeTextFile(`${dir.path}/plain.txt`, "not a program\n", { mode: 0o644 });
  const cases: Array<[string, string, number, RegExp]> = [
    ["a missing command", "no-such-command-xyz", 127, /not found; check the image's PATH/],
    ["a missing interpreter", `${dir.path}/broken.sh`, 127, /its interpreter "\/nonexistent/],
    ["a file that is not executable", `${dir.path}/plain.txt`, 126, /permission denied/],
  ];
  for (const [what, command, code, message] of cases) {
    await t.step(what, async () => {
      const { code: status, stdout, stderr } = await collect(
        spawnPhonehome(["build", "--idle-interval=0", "--merge", "--", command]),
      );
      assert.equal(status, code, stderr);
      assert.equal(stdout, "");
      assert.match(stderr, message);
    });
  }
});

Deno.test("phonehome's own lines start on a line of their own, even after an unfinished line of the build", async () => {
  const { code, stdout, stderr } = await collect(
    spawnPhonehome([
      "build",
      "--idle-interval=100",
      "--",
      "sh",
      "-c",
      'printf partial >&2; sleep 0.5; echo " rest" >&2',
    ]),
  );
  assert.equal(code, 0, stderr);
  assert.equal(stdout, "");
  // The '...' of the idle ticker are phonehome's: a newline first, then a line each.
  assert.match(stderr, /^partial\n(\.\.\.\n)+ rest\n$/);
});
