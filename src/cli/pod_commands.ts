/**
 * The pod side's subcommands, as the phonehome-relay binary ships them. Kept
 * apart from the builder's so that the relay binary bundles nothing of the
 * builder (the Kubernetes client above all).
 *
 * @module
 */

import { relaySpec, runRelayCommand } from "./relay_command.ts";
import { type Command, defineCommand } from "./run.ts";

/** Pod-side commands: in every build image. */
export const POD_COMMANDS: readonly Command[] = [defineCommand(relaySpec, runRelayCommand)];
