/**
 * `deno task compile`: one self-contained binary per side, phonehome-builder
 * (build, receive) and phonehome-relay (relay), in dist/ or the directory given
 * as the first argument. Extra arguments (such as `--target`) go to `deno compile`.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { V8_FLAGS_ARGUMENT } from "../src/v8_flags.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const [outDir = `${root}dist`, ...extra] = Deno.args;

const BINARIES = [
  { name: "phonehome-builder", entry: "src/cli/builder_main.ts" },
  { name: "phonehome-relay", entry: "src/cli/relay_main.ts" },
];

/** Exit status when the base binary cannot be downloaded (EX_UNAVAILABLE). */
const UNAVAILABLE = 69;

await Deno.mkdir(outDir, { recursive: true });
for (const { name, entry } of BINARIES) {
  const output = `${outDir}/${name}`;
  const result = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      "--allow-all",
      "--quiet",
      V8_FLAGS_ARGUMENT,
      `--config=${root}deno.json`,
      `--output=${output}`,
      ...extra,
      `${root}${entry}`,
    ],
    stdout: "inherit",
    stderr: "piped",
  }).output();
  if (result.success) {
    console.log(`compiled ${output}`);
    continue;
  }
  const stderr = new TextDecoder().decode(result.stderr);
  const url = /error sending request for url \((\S+denort\S+?)\)/.exec(stderr)?.[1];
  if (url !== undefined || /Setting up base binary/.test(stderr)) {
    console.error(
      `compile: deno compile could not download its base binary (${url ?? "denort"}); ` +
        `that host is unreachable from here, so compile where it is reachable ` +
        `(the Dockerfile's build stage, a laptop).`,
    );
    Deno.exit(UNAVAILABLE);
  }
  await Deno.stderr.write(result.stderr);
  console.error(`compile: deno compile failed for ${name} (exit status ${result.code}).`);
  Deno.exit(result.code || 1);
}
