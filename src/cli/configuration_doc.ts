/**
 * docs/configuration.md, rendered from the commands' flag tables: every flag,
 * its environment variables, its default and the commands that take it. A
 * test compares the file with this rendering, so the reference cannot go
 * stale; `deno task docs` rewrites it.
 *
 * @module
 */

import type { FlagSpec } from "./flags.ts";
import { describeDefault, flagSynopsis } from "./help.ts";
import type { Command } from "./run.ts";

/** Where the rendering goes, relative to the checkout. */
export const CONFIGURATION_DOC_PATH = "docs/configuration.md";

/** One row: a flag as one or more commands declare it, identically. */
interface Row {
  name: string;
  spec: FlagSpec;
  commands: string[];
}

function cell(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}

/** The whole of docs/configuration.md for `commands`. */
export function renderConfigurationDoc(commands: readonly Command[]): string {
  const rows: Row[] = [];
  for (const { spec } of commands) {
    for (const [name, flagSpec] of Object.entries(spec.flags)) {
      // A flag declared alike by several commands is one row; declared differently, one each.
      const same = rows.find((row) =>
        row.name === name && JSON.stringify(row.spec) === JSON.stringify(flagSpec)
      );
      if (same !== undefined) same.commands.push(spec.name);
      else rows.push({ name, spec: flagSpec, commands: [spec.name] });
    }
  }
  const lines = [
    "# Configuration",
    "",
    "<!-- Generated from the flag declarations in src/cli/ by `deno task docs`; do not edit. -->",
    "",
    "Every setting is a flag, and most have environment variables, consulted in the order listed",
    "when the flag is absent; a flag wins over its variables. Times are in milliseconds, sizes in",
    "bytes. Boolean flags take `--flag`, `--no-flag` or `--flag=true|false`; their variables take",
    "`1/0`, `true/false`, `yes/no`, `on/off`. `phonehome COMMAND --help` says the same per command.",
    "",
    "| Flag | Environment | Default | Commands | Meaning |",
    "| ---- | ----------- | ------- | -------- | ------- |",
  ];
  for (const { name, spec, commands: takers } of rows) {
    const env = (spec.env ?? []).map((variable) => `\`${variable}\``).join(", ");
    const fallback = describeDefault(spec);
    lines.push(
      `| \`${cell(flagSynopsis(name, spec))}\` | ${env} | ${
        fallback === undefined ? "" : `\`${fallback}\``
      } | ${takers.join(", ")} | ${cell(spec.help)} |`,
    );
  }
  return lines.join("\n") + "\n";
}
