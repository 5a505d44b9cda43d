/**
 * In a build pod the container's first process is PID 1. The example build
 * image (deploy/example-build-image) runs tini as PID 1 with the relay as its
 * child: tini passes the kubelet's SIGTERM on to the relay, which passes it on
 * to the build, and reaps whatever outlives the relay; while the build runs,
 * the relay adopts and reaps the build's orphans itself. These tests run
 * exactly that, in a new PID namespace, with a real receiver.
 */

import assert from "node:assert/strict";
import {
  childPids,
  LineWatcher,
  phonehomeArgv,
  readText,
  spawnPhonehome,
  tempDir,
  waitForFile,
} from "./support/processes.ts";
import { unavailable, unlessUnavailable } from "./support/requirements.ts";

/** Why a container cannot be imitated here: a PID namespace needs root, unshare and tini. */
const skip = unavailable({ root: "for a PID namespace", programs: ["unshare", "tini"] });

/** A receiver, and a relay under tini as PID 1 of a new PID namespace, running `script`. */
async function pod(dir: string, script: string): Promise<{
  receiver: Deno.ChildProcess;
  container: Deno.ChildProcess;
}> {
  const receiver = spawnPhonehome([
    "receive",
    "--listen=127.0.0.1:0",
    "--idle-interval=0",
    `--url-file=${dir}/url`,
    `--token-file=${dir}/token`,
  ]);
  const url = (await waitForFile(`${dir}/url`)).trim();
  const token = (await waitForFile(`${dir}/token`)).trim();
  const container = new Deno.Command("unshare", {
    args: [
      "--pid",
      "--fork",
      "--mount-proc",
      "tini",
      "--",
      ...phonehomeArgv("relay"),
      "--",
      "sh",
      "-c",
      script,
    ],
    env: { PHONEHOME_URL: url, PHONEHOME_TOKEN: token },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return { receiver, container };
}

Deno.test(unlessUnavailable(skip, {
  name: "under tini as PID 1 the build's orphaned processes are adopted and reaped by the relay",
  fn: async () => {
    await using dir = await tempDir();
    const { receiver, container } = await pod(
      dir.path,
      [
        // The inner shell exits at once, so its background child is orphaned.
        "orphan=$(sh -c 'sleep 0.2 >/dev/null 2>&1 & echo $!')",
        "parent=$(cut -d' ' -f4 /proc/$orphan/stat)",
        'if [ "$parent" = "$PPID" ]; then echo "orphan\'s parent is the relay"; ' +
        'else echo "orphan\'s parent is pid $parent"; fi',
        "i=0",
        "while [ -e /proc/$orphan ] && [ $i -lt 400 ]; do i=$((i+1)); sleep 0.05; done",
        "if [ -e /proc/$orphan ]; then echo \"left as $(cut -d' ' -f3 /proc/$orphan/stat)\"; " +
        "else echo reaped; fi",
      ].join("\n"),
    );
    const [stdout, stderr, status, containerStatus] = await Promise.all([
      readText(receiver.stdout),
      readText(receiver.stderr),
      receiver.status,
      container.status,
      readText(container.stdout),
      readText(container.stderr),
    ]);
    assert.equal(status.code, 0, stderr);
    assert.equal(containerStatus.code, 0);
    assert.equal(stdout, "orphan's parent is the relay\nreaped\n");
  },
}));

Deno.test(unlessUnavailable(skip, {
  name: "under tini as PID 1 a SIGTERM to the container reaches the build through the relay",
  fn: async () => {
    await using dir = await tempDir();
    const { receiver, container } = await pod(
      dir.path,
      "trap 'echo got TERM; exit 143' TERM; echo ready; sleep 30 & wait",
    );
    const stdout = new LineWatcher(receiver.stdout);
    await stdout.waitFor(/^ready$/);
    // What the kubelet signals is the container's PID 1: tini, unshare's only child.
    const [tini] = childPids(container.pid);
    assert.ok(tini !== undefined, "tini runs");
    Deno.kill(tini, "SIGTERM");
    const [stderr, status, containerStatus] = await Promise.all([
      readText(receiver.stderr),
      receiver.status,
      container.status,
      readText(container.stdout),
      readText(container.stderr),
    ]);
    assert.equal(status.code, 143, stderr);
    assert.equal(containerStatus.code, 143);
    assert.equal(await stdout.done, "ready\ngot TERM\n");
  },
}));
