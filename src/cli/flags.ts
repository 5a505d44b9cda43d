/**
 * A small declarative flag parser: each command declares its flags once, as a
 * table from name to spec with environment-variable fallbacks and typed
 * defaults, and parsing, `--help` and docs/configuration.md all come from that
 * one table. A flag with a default reads as a value, one without as possibly
 * undefined, and the types say which.
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

interface FlagBase {
  /** Environment variables consulted, in order, when the flag is absent. */
  readonly env?: readonly string[];
  /**
   * Placeholder shown in help, such as `MS`. `MS` also marks a duration in
   * milliseconds, whose `max` defaults to {@linkcode MAX_TIMER_MS}.
   */
  readonly valueName?: string;
  /** One or two sentences for `--help`. */
  readonly help: string;
}

/** A whole number, such as a duration in milliseconds or a size in bytes. */
export interface IntegerFlag extends FlagBase {
  readonly kind: "integer";
  readonly default?: number;
  /** Smallest accepted value. */
  readonly min?: number;
  /**
   * Largest accepted value: {@linkcode MAX_TIMER_MS} for a duration in
   * milliseconds (valueName `MS`), else the largest safe integer.
   */
  readonly max?: number;
}

/** Free text, such as a path or an address. */
export interface StringFlag extends FlagBase {
  readonly kind: "string";
  readonly default?: string;
}

/** On or off: `--flag`, `--no-flag`, `--flag=true|false`; variables take 1/0, yes/no, on/off. */
export interface BooleanFlag extends FlagBase {
  readonly kind: "boolean";
  readonly default?: boolean;
}

/** A repeatable flag, such as `--env NAME=VALUE`. */
export interface ListFlag extends FlagBase {
  readonly kind: "list";
}

/** One flag of a command. */
export type FlagSpec = IntegerFlag | StringFlag | BooleanFlag | ListFlag;

/** A command's flags by long name (without dashes, such as `connect-timeout`). */
export type FlagTable = Readonly<Record<string, FlagSpec>>;

/** The type a flag reads as: its value's, and undefined too unless it has a default. */
export type FlagValue<F extends FlagSpec> = F extends ListFlag ? string[]
  : F extends { kind: "integer"; default: number } ? number
  : F extends { kind: "integer" } ? number | undefined
  : F extends { kind: "boolean"; default: boolean } ? boolean
  : F extends { kind: "boolean" } ? boolean | undefined
  : F extends { kind: "string"; default: string } ? string
  : string | undefined;

/** Every flag of a table, read. */
export type FlagValues<T extends FlagTable> = { readonly [K in keyof T]: FlagValue<T[K]> };

/** Declares a flag, keeping the exact type of its default for {@linkcode FlagValue}. */
export function flag<const F extends FlagSpec>(spec: F): F {
  return spec;
}

/** A subcommand: its flags and how it is called. */
export interface CommandSpec<T extends FlagTable = FlagTable> {
  /** Subcommand name, such as `relay`. */
  readonly name: string;
  /** The usage line after `phonehome`. */
  readonly usage: string;
  /** What the command does, a short paragraph. */
  readonly summary: string;
  /** Flags the command accepts (`--help` is implied). */
  readonly flags: T;
  /** Whether a `-- COMMAND [ARG...]` tail is required. */
  readonly takesCommand: boolean;
  /** Examples shown at the end of the help. */
  readonly examples?: readonly string[];
}

/** The largest value an integer flag accepts, after its kind-specific default. */
export function maxOf(spec: IntegerFlag): number {
  return spec.max ?? (spec.valueName === "MS" ? MAX_TIMER_MS : Number.MAX_SAFE_INTEGER);
}

function describeLimit(spec: IntegerFlag, limit: number): string {
  return spec.valueName === "MS" ? `${limit} ms (${formatDuration(limit)})` : String(limit);
}

/** A parsed command line: every flag's value, typed, and where each came from. */
export class ParsedFlags<T extends FlagTable> {
  #sources: Map<string, string>;
  /** Every flag's value: given, from the environment, or its default. */
  readonly values: FlagValues<T>;
  /** Whether `--help` was given. */
  readonly help: boolean;
  /** The words after `--`. */
  readonly command: string[];

  /** Wraps parsed values; use {@linkcode parseFlags} to create one. */
  constructor(parsed: {
    values: FlagValues<T>;
    sources: Map<string, string>;
    help: boolean;
    command: string[];
  }) {
    this.values = parsed.values;
    this.#sources = parsed.sources;
    this.help = parsed.help;
    this.command = parsed.command;
  }

  /** Where a flag's value came from, for error messages: `--name` or `VARIABLE (from the environment)`. */
  source(name: keyof T & string): string {
    return this.#sources.get(name) ?? `--${name}`;
  }
}

/** Reads one raw value as its flag's kind; `source` names it in errors. */
function readValue(spec: FlagSpec, raw: string, source: string): number | boolean | string {
  switch (spec.kind) {
    case "integer": {
      if (!/^\s*\d+\s*$/.test(raw)) {
        throw new UsageError(`${source} must be a whole number, not ${JSON.stringify(raw)}.`);
      }
      const value = Number(raw);
      const max = maxOf(spec);
      if (!Number.isSafeInteger(value) || value > max) {
        const what = Number.isSafeInteger(value) ? String(value) : raw.trim();
        throw new UsageError(
          `${source} is too large: ${what}; the most it can be is ${describeLimit(spec, max)}.`,
        );
      }
      if (spec.min !== undefined && value < spec.min) {
        throw new UsageError(`${source} must be at least ${spec.min}, not ${value}.`);
      }
      return value;
    }
    case "boolean": {
      const normalized = raw.trim().toLowerCase();
      if (["1", "true", "yes", "on"].includes(normalized)) return true;
      if (["0", "false", "no", "off", ""].includes(normalized)) return false;
      throw new UsageError(`${source} must be true or false, not ${JSON.stringify(raw)}.`);
    }
    default:
      return raw;
  }
}

/**
 * Parses `args` against `spec`, consulting `env` for absent flags, and reads
 * every value at once, so that anything malformed is found before the command
 * does anything. Throws {@linkcode UsageError} with a one-line message.
 */
export function parseFlags<T extends FlagTable>(
  spec: CommandSpec<T>,
  args: readonly string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): ParsedFlags<T> {
  const given = new Map<string, string[]>();
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
      throw new UsageError(
        `Unexpected argument ${JSON.stringify(arg)}` +
          (spec.takesCommand ? `: put the build command after "--".` : "."),
      );
    }
    const eq = arg.indexOf("=");
    let name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    let inline: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    if (
      !(name in spec.flags) && name.startsWith("no-") && inline === undefined &&
      spec.flags[name.slice(3)]?.kind === "boolean"
    ) {
      name = name.slice(3);
      inline = "false";
    }
    const flagSpec = spec.flags[name];
    if (flagSpec === undefined) {
      throw new UsageError(`Unknown flag --${name}; see 'phonehome ${spec.name} --help'.`);
    }
    let value: string;
    if (inline !== undefined) {
      value = inline;
    } else if (flagSpec.kind === "boolean") {
      value = "true";
    } else {
      if (i + 1 >= args.length) throw new UsageError(`Flag --${name} needs a value.`);
      value = args[++i];
    }
    given.set(name, [...(given.get(name) ?? []), value]);
    sources.set(name, `--${name}`);
  }
  for (const [name, flagSpec] of Object.entries(spec.flags)) {
    if (given.has(name)) continue;
    for (const variable of flagSpec.env ?? []) {
      const value = env(variable);
      if (value !== undefined && value !== "") {
        given.set(name, [value]);
        sources.set(name, `${variable} (from the environment)`);
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
  const values: Record<string, unknown> = {};
  for (const [name, flagSpec] of Object.entries(spec.flags)) {
    // Help is shown whatever else is wrong.
    const raw = help ? undefined : given.get(name);
    const source = sources.get(name) ?? `--${name}`;
    if (flagSpec.kind === "list") {
      values[name] = raw ?? [];
    } else {
      values[name] = raw === undefined
        ? flagSpec.default
        : readValue(flagSpec, raw[raw.length - 1], source);
    }
  }
  return new ParsedFlags<T>({ values: values as FlagValues<T>, sources, help, command });
}
