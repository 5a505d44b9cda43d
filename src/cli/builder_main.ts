/**
 * Entry point of the builder-side binary, `phonehome-builder` (build, receive, gc).
 *
 * @module
 */

import { BUILDER_COMMANDS } from "./builder_commands.ts";
import { runCli } from "./run.ts";

if (import.meta.main) {
  Deno.exit(await runCli("phonehome-builder", BUILDER_COMMANDS, Deno.args));
}
