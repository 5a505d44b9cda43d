/**
 * The checkout around the command line: docs/configuration.md matches the
 * flag declarations, the shell examples of the README and docs/ need only
 * npx, the phonehome task runs the command line, and the compile task builds
 * binaries that run a build (or explains in one line why it cannot).
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { CONFIGURATION_DOC_PATH, renderConfigurationDoc } from "../src/cli/configuration_doc.ts";
import { BUILDER_COMMANDS } from "../src/cli/builder_commands.ts";
import { POD_COMMANDS } from "../src/cli/pod_commands.ts";
import { V8_FLAGS_ARGUMENT } from "../src/v8_flags.ts";
import { CONFIG, DENO, tempDir } from "./support/processes.ts";

Deno.test("docs/configuration.md is what the flag declarations say (deno task docs rewrites it)", async () => {
  const path = fileURLToPath(new URL(`../${CONFIGURATION_DOC_PATH}`, import.meta.url));
  const rendered = renderConfigurationDoc([...BUILDER_COMMANDS, ...POD_COMMANDS]);
  // The file is formatted by deno fmt, which pads the table's columns: compare the cells.
  const cells = (text: string): string[][] =>
    text.split("\n").filter((line) => line.startsWith("|") && !/^\|[- |]+\|$/.test(line))
      .map((line) => line.split(/(?<!\\)\|/).map((c) => c.trim()));
  const onDisk = await Deno.readTextFile(path);
  assert.deepEqual(cells(onDisk), cells(rendered), "run 'deno task docs'");
  for (const { spec } of [...BUILDER_COMMANDS, ...POD_COMMANDS]) {
    for (const name of Object.keys(spec.flags)) {
      assert.ok(onDisk.includes(`\`--${name}`), `--${name} of ${spec.name} is documented`);
    }
  }
});

Deno.test("the shell examples of the README and docs/ need only what 'Try it' installed: npx, not deno or phonehome", () => {
  const root = new URL("../", import.meta.url);
  const pages = [
    "README.md",
    ...[...Deno.readDirSync(new URL("docs/", root))].map((entry) => `docs/${entry.name}`),
  ];
  const lines = pages.flatMap((page) => {
    const text = Deno.readTextFileSync(new URL(page, root));
    return [...text.matchAll(/^```sh\n([\s\S]*?)^```$/gm)]
      .flatMap((match) => match[1].split("\n").map((line) => `${page}: ${line}`));
  });
  assert.ok(lines.length > 10, "the examples were found");
  // A command (after any VAR=value settings) must not be one that "Try it" leaves off PATH.
  const offPath = lines.filter((line) =>
    /^\S+: \s*(?:[A-Z_]+=\S+\s+)*(?:deno|phonehome|phonehome-builder|phonehome-relay)\s/.test(line)
  );
  assert.deepEqual(offPath, []);
});

Deno.test("the demo and phonehome tasks run Deno with the V8 settings every phonehome process uses", () => {
  const tasks: Record<string, string> = JSON.parse(Deno.readTextFileSync(CONFIG)).tasks;
  for (const name of ["demo", "phonehome"]) {
    assert.match(tasks[name], /^deno run -A (\S+) main\.ts/, name);
    assert.equal(tasks[name].split(" ")[3], V8_FLAGS_ARGUMENT, `deno.json's ${name} task`);
  }
});

Deno.test("the phonehome task runs the command line from the checkout, as the README shows", async () => {
  const result = await new Deno.Command(DENO, {
    args: ["task", "-q", `--config=${CONFIG}`, "phonehome", "build", "--idle-interval=0", "--"]
      .concat(["sh", "-c", "echo from the task; exit 6"]),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(result.code, 6, new TextDecoder().decode(result.stderr));
  assert.equal(new TextDecoder().decode(result.stdout), "from the task\n");
});

/** Whether Deno's download host answers, from inside a test: never at module load. */
async function compileHostReachable(): Promise<boolean> {
  try {
    const response = await fetch("https://dl.deno.land/", {
      method: "HEAD",
      signal: AbortSignal.timeout(5000),
    });
    await response.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

Deno.test("deno task compile", async (t) => {
  const reachable = await compileHostReachable();
  await t.step({
    name: "the compiled binaries run a build, one per side" +
      (reachable ? "" : " (skipped: deno compile cannot download its base binary from " +
        "dl.deno.land here, as on the project's CI)"),
    ignore: !reachable,
    async fn(): Promise<void> {
      await using dir = await tempDir();
      const compiled = await new Deno.Command(DENO, {
        args: ["task", `--config=${CONFIG}`, "compile", dir.path],
      }).output();
      assert.equal(compiled.code, 0);
      const result = await new Deno.Command(`${dir.path}/phonehome-builder`, {
        args: ["build", "--idle-interval=0", "--", "sh", "-c", "echo compiled; exit 9"],
      }).output();
      assert.equal(result.code, 9);
      assert.equal(new TextDecoder().decode(result.stdout), "compiled\n");
    },
  });
  await t.step({
    name: "explains in one line why it cannot fetch its base binary" +
      (reachable ? " (skipped: dl.deno.land is reachable here)" : ""),
    ignore: reachable,
    async fn(): Promise<void> {
      await using dir = await tempDir();
      const result = await new Deno.Command(DENO, {
        args: ["task", `--config=${CONFIG}`, "compile", dir.path],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(result.stderr).replace(/^.*Task.*\n/m, "");
      assert.equal(result.code, 69);
      assert.match(
        stderr,
        /^compile: deno compile could not download its base binary \(https:\/\/\S+denort\S+\)/,
      );
      assert.equal(stderr.trim().split("\n").length, 1);
    },
  });
});
