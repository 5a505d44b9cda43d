/**
 * The command line: help for every command (that fits its width), the usage
 * for no command at all, secrets of the minimum length, durations in
 * messages, the limits of time flags, and a file that cannot be written.
 * Usage errors are in cli_usage_error_test.ts; the generated configuration
 * reference, the docs' examples and the deno tasks in cli_docs_and_tasks_test.ts.
 */

import assert from "node:assert/strict";
import { MAX_TIMER_MS, parseFlags } from "../src/cli/flags.ts";
import { gcSpec } from "../src/cli/gc_command.ts";
import { receiveSpec } from "../src/cli/receive_command.ts";
import { OVERVIEW_WIDTH } from "../src/cli/run.ts";
import { formatDuration } from "../src/format.ts";
import { MIN_TOKEN_BYTES } from "../src/protocol/mod.ts";
import { freePort, tempDir } from "./support/processes.ts";
import { ALL_SPECS, run, TOKEN } from "./support/command_line.ts";

for (const spec of ALL_SPECS) {
  Deno.test(`'${spec.name} --help' explains every flag and environment variable`, async () => {
    const result = await run([spec.name, "--help"]);
    assert.equal(result.code, 0);
    assert.equal(result.stderr, "");
    assert.match(result.stdout, new RegExp(`^Usage: phonehome ${spec.name}`));
    for (const [name, flag] of Object.entries(spec.flags)) {
      assert.ok(result.stdout.includes(`--${name}`), `--${name} is documented`);
      for (const variable of flag.env ?? []) {
        assert.ok(result.stdout.includes(variable), `${variable} is documented`);
      }
    }
  });
}

Deno.test("the overview lists every command", async () => {
  const result = await run(["--help"]);
  assert.equal(result.code, 0);
  assert.equal(result.stderr, "");
  for (const { name } of ALL_SPECS) {
    assert.match(result.stdout, new RegExp(`^  ${name} `, "m"));
  }
});

Deno.test("no command at all prints the usage to stderr and exits 64", async () => {
  const result = await run([]);
  assert.equal(result.code, 64);
  assert.equal(result.stdout, "");
  assert.match(result.stderr, /^Usage: phonehome <command> \[options\]\n/);
});

Deno.test(`the overview and every command's help fit in ${OVERVIEW_WIDTH} columns`, async () => {
  for (const args of [["--help"], ...ALL_SPECS.map((spec) => [spec.name, "--help"])]) {
    const { stdout } = await run(args);
    const wide = stdout.split("\n").filter((line) => line.length > OVERVIEW_WIDTH);
    assert.deepEqual(wide, [], `phonehome ${args.join(" ")}`);
  }
});

Deno.test("a secret of exactly the minimum length is accepted", async () => {
  // The relay gets past its checks and runs the build, though no receiver listens.
  const result = await run([
    "relay",
    `--url=ws://127.0.0.1:${freePort()}/`,
    `--token=${"x".repeat(MIN_TOKEN_BYTES)}`,
    "--connect-timeout=1",
    "--no-tee",
    "--",
    "sh",
    "-c",
    "exit 3",
  ]);
  assert.equal(result.code, 3, result.stderr);
});

Deno.test("durations in messages are rounded to whole milliseconds", async (t) => {
  await t.step("formatDuration", () => {
    assert.equal(formatDuration(485.96214299999997), "486ms");
    assert.equal(formatDuration(999.6), "1s");
    assert.equal(formatDuration(1234.5), "1.2s");
    assert.equal(formatDuration(59_999), "1m");
    assert.equal(formatDuration(MAX_TIMER_MS), "596h31m24s");
  });
  await t.step("a relay retrying an unreachable receiver", async () => {
    const result = await run([
      "relay",
      `--url=ws://127.0.0.1:${freePort()}/`,
      `--token=${TOKEN}`,
      "--connect-timeout=700",
      "--no-tee",
      "--",
      "true",
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /retrying for up to \d+ms\./);
    assert.doesNotMatch(result.stderr, /\d\.\d*ms/);
  });
});

Deno.test("time flags accept up to 2^31-1 ms, and an age for gc more", () => {
  const env = (): undefined => undefined;
  const at = (value: string): number | undefined =>
    parseFlags(receiveSpec, [`--connect-timeout=${value}`], env).values["connect-timeout"];
  assert.equal(at(String(MAX_TIMER_MS)), MAX_TIMER_MS);
  assert.throws(() => at(String(MAX_TIMER_MS + 1)), /is too large/);
  assert.throws(() => at("99999999999999999999"), /is too large/);
  assert.throws(() => at("-1"), /must be a whole number/);
  // --older-than is an age to compare with, never a timer's delay: a year is fine.
  const year = 365 * 24 * 3_600_000;
  assert.equal(parseFlags(gcSpec, [`--older-than=${year}`], env).values["older-than"], year);
});

Deno.test("a --token-file that cannot be written is named, not the --url-file beside it", async () => {
  await using dir = await tempDir();
  const tokenFile = `${dir.path}/missing/token`;
  const result = await run([
    "receive",
    "--listen=127.0.0.1:0",
    `--url-file=${dir.path}/url`,
    `--token-file=${tokenFile}`,
  ]);
  assert.equal(result.code, 64, result.stderr);
  assert.match(result.stderr, new RegExp(`^phonehome: Cannot write ${tokenFile}: `));
  assert.doesNotMatch(result.stderr, /\/url\b/);
});
