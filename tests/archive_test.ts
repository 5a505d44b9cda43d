/**
 * The source archive: a directory packed and unpacked comes back the same,
 * and an archive that would reach outside its work directory is refused
 * before it can, whatever trick it uses.
 */

import assert from "node:assert/strict";
import { ArchiveError } from "../src/archive/tar_format.ts";
import { unpackArchive } from "../src/archive/tar_reader.ts";
import { packDirectory } from "../src/archive/tar_writer.ts";
import { tarOf, type TestEntry } from "./support/tar_builder.ts";
import { tempDir } from "./support/processes.ts";

/** Writes `entries` as an archive and unpacks it into a fresh `work` under `dir`. */
async function unpack(dir: string, entries: readonly TestEntry[]): Promise<string> {
  await Deno.writeFile(`${dir}/archive.tar`, tarOf(entries));
  await Deno.mkdir(`${dir}/work`);
  await unpackArchive(`${dir}/archive.tar`, `${dir}/work`);
  return `${dir}/work`;
}

Deno.test("a packed directory unpacks to the same files, modes, links and long names", async () => {
  await using dir = await tempDir();
  const src = `${dir.path}/src`;
  const longName = "d".repeat(120);
  await Deno.mkdir(`${src}/sub/${longName}`, { recursive: true });
  await Deno.writeTextFile(`${src}/a.txt`, "hello\n");
  await Deno.writeTextFile(`${src}/sub/run.sh`, "#!/bin/sh\necho hi\n", { mode: 0o755 });
  await Deno.writeTextFile(`${src}/sub/${longName}/f`, "deep\n");
  await Deno.symlink("../a.txt", `${src}/sub/link`);
  const archive = await Deno.open(`${dir.path}/src.tar`, { write: true, create: true });
  const packed = await packDirectory(src, archive, 1 << 20);
  archive.close();
  assert.equal(packed.bytes, (await Deno.stat(`${dir.path}/src.tar`)).size);
  await Deno.mkdir(`${dir.path}/out`);
  const made = await unpackArchive(`${dir.path}/src.tar`, `${dir.path}/out`);
  assert.deepEqual(made, { files: 3, directories: 2, links: 1 });
  assert.equal(await Deno.readTextFile(`${dir.path}/out/sub/link`), "hello\n");
  assert.equal(await Deno.readTextFile(`${dir.path}/out/sub/${longName}/f`), "deep\n");
  assert.equal(((await Deno.stat(`${dir.path}/out/sub/run.sh`)).mode ?? 0) & 0o777, 0o755);
  assert.equal(((await Deno.stat(`${dir.path}/out/a.txt`)).mode ?? 0) & 0o777, 0o644);
});

Deno.test("a directory packed past its limit is refused", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(`${dir.path}/src`);
  await Deno.writeFile(`${dir.path}/src/big`, new Uint8Array(10_000));
  const archive = await Deno.open(`${dir.path}/src.tar`, { write: true, create: true });
  await assert.rejects(() => packDirectory(`${dir.path}/src`, archive, 5000), ArchiveError);
  archive.close();
});

Deno.test("archives that reach outside the work directory are refused, and nothing lands outside", async (t) => {
  const canary = `phonehome-canary-${crypto.randomUUID()}`;
  const hostile: Array<[string, TestEntry[], RegExp]> = [
    ["a ../ path", [{ name: `../${canary}`, content: "x" }], /climbs out with "\.\."/],
    ["a deeper ../ path", [{ name: `a/../../${canary}`, content: "x" }], /climbs out/],
    ["an absolute path", [{ name: `/tmp/${canary}`, content: "x" }], /absolute path/],
    [
      "a link to an absolute path",
      [{ name: "out", type: "2", linkName: "/tmp" }],
      /points outside the work directory/,
    ],
    [
      "a link that climbs out",
      [{ name: "out", type: "2", linkName: "../.." }],
      /points outside the work directory/,
    ],
    [
      "links that climb out only together",
      [
        { name: "here", type: "2", linkName: "." },
        { name: "up", type: "2", linkName: "here/.." },
      ],
      /resolves outside the work directory/,
    ],
    [
      "a link over a directory the archive fills",
      [{ name: "l", type: "2", linkName: "." }, { name: `l/${canary}`, content: "x" }],
      /would replace a directory/,
    ],
    [
      "a hard link to a file outside",
      [{ name: "h", type: "1", linkName: `../${canary}` }],
      /climbs out/,
    ],
    ["a device", [{ name: "dev", type: "3" }], /only files, directories and links are/],
  ];
  for (const [what, entries, message] of hostile) {
    await t.step(what, async () => {
      await using dir = await tempDir();
      await assert.rejects(() => unpack(dir.path, entries), message);
      for (const place of [`${dir.path}/${canary}`, `/tmp/${canary}`]) {
        assert.ok(!(await Deno.stat(place).then(() => true, () => false)), `${place} exists`);
      }
    });
  }
});

Deno.test("a link already in the work directory is never written through", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(`${dir.path}/work`);
  await Deno.mkdir(`${dir.path}/elsewhere`);
  await Deno.symlink(`${dir.path}/elsewhere`, `${dir.path}/work/l`);
  await Deno.writeFile(`${dir.path}/archive.tar`, tarOf([{ name: "l/f", content: "x" }]));
  await assert.rejects(
    () => unpackArchive(`${dir.path}/archive.tar`, `${dir.path}/work`),
    /would go through the link l/,
  );
  assert.deepEqual([...Deno.readDirSync(`${dir.path}/elsewhere`)], []);
});

Deno.test("a corrupt or truncated archive is refused with a sentence", async (t) => {
  const good = tarOf([{ name: "f", content: "x".repeat(2000) }]);
  const cases: Array<[string, Uint8Array, RegExp]> = [
    [
      "a header with a bad checksum",
      good.map((b, i) => (i === 10 ? b ^ 1 : b)),
      /checksum is wrong/,
    ],
    ["an archive cut inside a file", good.subarray(0, 1024), /ends in/],
  ];
  for (const [what, bytes, message] of cases) {
    await t.step(what, async () => {
      await using dir = await tempDir();
      await Deno.writeFile(`${dir.path}/archive.tar`, bytes);
      await Deno.mkdir(`${dir.path}/work`);
      await assert.rejects(
        () => unpackArchive(`${dir.path}/archive.tar`, `${dir.path}/work`),
        message,
      );
    });
  }
});
