/**
 * phonehome: every subcommand of both sides, for `deno run -A main.ts <command>`.
 * The compiled binaries use src/cli/builder_main.ts and src/cli/relay_main.ts.
 *
 * @module
 */

import { BUILDER_COMMANDS } from "./src/cli/builder_commands.ts";
import { POD_COMMANDS } from "./src/cli/pod_commands.ts";
import { runCli } from "./src/cli/run.ts";

if (import.meta.main) {
  Deno.exit(await runCli("phonehome", [...BUILDER_COMMANDS, ...POD_COMMANDS], Deno.args));
}
