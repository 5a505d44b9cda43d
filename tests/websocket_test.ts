/**
 * The receiver's own WebSocket server side (RFC 6455), piece by piece: frame
 * headers, unmasking, the request head, and one connection over real TCP.
 */

import assert from "node:assert/strict";
import {
  decodeClosePayload,
  encodeFrame,
  FrameHeader,
  Opcode,
  unmask,
  WebSocketError,
} from "../src/receiver/websocket/frames.ts";
import { acceptKey, parseRequestHead } from "../src/receiver/websocket/http_head.ts";
import { ServerSocket, type SocketClose } from "../src/receiver/websocket/server_socket.ts";

const encoder = new TextEncoder();

/** A masked client frame with a real, non-zero mask. */
function masked(opcode: number, payload: Uint8Array, fin = true): Uint8Array {
  const mask = Uint8Array.of(0x37, 0xfa, 0x21, 0x3d);
  const length = payload.byteLength;
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const frame = new Uint8Array(2 + lengthBytes + 4 + length);
  frame[0] = (fin ? 0x80 : 0) | opcode;
  frame[1] = 0x80 | (lengthBytes === 0 ? length : lengthBytes === 2 ? 126 : 127);
  const view = new DataView(frame.buffer);
  if (lengthBytes === 2) view.setUint16(2, length);
  if (lengthBytes === 8) view.setBigUint64(2, BigInt(length));
  frame.set(mask, 2 + lengthBytes);
  for (let i = 0; i < length; i++) frame[6 + lengthBytes + i] = payload[i] ^ mask[i % 4];
  return frame;
}

Deno.test("unmasking by words gives the same bytes as unmasking byte by byte, at any alignment", () => {
  const mask = 0x3d21fa37;
  const maskBytes = [0x37, 0xfa, 0x21, 0x3d];
  const source = crypto.getRandomValues(new Uint8Array(1031));
  for (const start of [0, 1, 2, 3, 5]) {
    for (const position of [0, 1, 2, 3, 6]) {
      const bytes = source.slice();
      const view = bytes.subarray(start, start + 1000);
      unmask(view, mask, position);
      for (let i = 0; i < 1000; i++) {
        assert.equal(view[i], source[start + i] ^ maskBytes[(position + i) % 4]);
      }
    }
  }
});

Deno.test("frame headers are read only when whole, and a client may not break the rules", () => {
  const frame = masked(Opcode.binary, new Uint8Array(70000));
  const header = new FrameHeader();
  for (let length = 0; length < 14; length++) {
    assert.equal(header.read(frame.subarray(0, length)), false, `${length} bytes`);
  }
  assert.equal(header.read(frame), true);
  assert.equal(header.length, 70000);
  assert.equal(header.headerBytes, 14);
  const shifted = new Uint8Array(frame.byteLength + 3);
  shifted.set(frame, 3);
  assert.equal(header.read(shifted, 3), true, "a header read where it starts, not at 0");
  assert.equal(header.length, 70000);
  const broken: Array<[string, Uint8Array]> = [
    ["RSV bits", Uint8Array.of(0xc2, 0x80, 0, 0, 0, 0)],
    ["an unknown opcode", Uint8Array.of(0x83, 0x80, 0, 0, 0, 0)],
    ["no mask", Uint8Array.of(0x82, 0x00)],
    ["a fragmented ping", Uint8Array.of(0x09, 0x80, 0, 0, 0, 0)],
    ["a long ping", Uint8Array.of(0x89, 0xfe, 0, 200, 0, 0, 0, 0)],
    ["a length past 2^53", Uint8Array.of(0x82, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)],
  ];
  for (const [what, bytes] of broken) {
    assert.throws(() => new FrameHeader().read(bytes), WebSocketError, what);
  }
  assert.throws(() => decodeClosePayload(Uint8Array.of(0x03, 0xee)), WebSocketError);
  assert.deepEqual(decodeClosePayload(Uint8Array.of(0x0f, 0xa2, 0x68, 0x69)), {
    code: 4002,
    reason: "hi",
  });
});

Deno.test("a request head is parsed strictly, and a hostile Host header is a bad request", () => {
  const head = parseRequestHead(encoder.encode(
    "GET /phonehome/stream?x=1 HTTP/1.1\r\nHost: 10.0.0.7:41234\r\n" +
      "Upgrade: websocket\r\nX-Twice: a\r\nx-twice: b\r\n\r\n",
  ));
  assert.equal(head.path, "/phonehome/stream");
  assert.equal(head.headers.get("upgrade"), "websocket");
  assert.equal(head.headers.get("x-twice"), "a, b");
  for (
    const bad of [
      "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
      "GET / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: -----> Build succeeded! 0\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\nX: a\u0000b\r\n\r\n",
    ]
  ) {
    assert.throws(() => parseRequestHead(encoder.encode(bad)), /./, JSON.stringify(bad));
  }
  // The example of RFC 6455 §1.3.
  assert.equal(acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
});

/** A server socket on one end of a real TCP connection, the raw client on the other. */
async function pair(maxMessageBytes = 1024): Promise<{
  client: Deno.TcpConn;
  messages: Array<string | Uint8Array>;
  tooLarge: Array<[number, number]>;
  closed: Promise<SocketClose>;
  socket: ServerSocket;
}> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({
    hostname: "127.0.0.1",
    port: (listener.addr as Deno.NetAddr).port,
  });
  const conn = await listener.accept();
  listener.close();
  const messages: Array<string | Uint8Array> = [];
  const tooLarge: Array<[number, number]> = [];
  let close!: (close: SocketClose) => void;
  const closed = new Promise<SocketClose>((resolve) => (close = resolve));
  const socket: ServerSocket = new ServerSocket({
    conn,
    leftover: new Uint8Array(),
    maxMessageBytes,
    maxUnsentBytes: 4096,
    closeTimeoutMs: 1000,
    onMessage: (message) => messages.push(message),
    onTooLarge: (length, limit) => {
      tooLarge.push([length, limit]);
      socket.close(4002, "Too large.");
    },
    onClose: close,
  });
  return { client, messages, tooLarge, closed, socket };
}

/** Reads from the client until `count` whole server frames arrived; returns their opcodes and payloads. */
async function serverFrames(client: Deno.Conn, count: number): Promise<Array<[number, number[]]>> {
  const frames: Array<[number, number[]]> = [];
  let pending = new Uint8Array();
  const buffer = new Uint8Array(4096);
  while (frames.length < count) {
    const read = await client.read(buffer);
    if (read === null) break;
    const joined = new Uint8Array(pending.byteLength + read);
    joined.set(pending);
    joined.set(buffer.subarray(0, read), pending.byteLength);
    pending = joined;
    while (pending.byteLength >= 2 && pending.byteLength >= 2 + (pending[1] & 0x7f)) {
      const length = pending[1] & 0x7f;
      frames.push([pending[0] & 0x0f, [...pending.subarray(2, 2 + length)]]);
      pending = pending.slice(2 + length);
    }
  }
  return frames;
}

Deno.test("one connection: fragments join, pings are answered, and a close is echoed", async () => {
  const { client, messages, closed } = await pair();
  await client.write(masked(Opcode.text, encoder.encode("hel"), false));
  await client.write(masked(Opcode.ping, encoder.encode("are you there")));
  await client.write(masked(Opcode.continuation, encoder.encode("lo")));
  await client.write(masked(Opcode.binary, Uint8Array.of(1, 2, 3)));
  await client.write(masked(Opcode.close, Uint8Array.of(0x03, 0xe8)));
  const frames = await serverFrames(client, 2);
  assert.deepEqual(frames, [
    [Opcode.pong, [...encoder.encode("are you there")]],
    [Opcode.close, [0x03, 0xe8]],
  ]);
  assert.deepEqual(await closed, { code: 1000, reason: "" });
  assert.deepEqual(messages, ["hello", Uint8Array.of(1, 2, 3)]);
  client.close();
});

Deno.test("a message over the limit is refused by its header, before its payload arrives", async () => {
  const { client, messages, tooLarge, closed } = await pair(1024);
  // The header announces a gigabyte; not one byte of it is ever sent.
  const header = masked(Opcode.binary, new Uint8Array(0)).slice(0, 2);
  header[1] = 0x80 | 127;
  const announce = new Uint8Array(14);
  announce.set(header);
  new DataView(announce.buffer).setBigUint64(2, 1n << 30n);
  await client.write(announce);
  const frames = await serverFrames(client, 1);
  assert.equal(frames[0][0], Opcode.close);
  assert.deepEqual(tooLarge, [[1 << 30, 1024]]);
  client.close();
  assert.equal((await closed).code, 1006);
  assert.deepEqual(messages, []);
});

Deno.test("a peer that never reads what it is sent is dropped once the queue is full", async () => {
  const { client, closed, socket } = await pair();
  for (let i = 0; i < 200 && socket.open; i++) socket.send("x".repeat(100));
  const close = await closed;
  assert.equal(close.code, 1006);
  assert.match(close.reason, /replies unread/);
  assert.ok(close.dropped);
  client.close();
});

Deno.test("encoded server frames carry the three length forms", () => {
  for (const length of [0, 125, 126, 65535, 65536]) {
    const frame = encodeFrame(Opcode.binary, new Uint8Array(length));
    const view = new DataView(frame.buffer);
    const announced = length < 126
      ? frame[1]
      : length < 65536
      ? view.getUint16(2)
      : Number(view.getBigUint64(2));
    assert.equal(announced, length);
    assert.equal(frame[1] & 0x80, 0, "server frames are not masked");
  }
});
