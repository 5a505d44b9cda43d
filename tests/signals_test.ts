/**
 * A build killed by a signal is reported as a shell reports it, 128+N, with
 * the signal's name, for the classic signals and the real-time ones alike.
 */

import assert from "node:assert/strict";
import { signalName } from "../src/exit_codes.ts";
import { readText, spawnPhonehome } from "./support/processes.ts";

/** Signals whose default action ends a process, classic and real-time (34-64). */
const SIGNALS = [1, 2, 3, 6, 9, 15, 16, 31, 34, 35, 48, 49, 50, 63, 64];

Deno.test("a build killed by any signal from 1 to 64 ends with 128+N", async (t) => {
  for (const n of SIGNALS) {
    await t.step(`signal ${n} (${signalName(n)})`, async () => {
      const child = spawnPhonehome(
        ["build", "--idle-interval=0", "--verbose", "--", "sh", "-c", `kill -${n} $$`],
      );
      const [stdout, stderr, status] = await Promise.all([
        readText(child.stdout),
        readText(child.stderr),
        child.status,
      ]);
      assert.equal(status.code, 128 + n, stderr);
      assert.equal(stdout, "");
      assert.doesNotMatch(stderr, /Internal error|Invalid signal/);
    });
  }
});

Deno.test("signal names follow kill -l, real-time ones counted from SIGRTMIN or SIGRTMAX", () => {
  assert.deepEqual(
    [1, 15, 16, 31, 32, 34, 35, 49, 50, 63, 64].map(signalName),
    [
      "SIGHUP",
      "SIGTERM",
      "SIGSTKFLT",
      "SIGSYS",
      "SIG32",
      "SIGRTMIN",
      "SIGRTMIN+1",
      "SIGRTMIN+15",
      "SIGRTMAX-14",
      "SIGRTMAX-1",
      "SIGRTMAX",
    ],
  );
});
