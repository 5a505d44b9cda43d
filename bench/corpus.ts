/**
 * Deterministic, realistic build output for the benchmarks: compiler and
 * package-manager lines of varied length, some ANSI colour, `\r` progress
 * bars, buildpack `ESC[1G` prefixes, a little UTF-8 and a few very long lines,
 * all generated from a seed so that every run streams the same bytes.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { Random } from "./random.ts";

/** Bytes generated per batch before they are encoded and handed out. */
const BATCH_BYTES = 1024 * 1024;

/** What a corpus is: its size and checksum, to compare with what came out the other end. */
export interface CorpusDigest {
  /** Size in bytes. */
  bytes: number;
  /** Lower-case hex SHA-256. */
  sha256: string;
}

const ESC = "\x1b";
const BOLD_MAGENTA = `${ESC}[1;35m`;
const BOLD_RED = `${ESC}[1;31m`;
const BOLD_GREEN = `${ESC}[1;32m`;
const RESET = `${ESC}[0m`;
const BUILDPACK_PREFIX = `${ESC}[1G`;

const PACKAGES = [
  "express",
  "lodash",
  "react-dom",
  "typescript",
  "webpack",
  "@babel/core",
  "left-pad",
  "nokogiri",
  "pg",
  "puma",
  "django",
  "numpy",
  "requests",
  "serde",
  "tokio",
  "openssl-sys",
  "github.com/gorilla/mux",
  "golang.org/x/net",
  "rack",
  "activesupport",
] as const;

const DIRECTORIES = [
  "src",
  "lib",
  "app/models",
  "internal/http",
  "pkg/storage",
  "vendor/bundle/ruby/3.2.0",
  "crates/core/src",
  "src/main/java/com/example",
] as const;

const WORDS = [
  "parser",
  "buffer",
  "request",
  "session",
  "config",
  "worker",
  "handler",
  "index",
  "client",
  "router",
  "cache",
  "stream",
] as const;

const WARNINGS = [
  ["unused variable 'tmp'", "-Wunused-variable"],
  ["comparison of integer expressions of different signedness", "-Wsign-compare"],
  ["implicit declaration of function 'strlcpy'", "-Wimplicit-function-declaration"],
  ["'len' may be used uninitialized", "-Wmaybe-uninitialized"],
] as const;

function version(random: Random): string {
  return `${random.below(20)}.${random.below(40)}.${random.below(100)}`;
}

function sourcePath(random: Random): string {
  return `${random.pick(DIRECTORIES)}/${random.pick(WORDS)}_${random.pick(WORDS)}`;
}

function progressBar(random: Random): string {
  // Several redraws of one bar on one line, as curl or pip print them.
  const parts: string[] = [];
  for (let percent = 0; percent <= 100; percent += 10 + random.below(30)) {
    const filled = Math.floor(percent / 5);
    parts.push(`\r[${"=".repeat(filled)}>${" ".repeat(20 - filled)}] ${percent}%`);
  }
  return `${parts.join("")}\r[${"=".repeat(21)}] 100%`;
}

function longLine(random: Random): string {
  // A linker command with hundreds of objects, or a minified JSON blob: 2-16 KiB.
  const target = 2048 + random.below(14 * 1024);
  const parts = random.below(2) === 0 ? ["g++ -o build/app"] : ['{"assets":['];
  let length = parts[0].length;
  while (length < target) {
    const part = parts[0].startsWith("g++")
      ? ` build/${sourcePath(random)}.o`
      : `{"name":"${random.pick(WORDS)}.${random.below(1e6).toString(16)}.js","size":${
        random.below(1e6)
      }},`;
    parts.push(part);
    length += part.length;
  }
  return parts.join("");
}

/** One line of build output (with its newline, or `\r` redraws before it). */
function line(random: Random): string {
  const roll = random.below(1000);
  if (roll < 180) return `  CC      ${sourcePath(random)}.o\n`;
  if (roll < 300) {
    const defines = Array.from(
      { length: 1 + random.below(6) },
      () => ` -DHAVE_${random.below(99)}`,
    );
    return `gcc -O2 -g -Wall -Wextra -fPIC -I./include -I/usr/local/include${defines.join("")} -c ${
      sourcePath(random)
    }.c -o build/${sourcePath(random)}.o\n`;
  }
  if (roll < 360) {
    const [text, flag] = random.pick(WARNINGS);
    const at = `${sourcePath(random)}.c:${1 + random.below(2000)}:${1 + random.below(80)}`;
    return `${ESC}[1m${at}:${RESET} ${BOLD_MAGENTA}warning: ${RESET}${text} ` +
      `[${BOLD_MAGENTA}${flag}${RESET}]\n  ${random.below(2000)} |     int tmp = 0;\n` +
      `      |         ${BOLD_GREEN}^~~${RESET}\n`;
  }
  if (roll < 480) {
    return `npm WARN deprecated ${random.pick(PACKAGES)}@${version(random)}: this version is no ` +
      `longer maintained, upgrade to the latest release\n`;
  }
  if (roll < 580) {
    return `${BUILDPACK_PREFIX}       Installing ${random.pick(PACKAGES)} ${version(random)}` +
      `${random.below(3) === 0 ? " with native extensions" : ""}\n`;
  }
  if (roll < 620) return `${BUILDPACK_PREFIX}-----> Installing dependencies using bundler\n`;
  if (roll < 720) {
    const name = random.pick(PACKAGES);
    return `Downloading https://registry.example.org/${name}/-/${name}-${version(random)}.tgz ` +
      `(${(random.next() * 20).toFixed(1)} MB)\n`;
  }
  if (roll < 760) return `${progressBar(random)}\n`;
  if (roll < 840) {
    return `   ${BOLD_GREEN}Compiling${RESET} ${random.pick(PACKAGES)} v${version(random)}\n`;
  }
  if (roll < 900) {
    return `go: downloading ${random.pick(PACKAGES)} v${version(random)}\n`;
  }
  if (roll < 950) {
    return `ok  \t${random.pick(PACKAGES)}/${random.pick(WORDS)}\t${random.next().toFixed(3)}s\n`;
  }
  if (roll < 975) {
    return `\u2714 ${random.pick(WORDS)} built in ${random.below(900)} ms \u2192 dist/\n`;
  }
  if (roll < 990) {
    return `${BOLD_RED}error${RESET}: could not resolve ${random.pick(PACKAGES)}; retrying\n`;
  }
  return `${longLine(random)}\n`;
}

/**
 * Yields exactly `bytes` bytes of build output generated from `seed`, in
 * chunks of about a mebibyte. The same seed always yields the same bytes.
 */
export function* generateCorpus(seed: number, bytes: number): Generator<Uint8Array> {
  const random = new Random(seed);
  const encoder = new TextEncoder();
  let left = bytes;
  while (left > 0) {
    const lines: string[] = [];
    let length = 0;
    while (length < BATCH_BYTES) {
      const text = line(random);
      lines.push(text);
      // Close enough for batching: UTF-8 adds a byte or two on rare lines.
      length += text.length;
    }
    const chunk = encoder.encode(lines.join(""));
    const part = chunk.byteLength <= left ? chunk : chunk.subarray(0, left);
    left -= part.byteLength;
    yield part;
  }
}

/** Writes the corpus for `seed` and `bytes` to `path`; resolves with its digest. */
export async function writeCorpus(
  path: string,
  options: { seed: number; bytes: number },
): Promise<CorpusDigest> {
  const hash = createHash("sha256");
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  for (const chunk of generateCorpus(options.seed, options.bytes)) {
    hash.update(chunk);
    let done = 0;
    while (done < chunk.byteLength) done += await file.write(chunk.subarray(done));
  }
  return { bytes: options.bytes, sha256: hash.digest("hex") };
}
