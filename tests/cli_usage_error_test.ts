/**
 * Usage errors of the command line: each is one line on stderr with status 64
 * and nothing on stdout, from unknown commands and flags to malformed,
 * missing or too large values (flags and environment alike), secrets too
 * short, and listen addresses that do not resolve or are already in use.
 */

import assert from "node:assert/strict";
import { MIN_TOKEN_BYTES } from "../src/protocol/mod.ts";
import { ALL_SPECS, run, TOKEN } from "./support/command_line.ts";

/** A secret one byte too short. */
const SHORT_TOKEN = "x".repeat(MIN_TOKEN_BYTES - 1);

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
