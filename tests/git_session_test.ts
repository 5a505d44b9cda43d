/**
 * When the user goes away mid-build: the SSH client of a push is killed, or
 * whatever reads `phonehome build`'s output closes it. The builder side must
 * notice within seconds even while the build prints nothing, stop the build,
 * and leave no process behind.
 */

import assert from "node:assert/strict";
import {
  isAlive,
  LineWatcher,
  readText,
  spawnPhonehome,
  spawnShellBuild,
  tempDir,
} from "./support/processes.ts";
import { sshdUnavailable, startSshd } from "./support/sshd.ts";
import { skipNote as skipNoteFor } from "./support/requirements.ts";
import { DEFAULT_OUTPUT_CHECK_INTERVAL_MS } from "../src/cli/output_watch.ts";
import {
  commandName,
  createClone,
  createHookedRepo,
  descendants,
  Push,
  refOf,
} from "./support/git_remote.ts";

const sshdMissing = sshdUnavailable();
const skipNote = skipNoteFor(sshdMissing);

/**
 * How long after the SSH client is killed (or phonehome build has exited)
 * something of the build may still run. What bounds it: the output watch looks
 * every 500 ms, the receiver then closes the relay's connection with 4004 and
 * the launcher closes the relay's lifeline, and the relay gives a build that
 * ignores SIGTERM 1 s before SIGKILL. The builds here stop on SIGTERM.
 */
const STOP_DEADLINE_MS = 2_000;

/**
 * How long a run that missed the deadline is still watched, to tell how long
 * its survivors stay, before they are killed so that the next run starts clean.
 */
const GIVE_UP_MS = 15_000;

/** How many pushes a kind of build gets, one after another. */
const RUNS = 20;

/** How often to look at /proc: processes that are not our children announce no exit. */
const PROC_SCAN_INTERVAL_MS = 20;

/** What /proc says of a process: `PID ppid PPID STATE in WCHAN (cwd CWD): COMMAND LINE`. */
function describe(pid: number): string | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (state === "Z") return undefined;
    const commandLine = Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ")
      .trim();
    const cwd = Deno.readLinkSync(`/proc/${pid}/cwd`);
    let wchan = "?";
    try {
      wchan = Deno.readTextFileSync(`/proc/${pid}/wchan`) || "-";
    } catch {
      // Not every kernel tells.
    }
    return `${pid} ppid ${ppid} ${state} in ${wchan} (cwd ${cwd}): ${commandLine}`;
  } catch {
    // Exited while we looked, or not ours to read.
    return undefined;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Processes whose command line or working directory mentions `marker`, except `except`. */
function processesMentioning(marker: string, except: ReadonlySet<number>): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    if (pid === Deno.pid || except.has(pid)) continue;
    let commandLine = "";
    let cwd = "";
    try {
      commandLine = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
      cwd = Deno.readLinkSync(`/proc/${pid}/cwd`);
    } catch {
      // Exited while we looked, or not ours to read.
    }
    if (!commandLine.includes(marker) && !cwd.includes(marker)) continue;
    const description = describe(pid);
    if (description !== undefined) found.push(description);
  }
  return found;
}

function killAll(survivors: readonly string[]): void {
  for (const survivor of survivors) {
    try {
      Deno.kill(Number(survivor.split(" ")[0]), "SIGKILL");
    } catch {
      // Gone by now.
    }
  }
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
    await delay(PROC_SCAN_INTERVAL_MS);
    left = processesMentioning(marker, except);
  }
  killAll(left);
  return left;
}

/** How long something of a push outlived the kill of its SSH client. */
interface Leftovers {
  /** Milliseconds from the kill until nothing was left; undefined if it never came. */
  goneAfterMs: number | undefined;
  /** What was still running at the deadline (empty when nothing was). */
  atDeadline: string[];
}

/**
 * Watches `left` (what still runs of a push) from `since` on until it is empty;
 * after {@linkcode GIVE_UP_MS} kills what is left.
 */
async function leftoversSince(since: number, left: () => string[]): Promise<Leftovers> {
  let atDeadline: string[] = [];
  for (;;) {
    const running = left();
    const elapsedMs = performance.now() - since;
    if (running.length === 0) return { goneAfterMs: elapsedMs, atDeadline };
    if (elapsedMs > STOP_DEADLINE_MS && atDeadline.length === 0) atDeadline = running;
    if (elapsedMs > GIVE_UP_MS) {
      killAll(running);
      return { goneAfterMs: undefined, atDeadline };
    }
    await delay(PROC_SCAN_INTERVAL_MS);
  }
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

/** "1234 ms", or "more than 15000 ms" for a run that was given up on. */
function formatTiming(ms: number | undefined): string {
  return ms === undefined ? `more than ${GIVE_UP_MS} ms` : `${Math.round(ms)} ms`;
}

/** The start of a build script: pid files, and a grandchild in the build's process group. */
function buildPrelude(dir: string): string[] {
  return [
    "#!/bin/sh",
    `echo $$ > '${dir}/build.pid'`,
    // A grandchild in the build's process group, which must not survive either.
    "sleep 600 &",
    `echo $! > '${dir}/grandchild.pid'`,
  ];
}

for (
  const { kind, runs = RUNS, compile } of [
    {
      kind: "a build that prints nothing more",
      compile: (dir: string) =>
        [...buildPrelude(dir), 'echo "       building quietly"', "wait", ""].join("\n"),
    },
    {
      kind: "a build that prints a line every 10 ms",
      compile: (dir: string) =>
        [
          ...buildPrelude(dir),
          'echo "       building loudly"',
          "i=0",
          'while :; do i=$((i + 1)); echo "       progress line $i"; sleep 0.01; done',
          "",
        ].join("\n"),
    },
    {
      kind: "a build that prints as fast as it can",
      // It stops as fast as the one printing every 10 ms; 20 runs would add 15 s for little.
      runs: 5,
      compile: (dir: string) =>
        [
          ...buildPrelude(dir),
          'echo "       building loudly"',
          "i=0",
          'while :; do i=$((i + 1)); echo "       progress line $i"; done',
          "",
        ].join("\n"),
    },
  ]
) {
  Deno.test({
    name: `${kind} stops when the SSH client of its push is killed, and nothing of the push ` +
      `is left ${STOP_DEADLINE_MS / 1000} s later, ${runs} times in a row${skipNote}`,
    ignore: sshdMissing !== undefined,
    async fn(): Promise<void> {
      // One sshd, repository and clone for all runs: a push whose hook was
      // stopped is rejected, so the same commit can be pushed again.
      await using dir = await tempDir();
      await using sshd = await startSshd(dir.path);
      const server = `${dir.path}/server`;
      const repo = `${server}/web.git`;
      const workRoot = `${server}/work`;
      await Deno.mkdir(workRoot, { recursive: true });
      await createHookedRepo(repo, { workRoot });
      await createClone(`${dir.path}/clone`, { "bin/compile": compile(dir.path) });
      // Everything of a push: git push and ssh run in the clone; receive-pack,
      // the hook, phonehome, the relay, the build and its grandchild run in, or
      // name, the server's directory; sshd's session processes are its children.
      const ofThePush = (): string[] => [
        ...processesMentioning(dir.path, new Set([sshd.pid])),
        ...descendants(sshd.pid).flatMap((pid) => describe(pid) ?? []),
      ];

      const timings: Array<number | undefined> = [];
      const failures: string[] = [];
      for (let run = 0; run < runs; run++) {
        await Deno.remove(`${dir.path}/build.pid`).catch(() => {});
        await Deno.remove(`${dir.path}/grandchild.pid`).catch(() => {});
        const push = Push.start({
          cwd: `${dir.path}/clone`,
          url: sshd.url(repo),
          env: { GIT_SSH_COMMAND: sshd.sshCommand },
        });
        const seen = await push.stderr.waitFor(/^remote: {8}building (quietly|loudly)/);
        if (seen === "") {
          const { stderr } = await push.result();
          throw new Error(`Run ${run + 1}: git push ended before the build started:\n${stderr}`);
        }
        const build = await readPid(`${dir.path}/build.pid`);
        const grandchild = await readPid(`${dir.path}/grandchild.pid`);
        // Each run kills at another moment of the output watch's period.
        await delay((run * DEFAULT_OUTPUT_CHECK_INTERVAL_MS) / runs);
        killSshClient(push);
        const leftovers = await leftoversSince(performance.now(), ofThePush);
        const result = await push.result();
        timings.push(leftovers.goneAfterMs);

        const problems: string[] = [];
        if (leftovers.atDeadline.length > 0) {
          problems.push(
            `still running ${STOP_DEADLINE_MS} ms after the kill:`,
            ...leftovers.atDeadline.map((line) => `  ${line}`),
          );
        }
        if (result.code === 0) problems.push("git push succeeded");
        if (isAlive(build) || isAlive(grandchild)) {
          problems.push("the build or its grandchild lives");
        }
        const pushed = await refOf(repo, "refs/heads/main");
        if (pushed !== undefined) problems.push(`the push was accepted: main is ${pushed}`);
        // The hook got to clean up after itself.
        const work = [...Deno.readDirSync(workRoot)].map((entry) => entry.name);
        if (work.length > 0) {
          problems.push(`the hook left ${work.join(", ")} in its work root`);
          for (const name of work) await Deno.remove(`${workRoot}/${name}`, { recursive: true });
        }
        if (problems.length > 0) failures.push(`run ${run + 1}: ${problems.join("\n")}`);
      }
      assert.ok(
        failures.length === 0,
        `${failures.length} of ${runs} runs failed; time from the kill until nothing of the ` +
          `push was left, run by run: ${timings.map(formatTiming).join(", ")}\n` +
          failures.join("\n"),
      );
    },
  });
}

Deno.test("phonehome build stops a silent build once nothing reads its stdout", async () => {
  await using dir = await tempDir();
  const child = spawnShellBuild(
    `echo $$ > '${dir.path}/build.pid'; sleep 600 & echo $! > '${dir.path}/grandchild.pid'; ` +
      "echo started; wait",
  );
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
    const child = spawnShellBuild(
      `echo $$ > '${dir.path}/build.pid'; echo started; exec sleep 600`,
      [`--watch-output=/proc/${session.pid}/fd/1`],
    );
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
