/**
 * The command line: help for every command, one-line usage errors with status
 * 64, limits of flag values, the generated configuration reference, and the compile
 * task.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { CONFIGURATION_DOC_PATH, renderConfigurationDoc } from "../src/cli/configuration_doc.ts";
import { BUILDER_COMMANDS } from "../src/cli/builder_commands.ts";
import { MAX_TIMER_MS, parseFlags } from "../src/cli/flags.ts";
import { gcSpec } from "../src/cli/gc_command.ts";
import { POD_COMMANDS } from "../src/cli/pod_commands.ts";
import { receiveSpec } from "../src/cli/receive_command.ts";
import { OVERVIEW_WIDTH } from "../src/cli/run.ts";
import { formatDuration } from "../src/format.ts";
import { MIN_TOKEN_BYTES } from "../src/protocol/mod.ts";
import { CONFIG, DENO, freePort, readText, spawnPhonehome, tempDir } from "./support/processes.ts";

/** A secret long enough for every command. */
const TOKEN = "cli-test-secret-value";

/** A secret one byte too short. */
const SHORT_TOKEN = "x".repeat(MIN_TOKEN_BYTES - 1);

async function run(
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

const ALL_SPECS = [...BUILDER_COMMANDS, ...POD_COMMANDS].map((command) => command.spec);

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

const usageErrors: Array<[string, string[], Record<string, string>, RegExp]> = [
  [
    "an unknown command",
    ["frobnicate"],
    {},
    new RegExp(
      `Unknown command "frobnicate"; choose one of: ${ALL_SPECS.map((s) => s.name).join(", ")}\\.`,
    ),
  ],
  [
    "an unknown flag",
    ["receive", "--colour"],
    {},
    /Unknown flag --colour; see 'phonehome receive --help'\./,
  ],
  [
    "a relay without a command",
    ["relay", "--url=ws://h:1/", `--token=${TOKEN}`],
    {},
    /No build command given/,
  ],
  [
    "a relay without a URL",
    ["relay", `--token=${TOKEN}`, "--", "true"],
    {},
    /No receiver URL: set --url or PHONEHOME_URL\./,
  ],
  [
    "a relay without a secret",
    ["relay", "--url=ws://h:1/", "--", "true"],
    {},
    /No secret: set --token or PHONEHOME_TOKEN\./,
  ],
  [
    "an http URL",
    ["relay", "--url=http://h:1/", `--token=${TOKEN}`, "--", "true"],
    {},
    /--url must start with ws:\/\/ or wss:\/\//,
  ],
  [
    "a malformed timeout",
    ["receive", "--connect-timeout=soon"],
    {},
    /--connect-timeout must be a whole number, not "soon"\./,
  ],
  [
    "a malformed environment variable",
    ["receive"],
    { SESSION_IDLE_INTERVAL: "ten" },
    /SESSION_IDLE_INTERVAL \(from the environment\) must be a whole number, not "ten"\./,
  ],
  [
    "a malformed listen address",
    ["receive", "--listen=localhost"],
    {},
    /--listen must look like HOST:PORT/,
  ],
  [
    "a window beyond the limit",
    ["relay", "--window=999999999", "--url=ws://h:1/", `--token=${TOKEN}`, "--", "true"],
    {},
    /--window is too large: 999999999; the most it can be is 16777216\./,
  ],
  [
    "an unknown backend",
    ["build", "--backend=mainframe", "--", "true"],
    {},
    /Unknown backend "mainframe"/,
  ],
  [
    "a stray argument",
    ["build", "make"],
    {},
    /Unexpected argument "make": put the build command after "--"\./,
  ],
  [
    "a connect timeout of 2^31 ms, which no timer can wait",
    ["receive", "--connect-timeout=2147483648"],
    {},
    /^phonehome: --connect-timeout is too large: 2147483648; the most it can be is 2147483647 ms/,
  ],
  [
    "a drain grace of 2^31 ms",
    ["build", "--drain-grace=2147483648", "--", "true"],
    {},
    /--drain-grace is too large: 2147483648; the most it can be is 2147483647 ms/,
  ],
  [
    "an idle interval of 2^31 ms from the environment",
    ["receive"],
    { SESSION_IDLE_INTERVAL: "2147483648" },
    /SESSION_IDLE_INTERVAL \(from the environment\) is too large: 2147483648/,
  ],
  [
    "a relay's drain grace of 2^31 ms",
    ["relay", "--drain-grace=2147483648", "--url=ws://h:1/", `--token=${TOKEN}`, "--", "true"],
    {},
    /--drain-grace is too large/,
  ],
  [
    "a number beyond the safe integers",
    ["receive", "--connect-timeout=99999999999999999999"],
    {},
    /--connect-timeout is too large: 99999999999999999999; the most it can be is 2147483647 ms/,
  ],
  [
    "a listen host that does not resolve",
    ["receive", "--listen=256.1.1.1:0"],
    {},
    /^phonehome: Cannot listen on 256\.1\.1\.1:0: "256\.1\.1\.1" is not an address of this machine, nor a name that resolves to one; check --listen\.\n$/,
  ],
  [
    "a build's listen host that does not resolve",
    ["build", "--", "true"],
    { PHONEHOME_LISTEN: "256.1.1.1:0" },
    /Cannot listen on 256\.1\.1\.1:0: .*check PHONEHOME_LISTEN \(from the environment\)\./,
  ],
  [
    "an advertised host with a space in it",
    ["build", "--advertise-host=bad host", "--", "true"],
    {},
    /^phonehome: --advertise-host must be a host name or IP address for the relay to dial, not "bad host"\.\n$/,
  ],
  [
    "an advertised host from the environment that no URL can hold",
    ["receive"],
    { POD_IP: "10.0.0.7/24" },
    /POD_IP \(from the environment\) must be a host name or IP address/,
  ],
  ...(["receive", "build", "relay"] as const).flatMap((
    command,
  ): Array<[string, string[], Record<string, string>, RegExp]> => {
    const tail = command === "receive" ? [] : ["--", "true"];
    const url = command === "relay" ? ["--url=ws://127.0.0.1:1/"] : [];
    return [
      [
        `an empty --token for ${command}`,
        [command, ...url, "--token", "", ...tail],
        {},
        /^phonehome: --token is empty: a secret needs at least 16 bytes; /,
      ],
      [
        `a ${MIN_TOKEN_BYTES - 1}-byte --token for ${command}`,
        [command, ...url, `--token=${SHORT_TOKEN}`, ...tail],
        {},
        /^phonehome: --token is only 15 bytes long: a secret needs at least 16 bytes; /,
      ],
      [
        `a ${MIN_TOKEN_BYTES - 1}-byte PHONEHOME_TOKEN for ${command}`,
        [command, ...url, ...tail],
        { PHONEHOME_TOKEN: SHORT_TOKEN },
        /^phonehome: PHONEHOME_TOKEN \(from the environment\) is only 15 bytes long/,
      ],
    ];
  }),
];
for (const [what, args, env, message] of usageErrors) {
  Deno.test(`${what} is a one-line usage error with status 64`, async () => {
    const result = await run(args, env);
    assert.equal(result.code, 64, result.stderr);
    assert.equal(result.stdout, "");
    assert.match(result.stderr, message);
    assert.equal(result.stderr.split("\n").length, 2, `one line: ${JSON.stringify(result.stderr)}`);
  });
}

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

Deno.test("docs/configuration.md is what the flag declarations say (deno task docs rewrites it)", async () => {
  const path = fileURLToPath(new URL(`../${CONFIGURATION_DOC_PATH}`, import.meta.url));
  const rendered = renderConfigurationDoc([...BUILDER_COMMANDS, ...POD_COMMANDS]);
  // The file is formatted by deno fmt, which pads the table's columns: compare the cells.
  const cells = (text: string): string[][] =>
    text.split("\n").filter((line) => line.startsWith("|") && !/^\|[- |]+\|$/.test(line))
      .map((line) => line.split(/(?<!\\)\|/).map((c) => c.trim()));
  const onDisk = await Deno.readTextFile(path);
  assert.deepEqual(cells(onDisk), cells(rendered), "run 'deno task docs'");
  for (const { spec } of [...BUILDER_COMMANDS, ...POD_COMMANDS]) {
    for (const name of Object.keys(spec.flags)) {
      assert.ok(onDisk.includes(`\`--${name}`), `--${name} of ${spec.name} is documented`);
    }
  }
});

Deno.test("the shell examples of the README and docs/ need only what 'Try it' installed: npx, not deno or phonehome", () => {
  const root = new URL("../", import.meta.url);
  const pages = [
    "README.md",
    ...[...Deno.readDirSync(new URL("docs/", root))].map((entry) => `docs/${entry.name}`),
  ];
  const lines = pages.flatMap((page) => {
    const text = Deno.readTextFileSync(new URL(page, root));
    return [...text.matchAll(/^```sh\n([\s\S]*?)^```$/gm)]
      .flatMap((match) => match[1].split("\n").map((line) => `${page}: ${line}`));
  });
  assert.ok(lines.length > 10, "the examples were found");
  // A command (after any VAR=value settings) must not be one that "Try it" leaves off PATH.
  const offPath = lines.filter((line) =>
    /^\S+: \s*(?:[A-Z_]+=\S+\s+)*(?:deno|phonehome|phonehome-builder|phonehome-relay)\s/.test(line)
  );
  assert.deepEqual(offPath, []);
});

Deno.test("the phonehome task runs the command line from the checkout, as the README shows", async () => {
  const result = await new Deno.Command(DENO, {
    args: ["task", "-q", `--config=${CONFIG}`, "phonehome", "build", "--idle-interval=0", "--"]
      .concat(["sh", "-c", "echo from the task; exit 6"]),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(result.code, 6, new TextDecoder().decode(result.stderr));
  assert.equal(new TextDecoder().decode(result.stdout), "from the task\n");
});

Deno.test("a listen address already in use is a usage error naming it", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  try {
    const result = await run(["receive", `--listen=127.0.0.1:${port}`]);
    assert.equal(result.code, 64);
    assert.match(result.stderr, new RegExp(`Cannot listen on 127\\.0\\.0\\.1:${port}`));
  } finally {
    listener.close();
  }
});

/** Whether Deno's download host answers, from inside a test: never at module load. */
async function compileHostReachable(): Promise<boolean> {
  try {
    const response = await fetch("https://dl.deno.land/", {
      method: "HEAD",
      signal: AbortSignal.timeout(5000),
    });
    await response.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

Deno.test("deno task compile", async (t) => {
  const reachable = await compileHostReachable();
  await t.step({
    name: "the compiled binaries run a build, one per side" +
      (reachable ? "" : " (skipped: deno compile cannot download its base binary from " +
        "dl.deno.land here, as on the project's CI)"),
    ignore: !reachable,
    async fn(): Promise<void> {
      await using dir = await tempDir();
      const compiled = await new Deno.Command(DENO, {
        args: ["task", `--config=${CONFIG}`, "compile", dir.path],
      }).output();
      assert.equal(compiled.code, 0);
      const result = await new Deno.Command(`${dir.path}/phonehome-builder`, {
        args: ["build", "--idle-interval=0", "--", "sh", "-c", "echo compiled; exit 9"],
      }).output();
      assert.equal(result.code, 9);
      assert.equal(new TextDecoder().decode(result.stdout), "compiled\n");
    },
  });
  await t.step({
    name: "explains in one line why it cannot fetch its base binary" +
      (reachable ? " (skipped: dl.deno.land is reachable here)" : ""),
    ignore: reachable,
    async fn(): Promise<void> {
      await using dir = await tempDir();
      const result = await new Deno.Command(DENO, {
        args: ["task", `--config=${CONFIG}`, "compile", dir.path],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(result.stderr).replace(/^.*Task.*\n/m, "");
      assert.equal(result.code, 69);
      assert.match(
        stderr,
        /^compile: deno compile could not download its base binary \(https:\/\/\S+denort\S+\)/,
      );
      assert.equal(stderr.trim().split("\n").length, 1);
    },
  });
});
