/**
 * git push end to end over ssh://, as a developer sees it: a bare repository
 * with the example pre-receive hook installed by its install.sh, served by a
 * real OpenSSH sshd on a loopback port, and a real `git push` whose stderr is
 * read as it streams: lines in order, accepted or rejected, live, and two
 * pushes at once. Pushes over file:// are in git_push_over_file_test.ts.
 */

import assert from "node:assert/strict";
import { tempDir } from "./support/processes.ts";
import { sshdUnavailable, startSshd } from "./support/sshd.ts";
import { skipNote as skipNoteFor } from "./support/requirements.ts";
import {
  createClone,
  createHookedRepo,
  missingInOrder,
  Push,
  refOf,
  remoteLines,
} from "./support/git_remote.ts";
import { COMPILE_OK, successLines } from "./support/example_build.ts";

const sshdMissing = sshdUnavailable();
const skipNote = skipNoteFor(sshdMissing);

Deno.test({
  name: `a push whose build succeeds is accepted, and the build's lines arrive as remote: ` +
    `lines in order${skipNote}`,
  ignore: sshdMissing !== undefined,
  async fn(): Promise<void> {
    await using dir = await tempDir();
    await using sshd = await startSshd(dir.path);
    const repo = `${dir.path}/web.git`;
    await createHookedRepo(repo, { workRoot: dir.path });
    const sha = await createClone(`${dir.path}/clone`, { "bin/compile": COMPILE_OK });

    const push = Push.start({
      cwd: `${dir.path}/clone`,
      url: sshd.url(repo),
      env: { GIT_SSH_COMMAND: sshd.sshCommand },
    });
    const result = await push.result();

    assert.equal(result.code, 0, `${result.stderr}\n--- sshd:\n${sshd.log()}`);
    assert.deepEqual(missingInOrder(result.remote, successLines(sha, "web")), [], result.stderr);
    // The progress bar's carriage returns reached git, which starts a new `remote: ` at each.
    assert.match(result.stderr, /\rremote: {8}\[#{5} {5}\] {2}50%/);
    assert.match(result.stderr, /\rremote: {8}\[##########\] 100%/);
    // The warning on stderr follows the finished progress bar at once, as the build wrote it.
    assert.match(
      result.stderr,
      /100% *\nremote: {8}warning: no cache yet, so this build starts from scratch *\n/,
    );
    assert.match(result.stderr, /\* \[new branch\]\s+HEAD -> main/);
    assert.equal(await refOf(repo, "refs/heads/main"), sha);
  },
});

Deno.test({
  name: `a push whose build exits 1 is rejected, and the hook says the build pod exited ` +
    `with code 1${skipNote}`,
  ignore: sshdMissing !== undefined,
  async fn(): Promise<void> {
    await using dir = await tempDir();
    await using sshd = await startSshd(dir.path);
    const repo = `${dir.path}/web.git`;
    await createHookedRepo(repo, { workRoot: dir.path });
    await createClone(`${dir.path}/clone`, {
      "bin/compile": [
        "#!/bin/sh",
        'echo "       running the tests"',
        'echo "       1 of 12 tests failed" >&2',
        "exit 1",
        "",
      ].join("\n"),
    });

    const result = await Push.start({
      cwd: `${dir.path}/clone`,
      url: sshd.url(repo),
      env: { GIT_SSH_COMMAND: sshd.sshCommand },
    }).result();

    assert.notEqual(result.code, 0, result.stderr);
    assert.match(result.stderr, /\[remote rejected\] HEAD -> main \(pre-receive hook declined\)/);
    assert.deepEqual(
      missingInOrder(result.remote, [
        "Starting build... but first, coffee!",
        "\x1b[1G-----> Compiling",
        "       running the tests",
        "Build pod exited with code 1, stopping build.",
      ]),
      [],
      result.stderr,
    );
    assert.ok(result.stderr.includes("       1 of 12 tests failed"), result.stderr);
    assert.ok(
      result.stderr.includes(
        "\x1b[1G\x1b[31m !     Build failed: bin/compile exited with status 1\x1b[0m",
      ),
      result.stderr,
    );
    assert.ok(!result.remote.includes("Build complete."), result.stderr);
    assert.equal(await refOf(repo, "refs/heads/main"), undefined);
  },
});

Deno.test({
  name: `a line the build prints reaches git push while the build is still running${skipNote}`,
  ignore: sshdMissing !== undefined,
  async fn(): Promise<void> {
    await using dir = await tempDir();
    await using sshd = await startSshd(dir.path);
    const repo = `${dir.path}/web.git`;
    const goAhead = `${dir.path}/go-ahead`;
    await createHookedRepo(repo, { workRoot: dir.path });
    await createClone(`${dir.path}/clone`, {
      // The build cannot finish until the test has seen its first line arrive, so
      // output held back until the end would time this build out instead.
      "bin/compile": [
        "#!/bin/sh",
        'echo "       waiting for the go-ahead"',
        "i=0",
        `until [ -e '${goAhead}' ]; do`,
        "  i=$((i + 1))",
        '  if [ "$i" -gt 600 ]; then echo "       no go-ahead within a minute" >&2; exit 1; fi',
        "  sleep 0.1",
        "done",
        'echo "       got the go-ahead"',
        "",
      ].join("\n"),
    });

    const push = Push.start({
      cwd: `${dir.path}/clone`,
      url: sshd.url(repo),
      env: { GIT_SSH_COMMAND: sshd.sshCommand },
    });
    const seen = await push.stderr.waitFor(/^remote: {8}waiting for the go-ahead/);
    assert.notEqual(seen, "", "git push ended before the build's first line arrived");
    await Deno.writeTextFile(goAhead, "go\n");
    const result = await push.result();

    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(
      missingInOrder(result.remote, [
        "       waiting for the go-ahead",
        "       got the go-ahead",
        "Build complete.",
      ]),
      [],
      result.stderr,
    );
  },
});

Deno.test({
  name: `two pushes to two repositories at the same time each show only their own build${skipNote}`,
  ignore: sshdMissing !== undefined,
  async fn(): Promise<void> {
    await using dir = await tempDir();
    await using sshd = await startSshd(dir.path);
    const names = ["alpha", "beta"];
    const pushes = await Promise.all(names.map(async (name) => {
      const repo = `${dir.path}/${name}.git`;
      await createHookedRepo(repo, { workRoot: dir.path });
      await createClone(`${dir.path}/${name}`, {
        // Each build waits until both have started, so they surely overlap.
        "bin/compile": [
          "#!/bin/sh",
          `echo "${name}: started"`,
          "i=0",
          `until [ -e '${dir.path}/go-${name}' ]; do`,
          "  i=$((i + 1))",
          '  if [ "$i" -gt 600 ]; then exit 1; fi',
          "  sleep 0.1",
          "done",
          `for i in 1 2 3 4 5; do echo "${name}: line $i"; echo "${name}: note $i" >&2; done`,
          "",
        ].join("\n"),
      });
      return Push.start({
        cwd: `${dir.path}/${name}`,
        url: sshd.url(repo),
        env: { GIT_SSH_COMMAND: sshd.sshCommand },
      });
    }));

    const started = await Promise.all(
      pushes.map((push, i) => push.stderr.waitFor(new RegExp(`^remote: ${names[i]}: started`))),
    );
    assert.ok(started.every((line) => line !== ""), "a push ended before its build started");
    await Promise.all(names.map((name) => Deno.writeTextFile(`${dir.path}/go-${name}`, "go\n")));
    const results = await Promise.all(pushes.map((push) => push.result()));

    for (const [i, result] of results.entries()) {
      const name = names[i];
      assert.equal(result.code, 0, result.stderr);
      const buildLines = result.remote.filter((line) => /^(alpha|beta): /.test(line));
      assert.ok(
        buildLines.every((line) => line.startsWith(`${name}: `)),
        `crosstalk in the push of ${name}:\n${result.stderr}`,
      );
      assert.deepEqual(
        buildLines.filter((line) => /: (started|line \d)$/.test(line)),
        [`${name}: started`, ...[1, 2, 3, 4, 5].map((n) => `${name}: line ${n}`)],
      );
      assert.deepEqual(
        buildLines.filter((line) => /: note \d$/.test(line)),
        [1, 2, 3, 4, 5].map((n) => `${name}: note ${n}`),
      );
    }
  },
});

Deno.test("remote lines are read from git's stderr without prefix, padding or carriage returns", () => {
  assert.deepEqual(
    remoteLines(
      "remote: one        \nremote: \rremote:  50%        \rremote: 100%        \nTo x\n",
    ),
    ["one", "", " 50%", "100%"],
  );
});
