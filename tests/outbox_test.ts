/**
 * The relay's window: it blocks when full, frees on acknowledgement, and
 * resends exactly the unacknowledged bytes after a reconnect.
 */

import assert from "node:assert/strict";
import {
  decodeDataFrame,
  encodeDataFrame,
  MAX_UNACKNOWLEDGED_FRAMES,
  MAX_WINDOW_BYTES,
  ProtocolError,
  type StreamName,
} from "../src/protocol/mod.ts";
import { Outbox } from "../src/relay/outbox.ts";

function push(outbox: Outbox, stream: StreamName, offset: number, text: string): void {
  outbox.push({
    stream,
    offset,
    bytes: encodeDataFrame(stream, offset, new TextEncoder().encode(text)),
  });
}

function isPending(promise: Promise<void>): Promise<boolean> {
  let settled = false;
  promise.then(() => (settled = true));
  // Two turns of the microtask queue let an already-resolved promise report itself.
  return Promise.resolve().then(() => Promise.resolve()).then(() => !settled);
}

Deno.test("the window blocks the reader when full and reopens on acknowledgement", async () => {
  const outbox = new Outbox(10);
  push(outbox, "stdout", 0, "0123456789");
  const room = outbox.waitForRoom();
  assert.equal(await isPending(room), true);
  outbox.acknowledge({ stdout: 4, stderr: 0 });
  assert.equal(await isPending(room), false);
  assert.equal(outbox.unacknowledgedBytes, 6);
});

Deno.test("resume resends only what the receiver lacks, cut at its offset, in read order", () => {
  const outbox = new Outbox(1000);
  push(outbox, "stdout", 0, "hello ");
  push(outbox, "stderr", 0, "warn ");
  push(outbox, "stdout", 6, "world");
  outbox.takeUnsent();
  outbox.resume({ stdout: 3, stderr: 5 });
  const resent = outbox.takeUnsent().map((frame) => {
    const decoded = decodeDataFrame(frame.bytes);
    return `${decoded.stream}@${decoded.offset}:${new TextDecoder().decode(decoded.payload)}`;
  });
  assert.deepEqual(resent, ["stdout@3:lo ", "stdout@6:world"]);
});

Deno.test("an acknowledgement that goes backwards or beyond what was sent is refused", () => {
  const outbox = new Outbox(1000);
  push(outbox, "stdout", 0, "abc");
  outbox.acknowledge({ stdout: 2, stderr: 0 });
  assert.throws(() => outbox.acknowledge({ stdout: 1, stderr: 0 }), ProtocolError);
  assert.throws(() => outbox.acknowledge({ stdout: 4, stderr: 0 }), ProtocolError);
});

Deno.test("abandoning the outbox releases a blocked reader and keeps nothing", async () => {
  const outbox = new Outbox(3);
  push(outbox, "stdout", 0, "abcdef");
  const room = outbox.waitForRoom();
  outbox.abandon();
  assert.equal(await isPending(room), false);
  push(outbox, "stdout", 6, "more");
  assert.deepEqual(outbox.takeUnsent(), []);
});

Deno.test("after a resume, an acknowledgement of bytes sent on the earlier connection is accepted", () => {
  const outbox = new Outbox(1000);
  push(outbox, "stdout", 0, "0123456789");
  outbox.takeUnsent();
  // The receiver had written 2 bytes when it welcomed the new connection, and 8 more were on
  // their way from the old one: acknowledging them covers nothing sent on the new connection.
  outbox.resume({ stdout: 2, stderr: 0 });
  outbox.acknowledge({ stdout: 10, stderr: 0 });
  assert.equal(outbox.unacknowledgedBytes, 0);
});

Deno.test("the window also closes at 4096 unacknowledged frames, however small", () => {
  const outbox = new Outbox(MAX_WINDOW_BYTES);
  for (let i = 0; i < MAX_UNACKNOWLEDGED_FRAMES; i++) push(outbox, "stdout", i, "x");
  assert.equal(outbox.hasRoom, false);
  outbox.acknowledge({ stdout: 1, stderr: 0 });
  assert.equal(outbox.hasRoom, true);
});
