/**
 * Nagle's algorithm on the relay's connection: Deno's WebSocket client leaves
 * it on, and the relay turns it off once connected, so that a small DATA frame
 * never waits for the receiver's delayed acknowledgement of a pong.
 */

import assert from "node:assert/strict";
import { disableNagle } from "../src/relay/no_delay.ts";

const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const libc = Deno.dlopen("libc.so.6", {
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
});

/** TCP_NODELAY of each TCP socket this process holds (other sockets refuse the question). */
function noDelayBySocket(): Map<number, number> {
  const found = new Map<number, number>();
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    const fd = Number(entry.name);
    let link: string;
    try {
      link = Deno.readLinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (!link.startsWith("socket:")) continue;
    const value = new Int32Array(1);
    const length = new Uint32Array([4]);
    const status = libc.symbols.getsockopt(
      fd,
      IPPROTO_TCP,
      TCP_NODELAY,
      new Uint8Array(value.buffer),
      new Uint8Array(length.buffer),
    );
    if (status === 0) found.set(fd, value[0]);
  }
  return found;
}

Deno.test("the relay turns Nagle's algorithm off on the WebSocket Deno's client opened with it on", async () => {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onmessage = () => socket.send("pong");
    return response;
  });
  const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
  try {
    await new Promise((resolve, reject) => {
      client.onopen = resolve;
      client.onerror = reject;
    });
    const before = [...noDelayBySocket().values()];
    assert.ok(before.includes(0), `a socket with Nagle on, as Deno's client leaves it: ${before}`);
    assert.ok(disableNagle() >= 1);
    const after = [...noDelayBySocket().values()];
    assert.ok(after.length > 0 && after.every((value) => value !== 0), `${after}`);
  } finally {
    const closed = new Promise((resolve) => (client.onclose = resolve));
    client.close();
    await closed;
    await server.shutdown();
  }
});
