/**
 * `--help` text, rendered from a command's flag table, so that it cannot
 * drift from what the parser accepts.
 *
 * @module
 */

import type { CommandSpec, FlagSpec } from "./flags.ts";

/** Width of the help text, in columns. */
export const HELP_WIDTH = 78;

/**
 * Splits `text` into lines of at most `width` characters (a longer word gets a
 * line of its own), prefixing every line but the first with `indent`.
 */
export function wrap(text: string, width: number, indent: string): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line.length > 0 && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line.length === 0 ? word : `${line} ${word}`;
    }
  }
  if (line.length > 0) lines.push(line);
  return lines.map((l, i) => (i === 0 ? l : indent + l));
}

/** How a flag's default reads in help and docs: `4194304`, `on`, `off`. */
export function describeDefault(spec: FlagSpec): string | undefined {
  if (spec.kind === "list" || spec.default === undefined) return undefined;
  if (spec.kind === "boolean") return spec.default ? "on" : "off";
  return String(spec.default);
}

/** The left column of a flag: `--name VALUE`. */
export function flagSynopsis(name: string, spec: FlagSpec): string {
  return spec.kind === "boolean" ? `--${name}` : `--${name} ${spec.valueName ?? "VALUE"}`;
}

/** Renders the `--help` text of a command from its spec. */
export function formatHelp(spec: CommandSpec): string {
  const out: string[] = [`Usage: phonehome ${spec.usage}`, ""];
  out.push(...wrap(spec.summary, HELP_WIDTH, ""), "", "Options:");
  const column = 28;
  const rows: Array<[string, string]> = Object.entries(spec.flags).map(([name, flagSpec]) => {
    const extras: string[] = [];
    if (flagSpec.env !== undefined && flagSpec.env.length > 0) {
      extras.push(`env: ${flagSpec.env.join(", ")}`);
    }
    const fallback = describeDefault(flagSpec);
    if (fallback !== undefined) extras.push(`default: ${fallback}`);
    if (flagSpec.kind === "list") extras.push("repeatable");
    const text = extras.length > 0 ? `${flagSpec.help} [${extras.join("; ")}]` : flagSpec.help;
    return [`  ${flagSynopsis(name, flagSpec)}`, text];
  });
  rows.push(["  -h, --help", "Show this help and exit."]);
  for (const [left, text] of rows) {
    const indent = " ".repeat(column);
    const body = wrap(text, HELP_WIDTH - column, indent);
    if (left.length >= column - 1) {
      out.push(left, indent + body.join("\n"));
    } else {
      out.push(left.padEnd(column) + body.join("\n"));
    }
  }
  if (spec.examples !== undefined && spec.examples.length > 0) {
    out.push("", "Examples:", ...spec.examples.map((e) => `  ${e}`));
  }
  return out.join("\n") + "\n";
}
