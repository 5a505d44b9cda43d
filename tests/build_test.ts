/**
 * End to end through `phonehome build`: a real relay process, a real build
 * process, a real WebSocket, and the receiver's real stdout and stderr.
 */

import assert from "node:assert/strict";
import {
  denoScript,
  digestStream,
  isAlive,
  LineWatcher,
  readAll,
  readText,
  sha256,
  spawnPhonehome,
  spawnShellBuild,
  tempDir,
} from "./support/processes.ts";
import { settlesWithin } from "../src/timing.ts";

async function runBuild(
  command: string[],
  flags: string[] = [],
): Promise<{ code: number; stdout: Uint8Array; stderrBytes: Uint8Array; stderr: string }> {
  const child = spawnPhonehome(["build", "--idle-interval=0", ...flags, "--", ...command]);
  const [stdout, stderrBytes, status] = await Promise.all([
    readAll(child.stdout),
    readAll(child.stderr),
    child.status,
  ]);
  return { code: status.code, stdout, stderrBytes, stderr: new TextDecoder().decode(stderrBytes) };
}

Deno.test("100 MB of random binary on stdout interleaved with stderr arrives byte-exact", async () => {
  await using dir = await tempDir();
  const report = `${dir.path}/report.json`;
  const child = spawnPhonehome([
    "build",
    "--idle-interval=0",
    "--",
    ...denoScript("emit.ts", String(100 * 1024 * 1024), String(20 * 1024 * 1024), "7", report),
  ]);
  const [stdout, stderr, status] = await Promise.all([
    digestStream(child.stdout),
    digestStream(child.stderr),
    child.status,
  ]);
  assert.equal(status.code, 0);
  const written = JSON.parse(await Deno.readTextFile(report));
  assert.deepEqual({ bytes: stdout.bytes, sha256: stdout.sha256 }, written.stdout);
  assert.deepEqual({ bytes: stderr.bytes, sha256: stderr.sha256 }, written.stderr);
});

Deno.test("a 50 MB line without a newline arrives whole", async () => {
  const size = 50 * 1024 * 1024;
  const child = spawnShellBuild(`head -c ${size} /dev/zero | tr '\\0' 'x'`);
  const [stdout, stderr, status] = await Promise.all([
    digestStream(child.stdout),
    readText(child.stderr),
    child.status,
  ]);
  assert.equal(status.code, 0, stderr);
  assert.equal(stdout.bytes, size);
  assert.equal(stdout.sha256, sha256("x".repeat(size)));
});

Deno.test("control bytes, carriage returns, ANSI colours and invalid UTF-8 pass untouched", async () => {
  const stdoutBytes = "\x1b[1G-----> Building\r\n\x1b[32mok\x1b[0m\r50%\r100%\xff\xfe\x00end";
  const stderrBytes = "\x1b[31mwarning\x1b[0m\xc3\x28 no newline";
  const result = await runBuild([
    "sh",
    "-c",
    `printf '${toPrintf(stdoutBytes)}'; printf '${toPrintf(stderrBytes)}' >&2`,
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(result.stdout, latin1(stdoutBytes));
  assert.deepEqual(result.stderrBytes, latin1(stderrBytes));
});

for (const code of [0, 1, 42]) {
  Deno.test(`the build's exit code ${code} is the exit status of phonehome build`, async () => {
    const result = await runBuild(["sh", "-c", `echo before exit; exit ${code}`]);
    assert.equal(result.code, code, result.stderr);
    assert.equal(new TextDecoder().decode(result.stdout), "before exit\n");
  });
}

Deno.test("a build killed by SIGKILL reports 137", async () => {
  const result = await runBuild(["sh", "-c", "echo about to die; kill -KILL $$"]);
  assert.equal(result.code, 137, result.stderr);
  assert.equal(new TextDecoder().decode(result.stdout), "about to die\n");
});

Deno.test("a missing build command reports 127 with a one-line reason", async () => {
  const result = await runBuild(["/nonexistent/build.sh"]);
  assert.equal(result.code, 127);
  assert.match(
    result.stderr,
    /Cannot start the build command "\/nonexistent\/build.sh": not found/,
  );
});

Deno.test("a script whose #! interpreter is missing reports 127 naming the interpreter", async (t) => {
  await using dir = await tempDir();
  const script = `${dir.path}/build.sh`;
  await Deno.writeTextFile(script, "#!/nonexistent/bin/sh -e\necho built\n", { mode: 0o755 });
  const expected = new RegExp(
    `^phonehome: Cannot start the build command "[^"]*build\\.sh": its interpreter ` +
      `"/nonexistent/bin/sh" \\(from the #! line of ${script}\\) was not found; check the ` +
      `script's first line\\.\\n$`,
  );
  await t.step("by its path", async () => {
    const result = await runBuild([script]);
    assert.equal(result.code, 127, result.stderr);
    assert.match(result.stderr, expected);
  });
  await t.step("found on PATH", async () => {
    const child = spawnPhonehome(["build", "--idle-interval=0", "--", "build.sh"], {
      env: { PATH: `${dir.path}:${Deno.env.get("PATH") ?? ""}` },
    });
    const [stderr, status] = await Promise.all([readText(child.stderr), child.status]);
    await child.stdout.cancel();
    assert.equal(status.code, 127, stderr);
    assert.match(stderr, expected);
  });
});

Deno.test("--merge sends the build's stderr to stdout and keeps stderr for phonehome", async () => {
  const result = await runBuild(["sh", "-c", "echo out; echo err >&2; echo out2"], ["--merge"]);
  assert.equal(result.code, 0);
  const stdout = new TextDecoder().decode(result.stdout);
  assert.deepEqual(stdout.split("\n").sort(), ["", "err", "out", "out2"]);
  assert.equal(result.stderr, "");
});

Deno.test("the build does not see the secret or the phone-home URL", async () => {
  const result = await runBuild([
    "sh",
    "-c",
    'echo "token=${PHONEHOME_TOKEN:-unset} url=${PHONEHOME_URL:-unset}"',
  ]);
  assert.equal(new TextDecoder().decode(result.stdout), "token=unset url=unset\n");
});

Deno.test("a build that leaves a process holding stdout open ends after the drain grace", async () => {
  await using dir = await tempDir();
  const pidFile = `${dir.path}/leftover.pid`;
  const result = await runBuild(
    ["sh", "-c", `echo main done; sh -c 'echo $$ > ${pidFile}; exec sleep 600' & exit 0`],
    ["--drain-grace=300"],
  );
  assert.equal(result.code, 0, result.stderr);
  assert.equal(new TextDecoder().decode(result.stdout), "main done\n");
  assert.match(result.stderr, /a process it left behind kept its output open/);
  const leftover = Number(await Deno.readTextFile(pidFile));
  assert.equal(isAlive(leftover), false, "the leftover process was stopped");
});

Deno.test("the demo build's bytes come through exactly as the script wrote them", async () => {
  const direct = await new Deno.Command("sh", {
    args: ["examples/demo/build.sh"],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const result = await runBuild(["sh", "examples/demo/build.sh"]);
  assert.equal(result.code, 0);
  assert.deepEqual(result.stdout, direct.stdout);
  assert.deepEqual(result.stderrBytes, direct.stderr);
});

function toPrintf(text: string): string {
  return [...text].map((c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`).join("");
}

function latin1(text: string): Uint8Array {
  return Uint8Array.from([...text].map((c) => c.charCodeAt(0)));
}

Deno.test("what a build writes just before it goes quiet arrives while it is still quiet", async () => {
  await using dir = await tempDir();
  const gate = `${dir.path}/gate`;
  await new Deno.Command("mkfifo", { args: [gate] }).output();
  // A burst leaves its last lines coalesced, waiting for the coalescing timer while the relay's
  // next read of the pipe is pending; the build then waits for the test, which waits for them.
  const burst = 'i=0; while [ $i -lt 2000 ]; do echo "line$i"; i=$((i+1)); done';
  const child = spawnShellBuild(`${burst}; read go < "${gate}"; echo "after $go"`);
  const stdout = new LineWatcher(child.stdout);
  const stderr = readText(child.stderr);
  const lastLine = stdout.waitFor(/^line1999$/);
  assert.ok(await settlesWithin(lastLine, 30_000), "the burst's last line arrived");
  await Deno.writeTextFile(gate, "now\n");
  assert.equal((await child.status).code, 0, await stderr);
  const text = await stdout.done;
  assert.equal(text.split("\n").length - 1, 2001);
  assert.ok(text.endsWith("line1999\nafter now\n"));
});
