/**
 * The build's output pipes: the relay enlarges them, so that a build that
 * writes fast waits less and the relay reads a whole frame at a time.
 */

import assert from "node:assert/strict";
import { enlargePipes, PIPE_CAPACITY_BYTES } from "../src/relay/pipe_size.ts";
import { denoScript, fixture, readText, spawnPhonehome } from "./support/processes.ts";

/** Asks the fixture for its pipes' sizes and reads its answer. */
async function pipeSizes(
  writer: WritableStreamDefaultWriter<Uint8Array>,
  reader: ReadableStreamDefaultReader<string>,
): Promise<number[]> {
  await writer.write(new TextEncoder().encode("?\n"));
  const { value } = await reader.read();
  return (value ?? "").trim().split(" ").map(Number);
}

Deno.test("the relay gives the build's stdout and stderr pipes 256 KiB, four times Linux's default", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", fixture("pipe_sizes.ts")],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    // Linux's default is 64 KiB; less where the user's pipe budget is spent.
    const before = await pipeSizes(writer, reader);
    assert.ok(before.every((size) => size > 0 && size < PIPE_CAPACITY_BYTES), `${before}`);
    assert.equal(enlargePipes(child.pid, [1, 2]), 2);
    assert.deepEqual(await pipeSizes(writer, reader), [PIPE_CAPACITY_BYTES, PIPE_CAPACITY_BYTES]);
    assert.equal(PIPE_CAPACITY_BYTES, 256 * 1024);
  } finally {
    await writer.close();
    await reader.cancel();
    await child.stderr.cancel();
    await child.status;
  }
});

Deno.test("enlarging the pipes of a process that has gone changes nothing and does not throw", async () => {
  const child = new Deno.Command("true", { stdout: "piped", stderr: "piped" }).spawn();
  await child.status;
  assert.equal(enlargePipes(child.pid, [1, 2]), 0);
  await child.stdout.cancel();
  await child.stderr.cancel();
});

Deno.test("a build run by the relay writes into pipes of 256 KiB", async () => {
  const child = spawnPhonehome([
    "build",
    "--idle-interval=0",
    "--no-merge",
    "--",
    ...denoScript("pipe_sizes.ts", `--await=${PIPE_CAPACITY_BYTES}`),
  ]);
  const [stdout, stderr, status] = await Promise.all([
    readText(child.stdout),
    readText(child.stderr),
    child.status,
  ]);
  assert.equal(status.code, 0, stderr);
  assert.equal(stdout, `${PIPE_CAPACITY_BYTES} ${PIPE_CAPACITY_BYTES}\n`);
});
