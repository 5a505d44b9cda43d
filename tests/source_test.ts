/**
 * The pushed source reaches the build over the phone line: offered by the
 * receiver, fetched and checked by the relay, unpacked where the build runs,
 * locally and in a build pod, across a dropped connection; and refused, with
 * the build never started, when it is too big or would reach outside.
 */

import assert from "node:assert/strict";
import {
  collect,
  readText,
  sha256,
  spawnPhonehome,
  spawnShellBuild,
  tempDir,
  waitForFile,
} from "./support/processes.ts";
import { tarOf } from "./support/tar_builder.ts";
import { missing, unlessUnavailable } from "./support/requirements.ts";
import { TestCluster } from "./kube/cluster.ts";

const TOKEN = "source-test-secret-value";
const MiB = 1024 * 1024;

/** A tree with a nested file, an executable script and a link; returns its path. */
async function sourceTree(dir: string, bigBytes = 0): Promise<string> {
  const tree = `${dir}/tree`;
  await Deno.mkdir(`${tree}/sub`, { recursive: true });
  await Deno.writeTextFile(`${tree}/README`, "read me\n");
  await Deno.writeTextFile(`${tree}/sub/run.sh`, "#!/bin/sh\necho ran\n", { mode: 0o755 });
  await Deno.symlink("sub/run.sh", `${tree}/run`);
  if (bigBytes > 0) {
    const big = new Uint8Array(bigBytes);
    for (let at = 0; at < bigBytes; at += 65536) {
      crypto.getRandomValues(big.subarray(at, Math.min(at + 65536, bigBytes)));
    }
    await Deno.writeFile(`${tree}/sub/big.bin`, big);
  }
  return tree;
}

Deno.test("locally the build runs in a fresh directory holding only its source, modes and links kept", async () => {
  await using dir = await tempDir();
  const tree = await sourceTree(dir.path);
  const result = await collect(
    spawnShellBuild(
      `pwd > ${dir.path}/where; find . | sort; ./run; test -x sub/run.sh && echo executable`,
      [`--source=${tree}`],
    ),
  );
  assert.equal(result.code, 0, result.stderr);
  assert.equal(
    result.stdout,
    [".", "./README", "./run", "./sub", "./sub/run.sh", "ran", "executable", ""].join("\n"),
  );
  // The fresh directory is gone with the build.
  const where = (await Deno.readTextFile(`${dir.path}/where`)).trim();
  assert.match(where, /phonehome-build-/);
  assert.ok(!(await Deno.stat(where).then(() => true, () => false)), `${where} is left`);
});

Deno.test(unlessUnavailable(missing(["git"]), {
  name: "a git archive given as the source is unpacked as git would",
  fn: async () => {
    await using dir = await tempDir();
    const tree = await sourceTree(dir.path);
    const archive = `${dir.path}/source.tar`;
    const git = (...args: string[]): Promise<Deno.CommandOutput> =>
      new Deno.Command("git", { args, cwd: tree, stdout: "null", stderr: "null" }).output();
    await git("init", "-q");
    await git("add", ".");
    await git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "source");
    assert.ok((await git("archive", "--format=tar", "-o", archive, "HEAD")).success);
    const result = await collect(spawnShellBuild("cat README; ./run", [`--source=${archive}`]));
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "read me\nran\n");
  },
}));

Deno.test("a hostile archive is refused with status 65, and the build never starts", async (t) => {
  const canary = `phonehome-canary-${crypto.randomUUID()}`;
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ["a ../ entry", tarOf([{ name: `../${canary}`, content: "x" }]), /climbs out/],
    ["an absolute path", tarOf([{ name: `/tmp/${canary}`, content: "x" }]), /absolute path/],
    [
      "a link out of the tree",
      tarOf([{ name: "out", type: "2", linkName: "/etc" }]),
      /points outside the work directory/,
    ],
  ];
  for (const [what, archive, reason] of cases) {
    await t.step(what, async () => {
      await using dir = await tempDir();
      await Deno.writeFile(`${dir.path}/hostile.tar`, archive);
      const result = await collect(spawnPhonehome([
        "build",
        "--idle-interval=0",
        `--source=${dir.path}/hostile.tar`,
        "--",
        "touch",
        `${dir.path}/built`,
      ]));
      assert.equal(result.code, 65, result.stderr);
      assert.match(result.stderr, /phonehome: The build did not start: /);
      assert.match(result.stderr, reason);
      assert.ok(!(await Deno.stat(`${dir.path}/built`).then(() => true, () => false)));
      assert.ok(!(await Deno.stat(`/tmp/${canary}`).then(() => true, () => false)));
    });
  }
});

Deno.test("a source over --source-limit is refused before any of it moves, on either side", async (t) => {
  await using dir = await tempDir();
  await Deno.writeFile(
    `${dir.path}/bomb.tar`,
    tarOf([{ name: "zeros", content: new Uint8Array(64 * 1024) }]),
  );
  await t.step("by the builder", async () => {
    const result = await collect(spawnPhonehome([
      "build",
      "--idle-interval=0",
      `--source=${dir.path}/bomb.tar`,
      "--source-limit=10000",
      "--",
      "true",
    ]));
    assert.equal(result.code, 65);
    assert.match(
      result.stderr,
      /bomb\.tar is 66 KiB, over the limit of 9\.8 KiB \(--source-limit\)/,
    );
  });
  await t.step("by a relay with a lower limit than the receiver's", async () => {
    const receiver = spawnPhonehome([
      "receive",
      "--listen=127.0.0.1:0",
      `--url-file=${dir.path}/url`,
      "--idle-interval=0",
      `--source=${dir.path}/bomb.tar`,
    ], { env: { PHONEHOME_TOKEN: TOKEN } });
    const url = (await waitForFile(`${dir.path}/url`)).trim();
    const relay = spawnPhonehome(
      ["relay", "--no-tee", "--fetch-source", "--source-limit=10000", "--", "true"],
      { env: { PHONEHOME_URL: url, PHONEHOME_TOKEN: TOKEN }, cwd: dir.path },
    );
    const [relayResult, receiverResult] = await Promise.all([collect(relay), collect(receiver)]);
    assert.equal(relayResult.code, 65, relayResult.stderr);
    assert.equal(receiverResult.code, 65, receiverResult.stderr);
    assert.match(receiverResult.stderr, /over this relay's limit of 9\.8 KiB/);
    assert.ok(!(await Deno.stat(`${dir.path}/zeros`).then(() => true, () => false)));
  });
});

Deno.test("on Kubernetes a 50 MB source reaches the pod intact, also across a cut connection", async (t) => {
  await using k8s = await TestCluster.start({ podNetwork: false });
  const tree = await sourceTree(k8s.dir, 50 * MiB);
  const expected = sha256(await Deno.readFile(`${tree}/sub/big.bin`));
  const plans: Array<[string, number | undefined]> = [
    ["over one connection", undefined],
    ["with the connection cut in the middle of the transfer", 20 * MiB],
  ];
  for (const [what, cutAt] of plans) {
    await t.step(what, async () => {
      const { builder, proxy } = k8s.buildThroughProxy(
        ["sh", "-c", "sha256sum sub/big.bin"],
        (index) =>
          index === 0 && cutAt !== undefined
            ? { cutAfter: { direction: "down", bytes: cutAt } }
            : {},
        [`--source=${tree}`],
      );
      const [stdout, stderr, status] = await Promise.all([
        readText(builder.stdout),
        readText(builder.stderr),
        builder.status,
      ]);
      await proxy.close();
      assert.equal(status.code, 0, stderr);
      assert.equal(stdout, `${expected}  sub/big.bin\n`);
      if (cutAt !== undefined) {
        assert.ok(
          proxy.stats.cuts === 1 && proxy.stats.connections >= 2,
          JSON.stringify(proxy.stats),
        );
      }
    });
  }
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});
