/**
 * Running the command line for the CLI tests: `phonehome` with arguments and
 * environment, its exit code and output collected; every command's flag
 * declarations; and a secret long enough for every command.
 *
 * @module
 */

import { BUILDER_COMMANDS } from "../../src/cli/builder_commands.ts";
import { POD_COMMANDS } from "../../src/cli/pod_commands.ts";
import { readText, spawnPhonehome } from "./processes.ts";

/** A secret long enough for every command. */
export const TOKEN = "cli-test-secret-value";

/** The flag declarations of every command, builder side and pod side. */
export const ALL_SPECS = [...BUILDER_COMMANDS, ...POD_COMMANDS].map((command) => command.spec);

/** Runs `phonehome` with `args` (and `env` added) to its end; its exit code and output. */
export async function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawnPhonehome(args, { env });
  const [stdout, stderr, status] = await Promise.all([
    readText(child.stdout),
    readText(child.stderr),
    child.status,
  ]);
  return { code: status.code, stdout, stderr };
}
