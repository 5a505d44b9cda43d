/**
 * The command-line front door: picks the subcommand, parses its flags, runs it,
 * and turns every failure into one line on stderr and a documented exit status.
 *
 * @module
 */

import { PhonehomeError, UsageError } from "../errors.ts";
import { ExitCode } from "../exit_codes.ts";
import { guardSecrets } from "../process_tree.ts";
import { type CommandSpec, type FlagTable, type ParsedFlags, parseFlags } from "./flags.ts";
import { formatHelp, wrap } from "./help.ts";

/** The phonehome release. */
export const VERSION = "0.1.0";

/** The widest line of the top-level help, in columns. */
export const OVERVIEW_WIDTH = 100;

/** A subcommand: its command line, and how to parse its arguments and run it. */
export interface Command {
  /** The flags and help of the command. */
  readonly spec: CommandSpec;
  /** Parses `args` (throwing UsageError); says whether help was asked for, and runs it. */
  parse(args: readonly string[]): { help: boolean; run: () => Promise<number> };
}

/** A command from its spec and what runs it with its flags, typed by that spec. */
export function defineCommand<T extends FlagTable>(
  spec: CommandSpec<T>,
  run: (flags: ParsedFlags<T>) => Promise<number>,
): Command {
  return {
    spec,
    parse(args: readonly string[]): { help: boolean; run: () => Promise<number> } {
      const flags = parseFlags(spec, args);
      return { help: flags.help, run: () => run(flags) };
    },
  };
}

function overview(program: string, commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => c.spec.name.length)) + 2;
  const indent = " ".repeat(2 + width);
  const lines = commands.map((c) => {
    const first = c.spec.summary.split(/(?<=\.)\s/)[0];
    const text = wrap(first, OVERVIEW_WIDTH - indent.length, indent).join("\n");
    return `  ${c.spec.name.padEnd(width)}${text}`;
  });
  return [
    `Usage: ${program} <command> [options]`,
    "",
    "phonehome streams a build's output and exit status from the build pod straight back",
    "to the builder over a WebSocket: live, byte-exact, and without polling Kubernetes.",
    "",
    "Commands:",
    ...lines,
    "",
    `Run '${program} <command> --help' for a command's options and environment variables.`,
    "",
  ].join("\n");
}

async function print(
  stream: { write(p: Uint8Array): Promise<number> },
  text: string,
): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  let done = 0;
  while (done < bytes.byteLength) done += await stream.write(bytes.subarray(done));
}

/** Runs the CLI with `args` over `commands`; resolves with the exit status. */
export async function runCli(
  program: string,
  commands: readonly Command[],
  args: readonly string[],
): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined) {
    // Called wrongly: the usage is the error message, so it goes where errors go.
    await print(Deno.stderr, overview(program, commands));
    return ExitCode.usage;
  }
  if (name === "-h" || name === "--help" || name === "help") {
    await print(Deno.stdout, overview(program, commands));
    return 0;
  }
  if (name === "--version" || name === "version") {
    await print(Deno.stdout, `phonehome ${VERSION}\n`);
    return 0;
  }
  const command = commands.find((c) => c.spec.name === name);
  try {
    if (command === undefined) {
      throw new UsageError(
        `Unknown command ${JSON.stringify(name)}; choose one of: ${
          commands.map((c) => c.spec.name).join(", ")
        }.`,
      );
    }
    const parsed = command.parse(rest);
    if (parsed.help) {
      await print(Deno.stdout, formatHelp(command.spec));
      return 0;
    }
    // Any phonehome process may hold a build's secret: keep other processes of the user,
    // the build among them, out of its /proc files.
    guardSecrets();
    return await parsed.run();
  } catch (error) {
    if (error instanceof PhonehomeError) {
      await print(Deno.stderr, `phonehome: ${error.message}\n`);
      return error.exitCode;
    }
    const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
    await print(Deno.stderr, `phonehome: Internal error, please report it: ${detail}\n`);
    return ExitCode.internal;
  }
}
