/**
 * git push end to end, as a developer sees it: a bare repository with the
 * example pre-receive hook installed by its install.sh, served by a real
 * OpenSSH sshd on a loopback port, and a real `git push` over ssh:// (and
 * file://) whose stderr is read as it streams.
 */

import assert from "node:assert/strict";
import { CONFIG, DENO, MAIN, tempDir } from "./support/processes.ts";
import { RELAY_IMAGE, TestCluster } from "./kube/cluster.ts";
import { sshdUnavailable, startSshd } from "./support/sshd.ts";
import {
  findProgram,
  missing,
  pathOf,
  skipNote as skipNoteFor,
  unlessUnavailable,
} from "./support/requirements.ts";
import {
  createClone,
  createHookedRepo,
  EXAMPLE_DIR,
  git,
  gitEnv,
  missingInOrder,
  Push,
  refOf,
  remoteLines,
} from "./support/git_remote.ts";

const sshdMissing = sshdUnavailable();
const skipNote = skipNoteFor(sshdMissing);

/** Why the pushes over file:// cannot run here: they need git. */
const gitMissing = missing(["git"]);

/** A bin/compile that prints five numbered lines and a note on stderr, then succeeds. */
const COMPILE_OK = [
  "#!/bin/sh",
  "set -eu",
  'for i in 1 2 3 4 5; do echo "       compiled module $i of 5"; done',
  'echo "       a note on stderr" >&2',
  "",
].join("\n");

/**
 * The lines of a successful build, in the order they must arrive: a hook's
 * stdout and stderr are one pipe, so phonehome gives the build one pipe too,
 * and its stderr lines arrive exactly where it wrote them.
 */
function successLines(sha: string, app: string): string[] {
  return [
    "Starting build... but first, coffee!",
    `\x1b[1G-----> Building ${app} at ${sha.slice(0, 8)}`,
    "       Received 1 file",
    "\x1b[1G-----> App with its own bin/compile detected",
    "\x1b[1G-----> Restoring cache",
    "       [##########] 100%",
    "       warning: no cache yet, so this build starts from scratch",
    "\x1b[1G-----> Compiling",
    "       compiled module 1 of 5",
    "       compiled module 2 of 5",
    "       compiled module 3 of 5",
    "       compiled module 4 of 5",
    "       compiled module 5 of 5",
    "       a note on stderr",
    "\x1b[1G-----> Build succeeded",
    "Build complete.",
  ];
}

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

Deno.test(unlessUnavailable(gitMissing, {
  name: "a push over the local file:// transport runs the same hook and build",
  fn: async () => {
    await using dir = await tempDir();
    const repo = `${dir.path}/web.git`;
    await createHookedRepo(repo, { workRoot: dir.path });
    const sha = await createClone(`${dir.path}/clone`, { "bin/compile": COMPILE_OK });

    const result = await Push.start({ cwd: `${dir.path}/clone`, url: `file://${repo}` }).result();

    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(missingInOrder(result.remote, successLines(sha, "web")), [], result.stderr);
    assert.equal(await refOf(repo, "refs/heads/main"), sha);
  },
}));

Deno.test(unlessUnavailable(gitMissing, {
  name: "a push with the Kubernetes backend builds the pushed files in a pod, announced once",
  fn: async () => {
    await using k8s = await TestCluster.start();
    const repo = `${k8s.dir}/web.git`;
    await createHookedRepo(repo, {
      workRoot: k8s.dir,
      settings: [
        "export PHONEHOME_BACKEND=kubernetes",
        `export KUBECONFIG=${k8s.kubeconfigPath}`,
        `export PHONEHOME_IMAGE=${RELAY_IMAGE}`,
        `export PHONEHOME_ADVERTISE_HOST=${k8s.advertiseHost}`,
        "export SESSION_IDLE_INTERVAL=0",
      ],
    });
    const sha = await createClone(`${k8s.dir}/clone`, {
      "bin/compile": COMPILE_OK,
      "web/index.html": "<h1>hello</h1>\n",
    });

    const result = await Push.start({ cwd: `${k8s.dir}/clone`, url: `file://${repo}` }).result();

    assert.equal(result.code, 0, result.stderr);
    // The pod's build saw the pushed tree (two files) and the push's variables.
    assert.deepEqual(
      missingInOrder(result.remote, [
        "Starting build... but first, coffee!",
        `\x1b[1G-----> Building web at ${sha.slice(0, 8)}`,
        "       Received 2 files",
        "       compiled module 5 of 5",
        "Build complete.",
      ]),
      [],
      result.stderr,
    );
    for (const banner of ["Starting build... but first, coffee!", "Build complete."]) {
      assert.equal(result.remote.filter((line) => line === banner).length, 1, banner);
    }
    assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
  },
}));

Deno.test(unlessUnavailable(gitMissing, {
  name: "a push of two branches builds each with its own variables, and a deletion builds nothing",
  fn: async () => {
    await using dir = await tempDir();
    const repo = `${dir.path}/web.git`;
    await createHookedRepo(repo, { workRoot: dir.path });
    const sha = await createClone(`${dir.path}/clone`, {
      "bin/compile": [
        "#!/bin/sh",
        'echo "app=$APP_NAME ref=$SOURCE_REF sha=$SOURCE_VERSION git_dir=${GIT_DIR:-unset}"',
        "",
      ].join("\n"),
    });

    const both = await Push.start({
      cwd: `${dir.path}/clone`,
      url: `file://${repo}`,
      refspecs: ["HEAD:refs/heads/main", "HEAD:refs/heads/staging"],
    }).result();

    assert.equal(both.code, 0, both.stderr);
    assert.deepEqual(
      both.remote.filter((line) => /^(app=|Starting build|Build complete)/.test(line)),
      ["refs/heads/main", "refs/heads/staging"].flatMap((ref) => [
        "Starting build... but first, coffee!",
        `app=web ref=${ref} sha=${sha} git_dir=unset`,
        "Build complete.",
      ]),
    );

    const deletion = await Push.start({
      cwd: `${dir.path}/clone`,
      url: `file://${repo}`,
      refspecs: [":refs/heads/staging"],
    }).result();

    assert.equal(deletion.code, 0, deletion.stderr);
    assert.deepEqual(deletion.remote, [
      "Skipping refs/heads/staging: it is being deleted, there is nothing to build.",
    ]);
    assert.equal(await refOf(repo, "refs/heads/staging"), undefined);
  },
}));

Deno.test(unlessUnavailable(gitMissing, {
  name: "a hook installed with PHONEHOME_BIN calls that program as phonehome",
  fn: async () => {
    await using dir = await tempDir();
    // Stands in for a compiled phonehome-builder, and notes how the hook called it.
    const bin = `${dir.path}/phonehome-builder`;
    await Deno.writeTextFile(
      bin,
      [
        "#!/bin/sh",
        `printf '%s\\n' "$@" > '${dir.path}/arguments'`,
        `exec '${DENO}' run -A --quiet '--config=${CONFIG}' '${MAIN}' "$@"`,
        "",
      ].join("\n"),
      { mode: 0o755 },
    );
    const repo = `${dir.path}/web.git`;
    await createHookedRepo(repo, { workRoot: dir.path, installEnv: { PHONEHOME_BIN: bin } });
    const sha = await createClone(`${dir.path}/clone`, { "bin/compile": COMPILE_OK });

    const result = await Push.start({ cwd: `${dir.path}/clone`, url: `file://${repo}` }).result();

    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(missingInOrder(result.remote, successLines(sha, "web")), [], result.stderr);
    const args = (await Deno.readTextFile(`${dir.path}/arguments`)).trim().split("\n");
    assert.equal(args[0], "build");
    assert.match(args[1], /^--source=.*\/source-1\.tar$/);
    assert.match(args[2], /^--watch-output=\/proc\/\d+\/fd\/1$/);
    assert.deepEqual(args.slice(3), ["--", `${EXAMPLE_DIR}/build.sh`]);
  },
}));

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

Deno.test("remote lines are read from git's stderr without prefix, padding or carriage returns", () => {
  assert.deepEqual(
    remoteLines(
      "remote: one        \nremote: \rremote:  50%        \rremote: 100%        \nTo x\n",
    ),
    ["one", "", " 50%", "100%"],
  );
});
