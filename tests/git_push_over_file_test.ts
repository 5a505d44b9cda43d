/**
 * git push end to end over the local file:// transport, which needs no sshd:
 * the example pre-receive hook runs the same build as over ssh://, with the
 * Kubernetes backend too, builds each pushed branch with its own variables
 * (and a deletion not at all), and calls the program PHONEHOME_BIN names.
 */

import assert from "node:assert/strict";
import { CONFIG, DENO, MAIN, tempDir } from "./support/processes.ts";
import { RELAY_IMAGE, TestCluster } from "./kube/cluster.ts";
import { missing, unlessUnavailable } from "./support/requirements.ts";
import {
  createClone,
  createHookedRepo,
  EXAMPLE_DIR,
  missingInOrder,
  Push,
  refOf,
} from "./support/git_remote.ts";
import { COMPILE_OK, successLines } from "./support/example_build.ts";

/** Why these pushes cannot run here: they need git. */
const gitMissing = missing(["git"]);

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
