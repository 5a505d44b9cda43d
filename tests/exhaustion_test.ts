/**
 * Attempts to exhaust the receiver: memory, by a holder of the secret (huge
 * messages before hello, endless 1-byte frames, pings whose answers are
 * never read), and descriptors and the user's terminal, by anybody (idle
 * sockets by the hundred, hostile headers). The receiver stays within its
 * bounds, tells the user in a few lines, and the real build comes through.
 */

import assert from "node:assert/strict";
import { encodeControl, encodeDataFrame, PROTOCOL_VERSION } from "../src/protocol/mod.ts";
import { clientFrame, connect, rawUpgrade, requestStatus, writeAll } from "./support/raw_client.ts";
import {
  CONFIG,
  DENO,
  digestStream,
  MAIN,
  peakRssBytes,
  readText,
  sha256,
  spawnPhonehome,
  tempDir,
  waitForFile,
} from "./support/processes.ts";

const TOKEN = "exhaustion-test-secret";
const MiB = 1024 * 1024;

/** The receiver's memory bound under attack: peak RSS, the shared Deno executable included. */
const PEAK_RSS_BOUND_BYTES = 120 * MiB;

interface Running {
  receiver: Deno.ChildProcess;
  url: string;
  stdout: ReturnType<typeof digestStream>;
  stderr: Promise<string>;
}

async function receive(dir: string, argv?: string[]): Promise<Running> {
  const args = ["receive", "--listen=127.0.0.1:0", `--url-file=${dir}/url`, "--idle-interval=0"];
  const receiver = argv === undefined
    ? spawnPhonehome(args, { env: { PHONEHOME_TOKEN: TOKEN } })
    : new Deno.Command(argv[0], {
      args: [...argv.slice(1), ...args],
      env: { PHONEHOME_TOKEN: TOKEN },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  const stdout = digestStream(receiver.stdout);
  const stderr = readText(receiver.stderr);
  const url = (await waitForFile(`${dir}/url`)).trim();
  return { receiver, url, stdout, stderr };
}

function hello(relay: string): string {
  return encodeControl({
    type: "hello",
    versions: [PROTOCOL_VERSION],
    relay,
    attempt: 1,
    window: 65536,
  });
}

/** Sends one huge binary message before hello; resolves with how the receiver closed. */
function hugeBeforeHello(url: string, bytes: number): Promise<CloseEvent> {
  const socket = new WebSocket(url, { headers: { authorization: `Bearer ${TOKEN}` } });
  socket.onopen = () => socket.send(new Uint8Array(bytes));
  return new Promise((resolve) => (socket.onclose = resolve));
}

/**
 * Follows the peak RSS (VmHWM) of `pid` every 20 ms until stopped: a process
 * that exits on its own cannot be asked afterwards.
 */
function followPeak(pid: number): { stop: () => number } {
  let peak = peakRssBytes(pid) ?? Infinity;
  const timer = setInterval(() => (peak = peakRssBytes(pid) ?? peak), 20);
  return {
    stop: () => {
      clearInterval(timer);
      return peakRssBytes(pid) ?? peak;
    },
  };
}

/** WebSocket pings, and protocol pings, back to back: `count` of each. */
function pingBurst(count: number): Uint8Array {
  const ping = clientFrame(0x9, new Uint8Array(125));
  const text = clientFrame(0x1, new TextEncoder().encode(encodeControl({ type: "ping" })));
  const burst = new Uint8Array((ping.byteLength + text.byteLength) * count);
  for (let i = 0, at = 0; i < count; i++) {
    burst.set(ping, at);
    burst.set(text, at + ping.byteLength);
    at += ping.byteLength + text.byteLength;
  }
  return burst;
}

/** Pings before hello without ever reading; resolves with how many bytes it sent before being dropped. */
async function pingBeforeHello(url: string): Promise<number> {
  const conn = await rawUpgrade(url, TOKEN);
  const burst = pingBurst(512);
  let sent = 0;
  try {
    // The receiver closes a peer that pings instead of saying hello: then writing fails.
    while (sent < 1024 * MiB) {
      await writeAll(conn, burst);
      sent += burst.byteLength;
    }
  } catch {
    return sent;
  } finally {
    try {
      conn.close();
    } catch {
      // Closed by the receiver.
    }
  }
  return Infinity;
}

Deno.test("floods by a holder of the secret leave the receiver within its memory bound", async (t) => {
  await t.step(
    "huge messages and pings before hello, while a real build streams",
    async () => {
      await using dir = await tempDir();
      const { receiver, url, stdout, stderr } = await receive(dir.path);
      const chunk = "a".repeat(MiB);
      const relay = spawnPhonehome(
        [
          "relay",
          "--no-tee",
          "--",
          "sh",
          "-c",
          `for i in $(seq 1 40); do head -c ${MiB} /dev/zero | tr '\\0' a; sleep 0.05; done`,
        ],
        { env: { PHONEHOME_URL: url, PHONEHOME_TOKEN: TOKEN }, stdout: "null" },
      );
      const relayErr = readText(relay.stderr);
      const [closes, dropped] = await Promise.all([
        Promise.all(Array.from({ length: 4 }, () => hugeBeforeHello(url, 60 * MiB))),
        Promise.all(Array.from({ length: 2 }, () => pingBeforeHello(url))),
      ]);
      for (const close of closes) {
        assert.equal(close.code, 4002);
        assert.match(close.reason, /over the 4096-byte limit before hello/);
      }
      for (const sent of dropped) {
        assert.ok(
          Number.isFinite(sent),
          "a peer that pings instead of saying hello is dropped",
        );
      }
      const peak = peakRssBytes(receiver.pid) ?? Infinity;
      const [relayStatus, status, output] = await Promise.all([
        relay.status,
        receiver.status,
        stdout,
      ]);
      const log = await stderr;
      assert.equal(relayStatus.code, 0, await relayErr);
      assert.equal(status.code, 0, log);
      assert.equal(output.sha256, sha256(chunk.repeat(40)));
      assert.ok(peak < PEAK_RSS_BOUND_BYTES, `receiver peak RSS ${(peak / MiB).toFixed(0)} MiB`);
      assert.match(log, /More than 4 pings before hello\.|A ping message arrived before hello\./);
    },
  );

  await t.step("the stream's owner pings and never reads the answers", async () => {
    await using dir = await tempDir();
    const { receiver, url, stdout, stderr } = await receive(dir.path);
    const conn = await rawUpgrade(url, TOKEN);
    await writeAll(conn, clientFrame(0x1, new TextEncoder().encode(hello("pinger"))));
    const burst = pingBurst(4096);
    let sent = 0;
    while (sent < 256 * MiB) {
      await writeAll(conn, burst);
      sent += burst.byteLength;
    }
    const peak = peakRssBytes(receiver.pid) ?? Infinity;
    // One pong answers every ping not yet answered, and a protocol pong waits behind nothing:
    // what the receiver queued for this peer is a sliver of what it was sent.
    await writeAll(conn, clientFrame(0x8, Uint8Array.of(0x03, 0xe8)));
    let received = 0;
    const buffer = new Uint8Array(64 * 1024);
    for (let read = await conn.read(buffer); read !== null; read = await conn.read(buffer)) {
      received += read;
    }
    conn.close();
    receiver.kill("SIGTERM");
    const [status, , log] = await Promise.all([receiver.status, stdout, stderr]);
    assert.equal(status.code, 143, log);
    assert.ok(received < sent / 16, `${received} bytes of answers to ${sent} bytes of pings`);
    assert.ok(peak < PEAK_RSS_BOUND_BYTES, `receiver peak RSS ${(peak / MiB).toFixed(0)} MiB`);
  });

  await t.step("endless 1-byte frames from the stream's owner", async () => {
    await using dir = await tempDir();
    const { receiver, url, stdout, stderr } = await receive(dir.path);
    const peakRss = followPeak(receiver.pid);
    const socket = new WebSocket(url, { headers: { authorization: `Bearer ${TOKEN}` } });
    const closed = new Promise<CloseEvent>((resolve) => (socket.onclose = resolve));
    socket.onopen = () => socket.send(hello("flooder"));
    socket.onmessage = (event) => {
      if (!String(event.data).includes("welcome")) return;
      let offset = 0;
      const flood = (): void => {
        if (socket.readyState !== WebSocket.OPEN) return;
        // Paced by what the client has buffered, so the client's own memory stays small.
        while (socket.bufferedAmount < MiB) {
          socket.send(encodeDataFrame("stdout", offset++, Uint8Array.of(0x61)));
        }
        setTimeout(flood, 0);
      };
      flood();
    };
    await closed;
    // The owner broke the protocol: the stream ends at once, not after a reconnect grace. The
    // flooder may see its close frame or, flooding on, a reset: the receiver's log says which rule.
    const [status, , log] = await Promise.all([receiver.status, stdout, stderr]);
    const peak = peakRss.stop();
    assert.match(
      log,
      /Closed the connection from [\d.:]+: The relay sent \d+ unacknowledged frames/,
    );
    assert.equal(status.code, 76, log);
    assert.ok(peak < PEAK_RSS_BOUND_BYTES, `receiver peak RSS ${(peak / MiB).toFixed(0)} MiB`);
  });
});

Deno.test("hundreds of idle sockets neither crash the receiver nor keep the relay out", async () => {
  await using dir = await tempDir();
  // A descriptor limit low enough for the sockets below to exceed it many times over.
  const { receiver, url, stdout, stderr } = await receive(dir.path, [
    "sh",
    "-c",
    `ulimit -n 64 && exec "$0" "$@"`,
    DENO,
    "run",
    "-A",
    "--quiet",
    `--config=${CONFIG}`,
    MAIN,
  ]);
  const idle: Deno.Conn[] = [];
  for (let i = 0; i < 300; i++) {
    const conn = await connect(url);
    // Half a request head, never finished.
    await writeAll(conn, "GET /phonehome/stream HTTP/1.1\r\nHost: x\r\n").catch(() => {});
    idle.push(conn);
  }
  const relay = spawnPhonehome(["relay", "--no-tee", "--", "sh", "-c", "echo intact"], {
    env: { PHONEHOME_URL: url, PHONEHOME_TOKEN: TOKEN },
    stdout: "null",
  });
  const [relayStatus, status, output, log] = await Promise.all([
    relay.status,
    receiver.status,
    stdout,
    stderr,
    readText(relay.stderr),
  ]);
  for (const conn of idle) {
    try {
      conn.close();
    } catch {
      // Closed by the receiver.
    }
  }
  assert.equal(status.code, 0, log);
  assert.equal(relayStatus.code, 0);
  assert.equal(output.sha256, sha256("intact\n"));
  assert.match(log, /connections are open already|was not complete within/);
  assert.ok(log.split("\n").length < 20, `the refusals took ${log.split("\n").length} lines`);
});

Deno.test("a hostile Host header gets 400 and nothing a client sent reaches the terminal", async () => {
  await using dir = await tempDir();
  const { receiver, url, stdout, stderr } = await receive(dir.path);
  const statuses = await Promise.all(Array.from({ length: 200 }, () =>
    requestStatus(
      url,
      "GET /phonehome/stream HTTP/1.1\r\nHost: -----> Build succeeded! 0\r\n" +
        "Upgrade: websocket\r\n\r\n",
    )));
  assert.deepEqual([...new Set(statuses)], [400]);
  receiver.kill("SIGTERM");
  await Promise.all([receiver.status, stdout]);
  const log = await stderr;
  assert.doesNotMatch(log, /Build succeeded/);
  const refusals = log.split("\n").filter((line) => line.startsWith("phonehome: Refused"));
  assert.ok(refusals.length <= 6, `${refusals.length} lines of refusals:\n${log}`);
  assert.match(log, /Refused a connection from 127\.0\.0\.1:\d+: Bad request: the Host header/);
});
