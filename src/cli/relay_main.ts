/**
 * Entry point of the pod-side binary, `phonehome-relay` (relay).
 *
 * @module
 */

import { POD_COMMANDS } from "./pod_commands.ts";
import { runCli } from "./run.ts";

if (import.meta.main) {
  Deno.exit(await runCli("phonehome-relay", POD_COMMANDS, Deno.args));
}
