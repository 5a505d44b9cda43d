/**
 * Case 6: from `phonehome build` starting to the build's first byte arriving
 * at the reader, against Deno's own floor (a script that prints one byte),
 * since phonehome starts two Deno processes one after the other.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import type { BenchContext } from "./context.ts";
import { readOutput } from "./reader.ts";
import { cleanEnvironment, DENO, phonehomeBuildArgs } from "./routes.ts";
import { fixed, median } from "./stats.ts";

const FIRST_BYTE = fileURLToPath(new URL("./first_byte.ts", import.meta.url));

/** Milliseconds from spawning `args` to the first byte on its stdout. */
async function timeToFirstByte(
  context: BenchContext,
  args: string[],
  what: string,
): Promise<number> {
  const startedAt = performance.now();
  const child = new Deno.Command(DENO, {
    args,
    env: cleanEnvironment(),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const read = await readOutput(child.stdout);
  const status = await child.status;
  if (!status.success || read.bytes !== 1) {
    context.failures.push(
      `start-up, ${what}: status ${status.code}, ${read.bytes} bytes; ${(await stderr).trim()}`,
    );
  }
  await stderr;
  return read.firstByteAt - startedAt;
}

/** Case 6. */
export async function startupCase(context: BenchContext): Promise<void> {
  const runs = context.options.startupRuns;
  const phonehome: number[] = [];
  const deno: number[] = [];
  for (let i = 0; i < runs; i++) {
    deno.push(
      await timeToFirstByte(context, ["run", "-A", "--quiet", FIRST_BYTE], "Deno alone"),
    );
    phonehome.push(
      await timeToFirstByte(context, phonehomeBuildArgs(["printf", "x"]), "phonehome build"),
    );
  }
  const phonehomeMs = median(phonehome);
  const denoMs = median(deno);
  context.progress(
    `start-up: phonehome ${fixed(phonehomeMs, 0)} ms, Deno alone ${fixed(denoMs, 0)} ms`,
  );
  context.data.startup = { runs, phonehomeMs: phonehome, denoAloneMs: deno };
  context.rows.push({
    case: "6. Start-up",
    figure: "launch to first output byte, ms",
    phonehome: fixed(phonehomeMs, 0),
    baseline: `${fixed(denoMs, 0)} (one Deno process printing a byte)`,
    ratio: `${fixed(phonehomeMs / denoMs, 1)}x`,
    target: "",
    met: null,
    how: `median of ${runs} runs of \`phonehome build -- printf x\`; ` +
      `it starts two Deno processes in turn (builder, then relay)`,
  });
}
