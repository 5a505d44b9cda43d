/**
 * Each side against a scripted peer written here from the protocol module, so
 * that a misbehaving or lying counterpart can be played: a relay whose FINISHED
 * disagrees with its data, a receiver that rejects the stream, and a receiver
 * that counts the frames it is sent.
 */

import assert from "node:assert/strict";
import {
  decodeDataFrame,
  encodeControl,
  encodeDataFrame,
  type FinishedMessage,
  parseReceiverMessage,
  parseRelayMessage,
  PROTOCOL_VERSION,
  type ReceiverMessage,
  STREAM_PATH,
} from "../src/protocol/mod.ts";
import {
  crc32Of,
  LineWatcher,
  readText,
  spawnPhonehome,
  tempDir,
  waitForFile,
} from "./support/processes.ts";

const TOKEN = "peer-test-secret";

/** Plays a relay over a real WebSocket; resolves with what the receiver said. */
async function playRelay(
  url: string,
  script: (socket: WebSocket) => void,
): Promise<{ messages: ReceiverMessage[]; close: CloseEvent }> {
  const socket = new WebSocket(url, { headers: { authorization: `Bearer ${TOKEN}` } });
  const messages: ReceiverMessage[] = [];
  const close = new Promise<CloseEvent>((resolve) => (socket.onclose = resolve));
  socket.onmessage = (event) => {
    const message = parseReceiverMessage(event.data as string);
    messages.push(message);
    if (message.type === "welcome") script(socket);
    if (message.type === "verdict") socket.close(1000);
  };
  socket.onopen = () =>
    socket.send(
      encodeControl({
        type: "hello",
        versions: [PROTOCOL_VERSION],
        relay: "scripted",
        attempt: 1,
        window: 65536,
      }),
    );
  return { messages, close: await close };
}

interface ScriptedReceiver {
  child: Deno.ChildProcess;
  stdout: Promise<string>;
  stderr: LineWatcher;
  url: string;
}

async function startReceiver(dir: string): Promise<ScriptedReceiver> {
  const child = spawnPhonehome(
    ["receive", "--listen=127.0.0.1:0", `--url-file=${dir}/url`, "--idle-interval=0"],
    { env: { PHONEHOME_TOKEN: TOKEN } },
  );
  const stdout = readText(child.stdout);
  const stderr = new LineWatcher(child.stderr);
  const url = (await waitForFile(`${dir}/url`)).trim();
  return { child, stdout, stderr, url };
}

function finished(
  stdout: string,
  claimed: { bytes?: number; crc32?: string } = {},
): FinishedMessage {
  const empty = { bytes: 0, crc32: crc32Of("") };
  return {
    type: "finished",
    exit: { code: 0, signal: null },
    streams: {
      stdout: { bytes: claimed.bytes ?? stdout.length, crc32: claimed.crc32 ?? crc32Of(stdout) },
      stderr: empty,
    },
  };
}

Deno.test("a FINISHED whose checksum disagrees with the data is a loud failure with status 76", async () => {
  await using dir = await tempDir();
  const receiver = await startReceiver(dir.path);
  const { messages } = await playRelay(receiver.url, (socket) => {
    socket.send(encodeDataFrame("stdout", 0, new TextEncoder().encode("hello\n")));
    socket.send(encodeControl(finished("hello\n", { crc32: crc32Of("jello\n") })));
  });
  const verdict = messages.find((m) => m.type === "verdict");
  assert.deepEqual(verdict?.type === "verdict" && verdict.ok, false);
  assert.equal((await receiver.child.status).code, 76);
  assert.equal(await receiver.stdout, "hello\n");
  assert.match(
    await receiver.stderr.done,
    /The stream is corrupt: stdout has the CRC-32 [0-9a-f]{8}, the relay's is [0-9a-f]{8}\./,
  );
});

Deno.test("a FINISHED claiming more bytes than arrived is reported as incomplete with status 76", async () => {
  await using dir = await tempDir();
  const receiver = await startReceiver(dir.path);
  await playRelay(receiver.url, (socket) => {
    socket.send(encodeDataFrame("stdout", 0, new TextEncoder().encode("part")));
    socket.send(encodeControl(finished("part", { bytes: 10 })));
  });
  assert.equal((await receiver.child.status).code, 76);
  assert.match(
    await receiver.stderr.done,
    /The stream is incomplete: 4 of the 10 bytes of stdout arrived/,
  );
});

Deno.test("a resent frame that overlaps what was written is written only once", async () => {
  await using dir = await tempDir();
  const receiver = await startReceiver(dir.path);
  await playRelay(receiver.url, (socket) => {
    const encode = (text: string) => new TextEncoder().encode(text);
    socket.send(encodeDataFrame("stdout", 0, encode("abcdef")));
    socket.send(encodeDataFrame("stdout", 3, encode("defghi")));
    socket.send(encodeDataFrame("stdout", 0, encode("abc")));
    socket.send(encodeControl(finished("abcdefghi")));
  });
  assert.equal((await receiver.child.status).code, 0);
  assert.equal(await receiver.stdout, "abcdefghi");
});

Deno.test("a frame that skips ahead is a protocol violation that ends the stream with 76", async () => {
  await using dir = await tempDir();
  const receiver = await startReceiver(dir.path);
  const { close } = await playRelay(receiver.url, (socket) => {
    socket.send(encodeDataFrame("stdout", 5, new TextEncoder().encode("gap")));
  });
  assert.equal(close.code, 4002);
  assert.match(close.reason, /starts at byte 5, but only 0 bytes have arrived/);
  // A relay never comes back after 4002, so the receiver does not wait for it to.
  assert.equal((await receiver.child.status).code, 76);
  assert.equal(await receiver.stdout, "");
  assert.match(
    await receiver.stderr.done,
    /Closed the connection from 127\.0\.0\.1:\d+: DATA for stdout starts at byte 5.*\nphonehome: The relay broke the protocol; the build's result cannot be trusted\.\n$/,
  );
});

/**
 * A receiver played in-process: welcomes, acknowledges every frame (unless told
 * not to), answers FINISHED with `verdictOk`.
 */
interface PlayedReceiver extends AsyncDisposable {
  url: string;
  stats: () => { frames: number; bytes: number; text: string };
  /** Resolves once this many payload bytes have arrived. */
  bytesAtLeast: (bytes: number) => Promise<void>;
}

function playReceiver(verdictOk: boolean, acknowledge = true): PlayedReceiver {
  let frames = 0;
  let bytes = 0;
  let waiters: Array<{ bytes: number; resolve: () => void }> = [];
  const lines: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.binaryType = "arraybuffer";
    const offsets = { stdout: 0, stderr: 0 };
    socket.onmessage = (event) => {
      if (typeof event.data !== "string") {
        const frame = decodeDataFrame(new Uint8Array(event.data));
        frames++;
        bytes += frame.payload.byteLength;
        waiters = waiters.filter((w) => (bytes >= w.bytes ? (w.resolve(), false) : true));
        offsets[frame.stream] = frame.offset + frame.payload.byteLength;
        lines.push(new TextDecoder().decode(frame.payload));
        if (acknowledge) socket.send(encodeControl({ type: "ack", acked: { ...offsets } }));
        return;
      }
      const message = parseRelayMessage(event.data);
      if (message.type === "hello") {
        socket.send(encodeControl({ type: "welcome", version: PROTOCOL_VERSION, acked: offsets }));
      } else if (message.type === "finished") {
        socket.send(
          encodeControl({ type: "verdict", ok: verdictOk, message: "Played a rejection." }),
        );
      }
    };
    return response;
  });
  return {
    url: `ws://127.0.0.1:${server.addr.port}${STREAM_PATH}`,
    stats: () => ({ frames, bytes, text: lines.join("") }),
    bytesAtLeast: (wanted) =>
      bytes >= wanted
        ? Promise.resolve()
        : new Promise((resolve) => waiters.push({ bytes: wanted, resolve })),
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

Deno.test("a relay whose stream the receiver rejects exits with 76 even when the build succeeded", async () => {
  await using receiver = playReceiver(false);
  const relay = spawnPhonehome(["relay", "--no-tee", "--", "sh", "-c", "echo fine"], {
    env: { PHONEHOME_URL: receiver.url, PHONEHOME_TOKEN: TOKEN },
  });
  const [stderr, status] = await Promise.all([readText(relay.stderr), relay.status]);
  await relay.stdout.cancel();
  assert.equal(status.code, 76);
  assert.match(stderr, /The receiver rejected the stream: Played a rejection\./);
});

Deno.test("many tiny writes are coalesced into few frames", async () => {
  await using receiver = playReceiver(true);
  const lines = 20000;
  // One write per line: awk flushes after each print.
  const relay = spawnPhonehome([
    "relay",
    "--no-tee",
    "--",
    "awk",
    `BEGIN { for (i = 0; i < ${lines}; i++) { print "line " i; fflush() } }`,
  ], { env: { PHONEHOME_URL: receiver.url, PHONEHOME_TOKEN: TOKEN } });
  const status = await relay.status;
  await relay.stdout.cancel();
  await relay.stderr.cancel();
  assert.equal(status.code, 0);
  const { frames, text } = receiver.stats();
  assert.equal(text.split("\n").length - 1, lines);
  assert.ok(frames < lines / 10, `${lines} writes became ${frames} frames`);
});

Deno.test("a newer connection of the same relay fences off the older one, and a stale one is refused", async () => {
  await using dir = await tempDir();
  const receiver = await startReceiver(dir.path);
  const open = (attempt: number): Promise<{ socket: WebSocket; closed: Promise<CloseEvent> }> =>
    new Promise((resolve) => {
      const socket = new WebSocket(receiver.url, { headers: { authorization: `Bearer ${TOKEN}` } });
      const closed = new Promise<CloseEvent>((done) => (socket.onclose = done));
      socket.onopen = () =>
        socket.send(
          encodeControl({
            type: "hello",
            versions: [PROTOCOL_VERSION],
            relay: "same",
            attempt,
            window: 65536,
          }),
        );
      socket.onmessage = (event) => {
        if (parseReceiverMessage(event.data as string).type === "welcome") {
          resolve({ socket, closed });
        }
      };
      closed.then(() => resolve({ socket, closed }));
    });
  const encode = (text: string): Uint8Array => new TextEncoder().encode(text);
  const older = await open(1);
  older.socket.send(encodeDataFrame("stdout", 0, encode("one ")));
  const newer = await open(2);
  const olderClose = await older.closed;
  assert.equal(olderClose.code, 4003);
  assert.match(olderClose.reason, /A newer connection took over/);
  const stale = await open(2);
  const staleClose = await stale.closed;
  assert.equal(staleClose.code, 4003);
  assert.match(staleClose.reason, /Connection attempt 2 is stale; attempt 2 is current/);
  const verdict = new Promise<void>((resolve) => {
    newer.socket.onmessage = (event) => {
      if (parseReceiverMessage(event.data as string).type === "verdict") resolve();
    };
  });
  newer.socket.send(encodeDataFrame("stdout", 0, encode("one two")));
  newer.socket.send(encodeControl(finished("one two")));
  await verdict;
  newer.socket.close(1000);
  assert.equal((await receiver.child.status).code, 0);
  assert.equal(await receiver.stdout, "one two");
});

Deno.test("a relay stopped while its window is full and unacknowledged still exits", async () => {
  // The receiver never acknowledges: the window fills, the relay stops reading, the build blocks.
  await using receiver = playReceiver(true, false);
  const relay = spawnPhonehome([
    "relay",
    "--no-tee",
    "--window=65536",
    "--drain-grace=200",
    "--kill-grace=300",
    // Pings must not be what ends the stuck connection here.
    "--ping-interval=60000",
    "--",
    "sh",
    "-c",
    "echo started >&2; head -c 50000000 /dev/zero",
  ], { env: { PHONEHOME_URL: receiver.url, PHONEHOME_TOKEN: TOKEN }, stdout: "null" });
  const stderr = new LineWatcher(relay.stderr);
  await receiver.bytesAtLeast(65536);
  relay.kill("SIGTERM");
  // Without a way out of the full window the relay would wait forever; 30 s is a watchdog.
  const watchdog = AbortSignal.timeout(30_000);
  const status = await Promise.race([
    relay.status,
    new Promise<never>((_, reject) =>
      watchdog.addEventListener("abort", () => reject(new Error("the relay did not exit")))
    ),
  ]);
  assert.equal(status.code, 143);
  assert.match(await stderr.done, /kept its output open|told to stop/);
});

Deno.test("a receiver that talks or closes in long non-ASCII text cannot crash the relay", async (t) => {
  const long = "é".repeat(61);
  const cases: Array<[string, (socket: WebSocket) => void]> = [
    ["an unknown message type", (s) => s.send(JSON.stringify({ type: "ü".repeat(200) }))],
    ["a close reason of 122 bytes", (s) => s.close(4002, long)],
  ];
  for (const [what, misbehave] of cases) {
    await t.step(what, async () => {
      const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (r) => {
        const { socket, response } = Deno.upgradeWebSocket(r);
        socket.onmessage = (event) => {
          if (typeof event.data === "string" && event.data.includes('"hello"')) {
            socket.send(encodeControl({
              type: "welcome",
              version: PROTOCOL_VERSION,
              acked: { stdout: 0, stderr: 0 },
            }));
            misbehave(socket);
          }
        };
        return response;
      });
      const relay = spawnPhonehome(["relay", "--no-tee", "--", "sh", "-c", "echo built; exit 7"], {
        env: {
          PHONEHOME_URL: `ws://127.0.0.1:${server.addr.port}${STREAM_PATH}`,
          PHONEHOME_TOKEN: TOKEN,
        },
      });
      const [stderr, status] = await Promise.all([readText(relay.stderr), relay.status]);
      await relay.stdout.cancel();
      await server.shutdown();
      assert.equal(status.code, 7, stderr);
      assert.doesNotMatch(stderr, /Internal error|may not be longer/);
      assert.match(stderr, /Could not phone home/);
    });
  }
});
