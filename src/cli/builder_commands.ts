/**
 * The builder side's subcommands, as the phonehome-builder binary ships them.
 *
 * @module
 */

import { buildSpec, runBuild } from "./build_command.ts";
import { gcSpec, runGc } from "./gc_command.ts";
import { receiveSpec, runReceive } from "./receive_command.ts";
import { type Command, defineCommand } from "./run.ts";

/** Builder-side commands: in the builder image. */
export const BUILDER_COMMANDS: readonly Command[] = [
  defineCommand(buildSpec, runBuild),
  defineCommand(receiveSpec, runReceive),
  defineCommand(gcSpec, runGc),
];
