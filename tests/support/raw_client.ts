/**
 * Test support: a client at the TCP level, for what a well-behaved WebSocket
 * client never does: half-sent requests, hostile headers, huge or endless
 * frames, and a peer that sends without ever reading.
 *
 * @module
 */

import { STREAM_PATH } from "../../src/protocol/mod.ts";

/** Opens a TCP connection to the receiver behind `url`. */
export function connect(url: string): Promise<Deno.TcpConn> {
  const { hostname, port } = new URL(url);
  return Deno.connect({ hostname, port: Number(port) });
}

/** Writes all of `bytes`, or fails when the peer has gone. */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array | string): Promise<void> {
  const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  let done = 0;
  while (done < data.byteLength) done += await conn.write(data.subarray(done));
}

/** Reads until the peer closes (or resets); returns what arrived as text. */
export async function readToEnd(conn: Deno.Conn): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(4096);
  while (true) {
    let read: number | null;
    try {
      read = await conn.read(buffer);
    } catch {
      break;
    }
    if (read === null) break;
    chunks.push(buffer.slice(0, read));
  }
  return new TextDecoder().decode(new Uint8Array(chunks.flatMap((chunk) => [...chunk])));
}

/** Sends one request head and returns the status the receiver answered with (0 for none). */
export async function requestStatus(url: string, head: string): Promise<number> {
  const conn = await connect(url);
  try {
    await writeAll(conn, head);
    const answer = await readToEnd(conn);
    return Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
  } finally {
    try {
      conn.close();
    } catch {
      // Closed by the peer.
    }
  }
}

/** The head of a valid upgrade request, with `token` as the bearer secret. */
export function upgradeHead(token: string, extraHeaders = ""): string {
  return `GET ${STREAM_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n` +
    `Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n` +
    `Sec-WebSocket-Version: 13\r\nAuthorization: Bearer ${token}\r\n${extraHeaders}\r\n`;
}

/** One masked client frame (RFC 6455), FIN set. */
export function clientFrame(opcode: number, payload: Uint8Array | string): Uint8Array {
  const data = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  const length = data.byteLength;
  const headerBytes = (length < 126 ? 2 : length < 65536 ? 4 : 10) + 4;
  const frame = new Uint8Array(headerBytes + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) {
    frame[1] = 0x80 | length;
  } else if (length < 65536) {
    frame[1] = 0x80 | 126;
    new DataView(frame.buffer).setUint16(2, length);
  } else {
    frame[1] = 0x80 | 127;
    new DataView(frame.buffer).setBigUint64(2, BigInt(length));
  }
  // A zero mask leaves the payload as it is, which is all a test needs.
  frame.set(data, headerBytes);
  return frame;
}

/**
 * Opens an upgraded connection that the test then drives frame by frame and
 * never reads from: returns once the 101 has been sent (it is left unread).
 */
export async function rawUpgrade(url: string, token: string): Promise<Deno.TcpConn> {
  const conn = await connect(url);
  await writeAll(conn, upgradeHead(token));
  return conn;
}

/** A frame as a server sends it (unmasked). */
export interface ServerFrame {
  opcode: number;
  payload: Uint8Array;
}

/**
 * Reads the answer to an upgrade, then the server's frames one by one, for
 * as long as the caller keeps asking; ends when the connection does. Never
 * answers anything: a close frame is only reported.
 */
export async function* serverFrames(conn: Deno.Conn): AsyncGenerator<ServerFrame> {
  let pending = new Uint8Array();
  let inHead = true;
  const buffer = new Uint8Array(65536);
  while (true) {
    let read: number | null;
    try {
      read = await conn.read(buffer);
    } catch {
      return;
    }
    if (read === null) return;
    const joined = new Uint8Array(pending.byteLength + read);
    joined.set(pending);
    joined.set(buffer.subarray(0, read), pending.byteLength);
    pending = joined;
    if (inHead) {
      const end = new TextDecoder().decode(pending).indexOf("\r\n\r\n");
      if (end === -1) continue;
      pending = pending.slice(end + 4);
      inHead = false;
    }
    while (pending.byteLength >= 2) {
      let length = pending[1] & 0x7f;
      let at = 2;
      if (length === 126) {
        if (pending.byteLength < 4) break;
        length = (pending[2] << 8) | pending[3];
        at = 4;
      } else if (length === 127) {
        if (pending.byteLength < 10) break;
        length = Number(new DataView(pending.buffer, pending.byteOffset + 2, 8).getBigUint64(0));
        at = 10;
      }
      if (pending.byteLength < at + length) break;
      yield { opcode: pending[0] & 0x0f, payload: pending.slice(at, at + length) };
      pending = pending.slice(at + length);
    }
  }
}

/** The text of a server's text frame. */
export function frameText(frame: ServerFrame): string {
  return new TextDecoder().decode(frame.payload);
}
