/**
 * `deno task docs`: writes docs/configuration.md from the commands' flag
 * declarations.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { BUILDER_COMMANDS } from "../src/cli/builder_commands.ts";
import { CONFIGURATION_DOC_PATH, renderConfigurationDoc } from "../src/cli/configuration_doc.ts";
import { POD_COMMANDS } from "../src/cli/pod_commands.ts";

if (import.meta.main) {
  const path = fileURLToPath(new URL(`../${CONFIGURATION_DOC_PATH}`, import.meta.url));
  await Deno.writeTextFile(path, renderConfigurationDoc([...BUILDER_COMMANDS, ...POD_COMMANDS]));
  console.log(`Wrote ${CONFIGURATION_DOC_PATH}.`);
}
