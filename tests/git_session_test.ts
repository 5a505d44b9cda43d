/**
 * When the user goes away mid-build: the SSH client of a push is killed, or
 * whatever reads `phonehome build`'s output closes it. The builder side must
 * notice within seconds even while the build prints nothing, stop the build,
 * and leave no process behind.
 */

import assert from "node:assert/strict";
import { isAlive, LineWatcher, readText, spawnPhonehome, tempDir } from "./support/processes.ts";
import { sshdUnavailable, startSshd } from "./support/sshd.ts";
import {
  commandName,
  createClone,
  createHookedRepo,
  descendants,
  Push,
} from "./support/git_remote.ts";

const sshdMissing = sshdUnavailable();
const skipNote = sshdMissing === undefined ? "" : ` (skipped: ${sshdMissing})`;

/**
 * How long everything may take to go away. Generous on purpose: the build itself
 * stops within about a second, but a relay that loses the race between its own
 * send and the receiver's close waits out the launcher's 15 s stop grace.
 */
const STOP_DEADLINE_MS = 45_000;

/** How often to look at /proc: processes that are not our children announce no exit. */
const PROC_SCAN_INTERVAL_MS = 100;

/** Processes whose command line or working directory mentions `marker`, except `except`. */
function processesMentioning(marker: string, except: ReadonlySet<number>): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    if (pid === Deno.pid || except.has(pid) || !isAlive(pid)) continue;
    let commandLine = "";
    let cwd = "";
    try {
      commandLine = Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ").trim();
      cwd = Deno.readLinkSync(`/proc/${pid}/cwd`);
    } catch {
      // Exited while we looked, or not ours to read.
    }
    if (commandLine.includes(marker) || cwd.includes(marker)) {
      found.push(`${pid} (cwd ${cwd}): ${commandLine}`);
    }
  }
  return found;
}

/**
 * Waits until no process mentions `marker`; resolves with the survivors at the
 * deadline, after killing them so that a failure leaves nothing behind.
 */
async function survivorsAfter(
  marker: string,
  except: ReadonlySet<number>,
  deadlineMs: number,
): Promise<string[]> {
  const end = performance.now() + deadlineMs;
  let left = processesMentioning(marker, except);
  while (left.length > 0 && performance.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, PROC_SCAN_INTERVAL_MS));
    left = processesMentioning(marker, except);
  }
  for (const survivor of left) {
    try {
      Deno.kill(Number(survivor.split(" ")[0]), "SIGKILL");
    } catch {
      // Gone by now.
    }
  }
  return left;
}

/** Reads `stream` until `text` has arrived; resolves with the reader, which still holds it. */
async function readUntil(
  stream: ReadableStream<Uint8Array>,
  text: string,
): Promise<ReadableStreamDefaultReader<Uint8Array>> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let seen = "";
  while (!seen.includes(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`The stream ended before ${JSON.stringify(text)} arrived: ${seen}`);
    seen += decoder.decode(value, { stream: true });
  }
  return reader;
}

async function readPid(path: string): Promise<number> {
  return Number((await Deno.readTextFile(path)).trim());
}

/** Kills the ssh client under a running `git push`. */
function killSshClient(push: Push): number {
  const ssh = descendants(push.pid).find((pid) => commandName(pid) === "ssh");
  assert.ok(ssh !== undefined, "git push has no ssh child");
  Deno.kill(ssh, "SIGKILL");
  return ssh;
}

for (
  const { kind, compile } of [
    {
      kind: "a build that prints nothing more",
      compile: (dir: string) =>
        [
          "#!/bin/sh",
          `echo $$ > '${dir}/build.pid'`,
          // A grandchild in the build's process group, which must not survive either.
          "sleep 600 &",
          `echo $! > '${dir}/grandchild.pid'`,
          'echo "       building quietly"',
          "wait",
          "",
        ].join("\n"),
    },
    {
      kind: "a build that keeps printing",
      compile: (dir: string) =>
        [
          "#!/bin/sh",
          `echo $$ > '${dir}/build.pid'`,
          "sleep 600 &",
          `echo $! > '${dir}/grandchild.pid'`,
          'echo "       building loudly"',
          "i=0",
          'while :; do i=$((i + 1)); echo "       progress line $i"; done',
          "",
        ].join("\n"),
    },
  ]
) {
  Deno.test({
    name: `${kind} stops when the SSH client of its push is killed, and nothing it ` +
      `started survives${skipNote}`,
    ignore: sshdMissing !== undefined,
    async fn(): Promise<void> {
      await using dir = await tempDir();
      await using sshd = await startSshd(dir.path);
      const repo = `${dir.path}/web.git`;
      const workRoot = `${dir.path}/work`;
      await Deno.mkdir(workRoot);
      await createHookedRepo(repo, { workRoot });
      await createClone(`${dir.path}/clone`, { "bin/compile": compile(dir.path) });

      const push = Push.start({
        cwd: `${dir.path}/clone`,
        url: sshd.url(repo),
        env: { GIT_SSH_COMMAND: sshd.sshCommand },
      });
      const seen = await push.stderr.waitFor(/^remote: {8}building (quietly|loudly)/);
      assert.notEqual(seen, "", "git push ended before the build started");
      const build = await readPid(`${dir.path}/build.pid`);
      const grandchild = await readPid(`${dir.path}/grandchild.pid`);
      killSshClient(push);
      const result = await push.result();
      assert.notEqual(result.code, 0);

      // The hook, phonehome, the relay, the build and git-receive-pack all run
      // in, or name, this test's directory; only the test's own sshd may stay.
      const survivors = await survivorsAfter(
        dir.path,
        new Set([sshd.pid]),
        STOP_DEADLINE_MS,
      );
      assert.deepEqual(survivors, [], `still running:\n${survivors.join("\n")}`);
      assert.ok(!isAlive(build) && !isAlive(grandchild));
      // The hook got to clean up after itself.
      assert.deepEqual([...Deno.readDirSync(workRoot)], []);
    },
  });
}

Deno.test("phonehome build stops a silent build once nothing reads its stdout", async () => {
  await using dir = await tempDir();
  const child = spawnPhonehome([
    "build",
    "--idle-interval=0",
    "--",
    "sh",
    "-c",
    `echo $$ > '${dir.path}/build.pid'; sleep 600 & echo $! > '${dir.path}/grandchild.pid'; ` +
    "echo started; wait",
  ]);
  const stderr = readText(child.stderr);
  const stdout = await readUntil(child.stdout, "started\n");
  const build = await readPid(`${dir.path}/build.pid`);
  const grandchild = await readPid(`${dir.path}/grandchild.pid`);

  // Closing the read end of its stdout, as a dropped session does.
  await stdout.cancel();
  const status = await child.status;

  assert.equal(status.code, 74, await stderr);
  assert.match(await stderr, /Stopping the build: nothing reads phonehome's stdout any more/);
  const survivors = await survivorsAfter(dir.path, new Set(), STOP_DEADLINE_MS);
  assert.deepEqual(survivors, [], `still running:\n${survivors.join("\n")}`);
  assert.ok(!isAlive(build) && !isAlive(grandchild));
});

Deno.test("phonehome build stops a silent build once the pipe --watch-output names loses its reader", async () => {
  await using dir = await tempDir();
  // Stands in for git-receive-pack: a process whose stdout leads to the user.
  const session = new Deno.Command("sleep", {
    args: ["600"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const child = spawnPhonehome([
      "build",
      "--idle-interval=0",
      `--watch-output=/proc/${session.pid}/fd/1`,
      "--",
      "sh",
      "-c",
      `echo $$ > '${dir.path}/build.pid'; echo started; exec sleep 600`,
    ]);
    const stderr = readText(child.stderr);
    const stdout = new LineWatcher(child.stdout);
    assert.equal(await stdout.waitFor(/^started$/), "started");
    const build = await readPid(`${dir.path}/build.pid`);

    await session.stdout.cancel();
    const status = await child.status;
    await stdout.done;

    assert.equal(status.code, 74, await stderr);
    assert.match(
      await stderr,
      new RegExp(
        `Stopping the build: nothing reads /proc/${session.pid}/fd/1 \\(pipe:\\[\\d+\\]\\)`,
      ),
    );
    const survivors = await survivorsAfter(dir.path, new Set(), STOP_DEADLINE_MS);
    assert.deepEqual(survivors, [], `still running:\n${survivors.join("\n")}`);
    assert.ok(!isAlive(build));
  } finally {
    session.kill("SIGTERM");
    await session.status;
  }
});

Deno.test("phonehome build refuses a --watch-output that is not a pipe, before the build starts", async () => {
  await using dir = await tempDir();
  const child = spawnPhonehome([
    "build",
    "--idle-interval=0",
    "--watch-output=/proc/self/fd/0",
    "--",
    "touch",
    `${dir.path}/ran`,
  ]);
  const [status, stderr] = await Promise.all([child.status, readText(child.stderr)]);
  await child.stdout.cancel();

  assert.equal(status.code, 64, stderr);
  assert.match(stderr, /Cannot watch \/proc\/self\/fd\/0: it is \/dev\/null, not a pipe/);
  assert.ok(!(await Deno.stat(`${dir.path}/ran`).then(() => true, () => false)));
});
