/**
 * Nothing of a build outlives it, whichever process dies first: the relay
 * killed under `phonehome build`, the builder itself killed, a daemon the
 * build started in a session of its own, or a user pressing Ctrl-C twice.
 */

import assert from "node:assert/strict";
import { childrenOf, descendantsOf } from "../src/process_tree.ts";
import {
  isAlive,
  LineWatcher,
  readText,
  spawnPhonehome,
  spawnShellBuild,
  tempDir,
} from "./support/processes.ts";

/** How long the build's processes may take to go once the case is over. */
const GONE_WITHIN_MS = 5_000;

/** Resolves once none of `pids` is alive, or fails after {@linkcode GONE_WITHIN_MS}. */
async function allGone(pids: readonly number[], what: string): Promise<void> {
  const deadline = performance.now() + GONE_WITHIN_MS;
  // No event tells one process that an unrelated one has exited: look until the deadline.
  while (pids.some(isAlive)) {
    if (performance.now() > deadline) {
      assert.fail(`${what}: ${pids.filter(isAlive).join(", ")} still running`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Starts `phonehome build` running `script`, which must print `started` when it is set up. */
async function build(script: string): Promise<{
  builder: Deno.ChildProcess;
  stdout: LineWatcher;
  stderr: LineWatcher;
  relay: number;
  pids: (dir: string) => Promise<number[]>;
}> {
  const builder = spawnPhonehome(["build", "--idle-interval=0", "--", "sh", "-c", script]);
  const stdout = new LineWatcher(builder.stdout);
  const stderr = new LineWatcher(builder.stderr);
  await stdout.waitFor(/^started$/);
  const [relay] = childrenOf(builder.pid);
  assert.ok(relay !== undefined, "the relay runs under phonehome build");
  return {
    builder,
    stdout,
    stderr,
    relay,
    pids: async (dir) => (await Deno.readTextFile(`${dir}/pids`)).trim().split(/\s+/).map(Number),
  };
}

Deno.test("the relay killed under phonehome build takes its quiet build with it", async () => {
  await using dir = await tempDir();
  const run = await build(`echo $$ > ${dir.path}/pids; echo started; exec sleep 300`);
  const pids = await run.pids(dir.path);
  Deno.kill(run.relay, "SIGKILL");
  const status = await run.builder.status;
  assert.equal(status.code, 75, await run.stderr.done);
  await run.stdout.done;
  await allGone([run.relay, ...pids], "after the relay was killed");
});

Deno.test("phonehome build killed outright takes the relay and the build with it", async (t) => {
  for (
    const [what, script] of [
      ["a quiet build", "exec sleep 300"],
      ["a build that ignores SIGTERM", "trap '' TERM; sleep 300 & wait; sleep 300"],
    ]
  ) {
    await t.step(what, async () => {
      await using dir = await tempDir();
      const run = await build(`echo $$ > ${dir.path}/pids; echo started; ${script}`);
      const pids = [run.relay, ...descendantsOf(run.relay)];
      Deno.kill(run.builder.pid, "SIGKILL");
      await run.builder.status;
      await Promise.all([run.stdout.done, run.stderr.done]);
      await allGone(pids, "after phonehome build was killed");
    });
  }
});

Deno.test("a daemon the build started in a session of its own is stopped, and the note says so", async (t) => {
  const cases = [
    {
      what: "a daemon that closed its output",
      redirect: "> /dev/null 2>&1",
      note: /Stopped a process the build left running\./,
    },
    {
      what: "a daemon that holds the output open",
      redirect: "",
      note:
        /a process it left behind kept its output open; the stream was ended .* later and it was stopped\./,
    },
  ];
  for (const { what, redirect, note } of cases) {
    await t.step(what, async () => {
      await using dir = await tempDir();
      const builder = spawnShellBuild(
        `setsid sh -c 'echo $$ > ${dir.path}/pids; exec sleep 300' ${redirect} & ` +
          `while [ ! -s ${dir.path}/pids ]; do :; done; echo started`,
        ["--drain-grace=300"],
      );
      const [stdout, stderr, status] = await Promise.all([
        readText(builder.stdout),
        readText(builder.stderr),
        builder.status,
      ]);
      assert.equal(status.code, 0, stderr);
      assert.equal(stdout, "started\n");
      assert.match(stderr, note);
      const daemon = Number((await Deno.readTextFile(`${dir.path}/pids`)).trim());
      assert.ok(!isAlive(daemon), `the daemon ${daemon} is still running`);
    });
  }
});

Deno.test("a second Ctrl-C stops the relay and a build that ignores signals at once", async () => {
  await using dir = await tempDir();
  const run = await build(
    `trap '' INT TERM; echo $$ > ${dir.path}/pids; echo started; sleep 45 & wait; sleep 45`,
  );
  const pids = [run.relay, ...descendantsOf(run.relay)];
  Deno.kill(run.builder.pid, "SIGINT");
  await run.stderr.waitFor(/Received SIGINT/);
  Deno.kill(run.builder.pid, "SIGINT");
  const status = await run.builder.status;
  assert.equal(status.code, 130, await run.stderr.done);
  await run.stdout.done;
  await allGone(pids, "after the second Ctrl-C");
});
