/**
 * The command line: help for every command, one-line usage errors with status
 * 64, and the compile task.
 */

import assert from "node:assert/strict";
import { BUILDER_COMMANDS } from "../src/cli/builder_commands.ts";
import { POD_COMMANDS } from "../src/cli/pod_commands.ts";
import { CONFIG, DENO, readText, spawnPhonehome, tempDir } from "./support/processes.ts";

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
    for (const flag of spec.flags) {
      assert.ok(result.stdout.includes(`--${flag.name}`), `--${flag.name} is documented`);
      for (const variable of flag.env ?? []) {
        assert.ok(result.stdout.includes(variable), `${variable} is documented`);
      }
    }
  });
}

Deno.test("the overview lists every command", async () => {
  const result = await run(["--help"]);
  assert.equal(result.code, 0);
  for (const { name } of ALL_SPECS) {
    assert.match(result.stdout, new RegExp(`^  ${name} `, "m"));
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
    ["relay", "--url=ws://h:1/", "--token=t"],
    {},
    /No build command given/,
  ],
  [
    "a relay without a URL",
    ["relay", "--token=t", "--", "true"],
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
    ["relay", "--url=http://h:1/", "--token=t", "--", "true"],
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
    ["relay", "--window=999999999", "--url=ws://h:1/", "--token=t", "--", "true"],
    {},
    /--window must be at most/,
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

const compileHostReachable = await fetch("https://dl.deno.land/", {
  method: "HEAD",
  signal: AbortSignal.timeout(5000),
})
  .then(() => true, () => false);

Deno.test({
  name: "deno task compile explains in one line why it cannot fetch its base binary",
  ignore: compileHostReachable,
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

Deno.test({
  name: "the compiled binaries run a build, one per side (skipped where deno compile " +
    "cannot download its base binary, as on the project's CI)",
  ignore: !compileHostReachable,
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
