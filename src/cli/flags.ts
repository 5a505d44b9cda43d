/**
 * A small declarative flag parser: each command lists its flags once, with their
 * environment-variable fallbacks and defaults, and both parsing and `--help`
 * come from that one list, so the help text cannot drift from the behaviour.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { formatDuration } from "../format.ts";

/**
 * The longest delay a timer can wait, in milliseconds (2^31-1, about 24.8 days):
 * a longer one overflows and fires at once. The default `max` of a flag whose
 * value is in milliseconds.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** How a flag's value is read. */
export type FlagKind = "string" | "integer" | "boolean" | "list";

/** One flag of a command. */
export interface FlagSpec {
  /** Long name without dashes, such as `connect-timeout`. */
  name: string;
  /** How the value is parsed. */
  kind: FlagKind;
  /** Environment variables consulted, in order, when the flag is absent. */
  env?: readonly string[];
  /** Default as text (parsed like a command-line value); absent means unset. */
  default?: string;
  /**
   * Placeholder shown in help, such as `MS`. `MS` also marks a duration in
   * milliseconds, whose `max` defaults to {@linkcode MAX_TIMER_MS}.
   */
  valueName?: string;
  /** One or two sentences for `--help`. */
  help: string;
  /** Smallest accepted value of an integer flag. */
  min?: number;
  /**
   * Largest accepted value of an integer flag: {@linkcode MAX_TIMER_MS} for a
   * duration in milliseconds (valueName `MS`), else the largest safe integer.
   */
  max?: number;
}

/** The largest value an integer flag accepts, after its kind-specific default. */
export function maxOf(flag: FlagSpec): number {
  return flag.max ?? (flag.valueName === "MS" ? MAX_TIMER_MS : Number.MAX_SAFE_INTEGER);
}

function describeLimit(flag: FlagSpec, limit: number): string {
  return flag.valueName === "MS" ? `${limit} ms (${formatDuration(limit)})` : String(limit);
}

/** A subcommand: its flags and how it is called. */
export interface CommandSpec {
  /** Subcommand name, such as `relay`. */
  name: string;
  /** The usage line after `phonehome`. */
  usage: string;
  /** What the command does, a short paragraph. */
  summary: string;
  /** Flags the command accepts (`--help` is implied). */
  flags: readonly FlagSpec[];
  /** Whether a `-- COMMAND [ARG...]` tail is required. */
  takesCommand: boolean;
  /** Examples shown at the end of the help. */
  examples?: readonly string[];
}

/** The result of parsing: typed accessors that name the flag or variable on error. */
export class ParsedFlags {
  #spec: CommandSpec;
  #values: Map<string, string[]>;
  #sources: Map<string, string>;
  /** Whether `--help` was given. */
  readonly help: boolean;
  /** The words after `--`. */
  readonly command: string[];

  /** Wraps raw values; use {@linkcode parseFlags} to create one. */
  constructor(
    spec: CommandSpec,
    parsed: {
      values: Map<string, string[]>;
      sources: Map<string, string>;
      help: boolean;
      command: string[];
    },
  ) {
    this.#spec = spec;
    this.#values = parsed.values;
    this.#sources = parsed.sources;
    this.help = parsed.help;
    this.command = parsed.command;
  }

  #flag(name: string, kind: FlagKind): FlagSpec {
    const flag = this.#spec.flags.find((f) => f.name === name);
    if (flag === undefined || flag.kind !== kind) {
      throw new TypeError(`Command ${this.#spec.name} has no ${kind} flag --${name}.`);
    }
    return flag;
  }

  #raw(flag: FlagSpec): string | undefined {
    const values = this.#values.get(flag.name);
    return values === undefined ? flag.default : values[values.length - 1];
  }

  /** Where a flag's value came from, for error messages. */
  source(name: string): string {
    return this.#sources.get(name) ?? `--${name}`;
  }

  /** The value of a string flag, or undefined when neither given nor defaulted. */
  string(name: string): string | undefined {
    return this.#raw(this.#flag(name, "string"));
  }

  /** The value of an integer flag; a malformed, too small or too large value is a usage error. */
  integer(name: string): number | undefined {
    const flag = this.#flag(name, "integer");
    const raw = this.#raw(flag);
    if (raw === undefined) return undefined;
    if (!/^\s*\d+\s*$/.test(raw)) {
      throw new UsageError(
        `${this.source(name)} must be a whole number, not ${JSON.stringify(raw)}.`,
      );
    }
    const value = Number(raw);
    const max = maxOf(flag);
    if (!Number.isSafeInteger(value) || value > max) {
      const what = Number.isSafeInteger(value) ? String(value) : raw.trim();
      throw new UsageError(
        `${this.source(name)} is too large: ${what}; the most it can be is ` +
          `${describeLimit(flag, max)}.`,
      );
    }
    if (flag.min !== undefined && value < flag.min) {
      throw new UsageError(`${this.source(name)} must be at least ${flag.min}, not ${value}.`);
    }
    return value;
  }

  /** The value of a boolean flag (false unless given or defaulted). */
  boolean(name: string): boolean {
    const raw = this.#raw(this.#flag(name, "boolean"));
    if (raw === undefined) return false;
    const normalized = raw.trim().toLowerCase();
    if (["1", "true", "yes", "on"].includes(normalized)) return true;
    if (["0", "false", "no", "off", ""].includes(normalized)) return false;
    throw new UsageError(`${this.source(name)} must be true or false, not ${JSON.stringify(raw)}.`);
  }

  /** The value of a boolean flag, or undefined when it was neither given nor defaulted. */
  optionalBoolean(name: string): boolean | undefined {
    return this.#raw(this.#flag(name, "boolean")) === undefined ? undefined : this.boolean(name);
  }

  /** Every value of a repeatable flag, in order. */
  list(name: string): string[] {
    const flag = this.#flag(name, "list");
    return this.#values.get(flag.name) ?? (flag.default === undefined ? [] : [flag.default]);
  }
}

/**
 * Parses `args` against `spec`, consulting `env` for absent flags.
 * Throws {@linkcode UsageError} with a one-line message for anything wrong.
 */
export function parseFlags(
  spec: CommandSpec,
  args: readonly string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): ParsedFlags {
  const values = new Map<string, string[]>();
  const sources = new Map<string, string>();
  let help = false;
  let command: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      command = args.slice(i + 1);
      break;
    }
    if (arg === "-h" || arg === "--help") {
      help = true;
      continue;
    }
    if (!arg.startsWith("--")) {
      if (spec.takesCommand) {
        throw new UsageError(
          `Unexpected argument ${JSON.stringify(arg)}: put the build command after "--".`,
        );
      }
      throw new UsageError(`Unexpected argument ${JSON.stringify(arg)}.`);
    }
    const eq = arg.indexOf("=");
    let name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    let inline: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    let flag = spec.flags.find((f) => f.name === name);
    if (flag === undefined && name.startsWith("no-") && inline === undefined) {
      const positive = spec.flags.find((f) => f.name === name.slice(3) && f.kind === "boolean");
      if (positive !== undefined) {
        flag = positive;
        name = positive.name;
        inline = "false";
      }
    }
    if (flag === undefined) {
      throw new UsageError(`Unknown flag --${name}; see 'phonehome ${spec.name} --help'.`);
    }
    let value: string;
    if (inline !== undefined) {
      value = inline;
    } else if (flag.kind === "boolean") {
      value = "true";
    } else {
      if (i + 1 >= args.length) throw new UsageError(`Flag --${name} needs a value.`);
      value = args[++i];
    }
    const list = values.get(name) ?? [];
    list.push(value);
    values.set(name, list);
    sources.set(name, `--${name}`);
  }
  for (const flag of spec.flags) {
    if (values.has(flag.name)) continue;
    for (const variable of flag.env ?? []) {
      const value = env(variable);
      if (value !== undefined && value !== "") {
        values.set(flag.name, [value]);
        sources.set(flag.name, `${variable} (from the environment)`);
        break;
      }
    }
  }
  if (!help && spec.takesCommand && command.length === 0) {
    throw new UsageError(
      `No build command given: use 'phonehome ${spec.name} [options] -- COMMAND [ARG...]'.`,
    );
  }
  if (!help && !spec.takesCommand && command.length > 0) {
    throw new UsageError(`phonehome ${spec.name} takes no command after "--".`);
  }
  return new ParsedFlags(spec, { values, sources, help, command });
}

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

/** Renders the `--help` text of a command from its spec. */
export function formatHelp(spec: CommandSpec): string {
  const out: string[] = [`Usage: phonehome ${spec.usage}`, ""];
  out.push(...wrap(spec.summary, 78, ""), "", "Options:");
  const column = 28;
  const rows: Array<[string, string]> = spec.flags.map((flag) => {
    const value = flag.kind === "boolean" ? "" : ` ${flag.valueName ?? "VALUE"}`;
    const extras: string[] = [];
    if (flag.env !== undefined && flag.env.length > 0) extras.push(`env: ${flag.env.join(", ")}`);
    if (flag.default !== undefined) extras.push(`default: ${flag.default}`);
    if (flag.kind === "list") extras.push("repeatable");
    const text = extras.length > 0 ? `${flag.help} [${extras.join("; ")}]` : flag.help;
    return [`  --${flag.name}${value}`, text];
  });
  rows.push(["  -h, --help", "Show this help and exit."]);
  for (const [left, text] of rows) {
    const indent = " ".repeat(column);
    const body = wrap(text, 78 - column, indent);
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
