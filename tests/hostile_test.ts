/**
 * Hostile and broken input thrown at a receiver while a real build streams
 * through it: every attempt gets a clear HTTP status or close code, the
 * receiver never crashes, never logs the secret, and the real build's output
 * arrives unchanged.
 */

import assert from "node:assert/strict";
import { encodeControl, PROTOCOL_VERSION } from "../src/protocol/mod.ts";
import { seededRandom } from "./support/fault_proxy.ts";
import {
  digestStream,
  LineWatcher,
  sha256,
  spawnPhonehome,
  tempDir,
  waitForFile,
} from "./support/processes.ts";

const TOKEN = "hostile-suite-secret-value";

/** Opens an authenticated WebSocket, runs `script` once open, and resolves with how it was closed. */
function attack(
  url: string,
  script: (socket: WebSocket) => void,
  token = TOKEN,
): Promise<CloseEvent> {
  const socket = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
  socket.binaryType = "arraybuffer";
  socket.onopen = () => script(socket);
  return new Promise((resolve) => (socket.onclose = resolve));
}

async function status(url: string, headers: Record<string, string>): Promise<number> {
  const response = await fetch(url.replace(/^ws:/, "http:"), {
    headers: {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
      ...headers,
    },
  });
  await response.body?.cancel();
  return response.status;
}

function hello(relay: string, versions = [PROTOCOL_VERSION]): string {
  return encodeControl({ type: "hello", versions, relay, attempt: 1, window: 65536 });
}

Deno.test("hostile connections change nothing in a real build's stream", async (t) => {
  await using dir = await tempDir();
  const gate = `${dir.path}/gate`;
  await new Deno.Command("mkfifo", { args: [gate] }).output();
  const receiver = spawnPhonehome(
    ["receive", "--listen=127.0.0.1:0", `--url-file=${dir.path}/url`, "--idle-interval=0"],
    { env: { PHONEHOME_TOKEN: TOKEN } },
  );
  const stdoutWatcher = new LineWatcher(receiver.stdout);
  const receiverErr = new LineWatcher(receiver.stderr);
  const url = (await waitForFile(`${dir.path}/url`)).trim();
  const { hostname, port } = new URL(url);
  const size = 3 * 1024 * 1024;
  const relay = spawnPhonehome([
    "relay",
    "--no-tee",
    "--",
    "sh",
    "-c",
    `echo started; read go < ${gate}; head -c ${size} /dev/zero | tr '\\0' z`,
  ], { env: { PHONEHOME_URL: url, PHONEHOME_TOKEN: TOKEN }, stdout: "null" });
  const relayErr = new LineWatcher(relay.stderr);
  await stdoutWatcher.waitFor(/^started$/);

  await t.step("no secret and a wrong secret get 401", async () => {
    assert.equal(await status(url, {}), 401);
    assert.equal(await status(url, { authorization: "Bearer guess" }), 401);
  });

  await t.step("another protocol version is closed with 4001", async () => {
    const close = await attack(url, (s) => s.send(hello("other", [PROTOCOL_VERSION + 1])));
    assert.equal(close.code, 4001);
  });

  await t.step("a binary frame before hello is closed with 4002", async () => {
    const close = await attack(
      url,
      (s) => s.send(new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 65])),
    );
    assert.equal(close.code, 4002);
    assert.match(close.reason, /DATA arrived before hello/);
  });

  await t.step("a text frame that is not a control message is closed with 4002", async () => {
    const close = await attack(url, (s) => s.send("\u0000\u00ff not json"));
    assert.equal(close.code, 4002);
  });

  await t.step("a truncated frame is closed with 4002", async () => {
    const close = await attack(url, (s) => s.send(new Uint8Array([1, 0, 0])));
    assert.equal(close.code, 4002);
  });

  await t.step("a second relay is fenced off with 4003", async () => {
    const close = await attack(url, (s) => s.send(hello("impostor")));
    assert.equal(close.code, 4003);
  });

  await t.step("a flood of 300 connection attempts is refused", async () => {
    const codes = await Promise.all(Array.from({ length: 300 }, () => status(url, {})));
    assert.deepEqual([...new Set(codes)], [401]);
  });

  const stalled: Deno.Conn[] = [];
  await t.step("clients that open TCP and never finish the upgrade are harmless", async () => {
    for (let i = 0; i < 20; i++) {
      const conn = await Deno.connect({ hostname, port: Number(port) });
      await conn.write(
        new TextEncoder().encode("GET /phonehome/stream HTTP/1.1\r\nHost: x\r\n"),
      );
      stalled.push(conn);
    }
  });

  await t.step(
    "random bytes and random frames for a bounded time do not crash the receiver",
    async () => {
      const random = seededRandom(Number(Deno.env.get("PHONEHOME_FUZZ_SEED") ?? 20261125));
      const bytes = (n: number): Uint8Array =>
        Uint8Array.from({ length: n }, () => Math.floor(random() * 256));
      const until = performance.now() + 1500;
      let rounds = 0;
      while (performance.now() < until) {
        rounds++;
        const conn = await Deno.connect({ hostname, port: Number(port) });
        await conn.write(bytes(1 + Math.floor(random() * 2048))).catch(() => 0);
        conn.close();
        const frames = Array.from({ length: 1 + Math.floor(random() * 5) }, () => {
          const choice = random();
          if (choice < 0.3) return bytes(Math.floor(random() * 64));
          if (choice < 0.6) return new TextDecoder().decode(bytes(Math.floor(random() * 64)));
          const fields = ["type", "versions", "relay", "attempt", "window", "exit", "streams"];
          const record: Record<string, unknown> = {};
          for (const field of fields) {
            if (random() < 0.5) {
              record[field] = random() < 0.5 ? Math.floor(random() * 1e9) : "x";
            }
          }
          record.type = ["hello", "finished", "ping", "ack", "welcome"][Math.floor(random() * 5)];
          return JSON.stringify(record);
        });
        // A last frame that is never valid, so that a round of mere pings ends too.
        const close = await attack(
          url,
          (s) => [...frames, "end"].forEach((frame) => s.send(frame)),
        );
        // The receiver closes with 4001 or 4002 at the first bad frame; frames still in flight
        // behind it can make TCP reset the connection first, and the code is then lost (0).
        assert.ok(
          [4001, 4002, 0].includes(close.code),
          `round ${rounds}: closed with ${close.code}`,
        );
      }
      assert.ok(rounds > 5);
    },
  );

  await Deno.writeTextFile(gate, "go\n");
  const [relayStatus, receiverStatus] = await Promise.all([relay.status, receiver.status]);
  for (const conn of stalled) conn.close();
  const stderr = await receiverErr.done;
  assert.equal(relayStatus.code, 0, await relayErr.done);
  assert.equal(receiverStatus.code, 0, stderr);
  const stdout = await stdoutWatcher.done;
  assert.equal(sha256(stdout), sha256(`started\n${"z".repeat(size)}`));
  assert.doesNotMatch(stderr, new RegExp(TOKEN));
  assert.match(stderr, /Refused a connection from 127\.0\.0\.1:\d+: Missing or wrong secret\./);
  assert.match(stderr, /Protocol version mismatch/);
  assert.match(stderr, /Closed a connection from 127\.0\.0\.1:\d+: Another relay already owns/);
});

Deno.test("a frame larger than the frame limit, an overflowing offset and a window overrun each end the stream", async (t) => {
  const cases: Array<[string, (socket: WebSocket) => void, RegExp]> = [
    [
      "a 1 MiB frame",
      (s) => {
        const frame = new Uint8Array(10 + 1024 * 1024);
        frame[0] = 1;
        s.send(frame);
      },
      /A message of 1048586 bytes is over the 262154-byte limit/,
    ],
    [
      "an offset beyond 2^53",
      (s) => s.send(Uint8Array.from([1, 0, 255, 255, 255, 255, 255, 255, 255, 255, 65])),
      /beyond what phonehome supports/,
    ],
    [
      "more unacknowledged bytes than the window allows",
      (s) => {
        const frame = new Uint8Array(10 + 200 * 1024);
        frame[0] = 1;
        // Three frames exceed 64 KiB plus two partial frames' allowance, and nothing more is
        // sent, so the close frame is not lost to a reset.
        for (let i = 0; i < 3; i++) {
          new DataView(frame.buffer).setBigUint64(2, BigInt(i * 200 * 1024));
          s.send(frame.slice());
        }
      },
      /beyond its 65536-byte window/,
    ],
  ];
  for (const [what, send, reason] of cases) {
    await t.step(what, async () => {
      await using dir = await tempDir();
      // A receiver whose stdout nobody reads: writes stall, so acknowledgements cannot free the window.
      const receiver = spawnPhonehome(
        ["receive", "--listen=127.0.0.1:0", `--url-file=${dir.path}/url`, "--idle-interval=0"],
        { env: { PHONEHOME_TOKEN: TOKEN } },
      );
      const url = (await waitForFile(`${dir.path}/url`)).trim();
      const close = await attack(url, (s) => {
        s.onmessage = (event) => {
          if (String(event.data).includes("welcome")) send(s);
        };
        s.send(hello("owner"));
      });
      assert.equal(close.code, 4002);
      assert.match(close.reason, reason);
      // The stream's owner broke the protocol: the stream is over (76), and the stop is not
      // held up for long by output that nobody reads.
      receiver.kill("SIGTERM");
      assert.equal((await receiver.status).code, 76);
      await digestStream(receiver.stdout);
      await digestStream(receiver.stderr);
    });
  }
});
