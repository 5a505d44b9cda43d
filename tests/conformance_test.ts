/**
 * The rules of docs/protocol.md that an independent relay relies on, each
 * played against a real receiver: how it authenticates and refuses, what it
 * tolerates, and how it ends.
 */

import assert from "node:assert/strict";
import { encodeControl, encodeDataFrame, PROTOCOL_VERSION } from "../src/protocol/mod.ts";
import {
  clientFrame,
  connect,
  frameText,
  requestStatus,
  serverFrames,
  upgradeHead,
  writeAll,
} from "./support/raw_client.ts";
import { crc32Of, readText, spawnPhonehome, tempDir, waitForFile } from "./support/processes.ts";

const TOKEN = "conformance-test-secret";

const EMPTY = { bytes: 0, crc32: crc32Of("") };

async function receive(dir: string): Promise<{ child: Deno.ChildProcess; url: string }> {
  const child = spawnPhonehome(
    ["receive", "--listen=127.0.0.1:0", `--url-file=${dir}/url`, "--idle-interval=0"],
    { env: { PHONEHOME_TOKEN: TOKEN } },
  );
  return { child, url: (await waitForFile(`${dir}/url`)).trim() };
}

function hello(extra: Record<string, unknown> = {}, versions = [PROTOCOL_VERSION]): string {
  return JSON.stringify({
    type: "hello",
    versions,
    relay: "conformance",
    attempt: 1,
    window: 65536,
    ...extra,
  });
}

/** Plays a relay with Deno's client; `script` runs on welcome; resolves with the close. */
function playRelay(
  url: string,
  options: { authorization?: string; first?: string; script?: (socket: WebSocket) => void },
): Promise<{ close: CloseEvent; messages: string[] }> {
  const socket = new WebSocket(url, {
    headers: { authorization: options.authorization ?? `Bearer ${TOKEN}` },
  });
  const messages: string[] = [];
  socket.onopen = () => socket.send(options.first ?? hello());
  socket.onmessage = (event) => {
    messages.push(String(event.data));
    if (String(event.data).includes('"welcome"')) options.script?.(socket);
    if (String(event.data).includes('"verdict"')) socket.close(1000);
  };
  return new Promise((resolve) => (socket.onclose = (close) => resolve({ close, messages })));
}

Deno.test("the bearer scheme is matched without regard to case, as RFC 7235 says", async () => {
  await using dir = await tempDir();
  const { child, url } = await receive(dir.path);
  const { close, messages } = await playRelay(url, {
    authorization: `bearer ${TOKEN}`,
    script: (s) =>
      s.send(
        encodeControl({
          type: "finished",
          exit: { code: 0, signal: null },
          streams: { stdout: EMPTY, stderr: EMPTY },
        }),
      ),
  });
  assert.equal(close.code, 1000);
  assert.ok(messages.some((m) => m.includes('"ok":true')), messages.join("\n"));
  assert.equal((await child.status).code, 0);
  await Promise.all([readText(child.stdout), readText(child.stderr)]);
});

Deno.test("refusals come in a fixed order: a wrong path is 404 even without the secret", async () => {
  await using dir = await tempDir();
  const { child, url } = await receive(dir.path);
  const other = "GET /elsewhere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
  assert.equal(await requestStatus(url, other), 404);
  assert.equal(await requestStatus(url, upgradeHead("not-the-secret-at-all")), 401);
  child.kill("SIGTERM");
  await Promise.all([child.status, readText(child.stdout), readText(child.stderr)]);
});

Deno.test("unknown fields are ignored and empty DATA is legal", async () => {
  await using dir = await tempDir();
  const { child, url } = await receive(dir.path);
  const { close, messages } = await playRelay(url, {
    first: hello({ relay: "later", attempt: 2, later: { feature: true } }),
    script: (s) => {
      s.send(encodeDataFrame("stdout", 0, new Uint8Array()));
      s.send(encodeDataFrame("stdout", 0, new TextEncoder().encode("hi\n")));
      s.send(encodeDataFrame("stdout", 3, new Uint8Array()));
      s.send(JSON.stringify({
        type: "finished",
        exit: { code: 0, signal: null },
        streams: { stdout: { bytes: 3, crc32: crc32Of("hi\n") }, stderr: EMPTY },
        later: "ignored",
      }));
    },
  });
  assert.equal(close.code, 1000, messages.join("\n"));
  const [stdout, , status] = await Promise.all([
    readText(child.stdout),
    readText(child.stderr),
    child.status,
  ]);
  assert.equal(status.code, 0);
  assert.equal(stdout, "hi\n");
});

Deno.test("a second hello on one connection is closed with 4002, and the stream ends with 76", async () => {
  await using dir = await tempDir();
  const { child, url } = await receive(dir.path);
  const { close } = await playRelay(url, {
    first: hello({ relay: "twice" }),
    script: (s) => s.send(hello({ relay: "twice" })),
  });
  assert.equal(close.code, 4002);
  assert.match(close.reason, /Hello sent twice/);
  const [, stderr, status] = await Promise.all([
    readText(child.stdout),
    readText(child.stderr),
    child.status,
  ]);
  assert.equal(status.code, 76);
  assert.match(stderr, /The relay broke the protocol/);
});

Deno.test("a hello that names no version is told so in a sentence", async () => {
  await using dir = await tempDir();
  const { child, url } = await receive(dir.path);
  const { close } = await playRelay(url, { first: hello({}, []) });
  assert.equal(close.code, 4001);
  assert.match(
    close.reason,
    /^Protocol version mismatch: the relay names no version, the receiver speaks v2/,
  );
  child.kill("SIGTERM");
  await Promise.all([child.status, readText(child.stdout), readText(child.stderr)]);
});

Deno.test("once the stream is over, a new upgrade is answered 410 until the receiver has gone", async () => {
  await using dir = await tempDir();
  const { child, url } = await receive(dir.path);
  // The owner never answers anything, so the receiver waits for its close handshake.
  const owner = await connect(url);
  await writeAll(owner, upgradeHead(TOKEN));
  await writeAll(owner, clientFrame(0x1, hello()));
  const frames = serverFrames(owner);
  const first = await frames.next();
  assert.ok(!first.done && /"welcome"/.test(frameText(first.value)), "the receiver welcomed it");
  child.kill("SIGTERM");
  let frame = await frames.next();
  while (!frame.done && frame.value.opcode !== 0x8) frame = await frames.next();
  assert.equal(frame.done, false, "the receiver closed the owner's connection");
  assert.equal(await requestStatus(url, upgradeHead(TOKEN)), 410);
  owner.close();
  await Promise.all([child.status, readText(child.stdout), readText(child.stderr)]);
});

Deno.test("after the verdict, a relay that vanishes without a close lets the receiver exit within 5 s", async () => {
  await using dir = await tempDir();
  const { child, url } = await receive(dir.path);
  const relay = await connect(url);
  await writeAll(relay, upgradeHead(TOKEN));
  await writeAll(relay, clientFrame(0x1, hello()));
  await writeAll(
    relay,
    clientFrame(
      0x1,
      encodeControl({
        type: "finished",
        exit: { code: 3, signal: null },
        streams: { stdout: EMPTY, stderr: EMPTY },
      }),
    ),
  );
  for await (const frame of serverFrames(relay)) {
    if (frame.opcode === 0x1 && frameText(frame).includes('"verdict"')) break;
  }
  const verdictAt = performance.now();
  relay.close();
  const status = await child.status;
  const waitedMs = performance.now() - verdictAt;
  await Promise.all([readText(child.stdout), readText(child.stderr)]);
  assert.equal(status.code, 3);
  // The protocol's promise, with room for the process to start exiting: not 7 s as before.
  assert.ok(waitedMs < 5_900, `the receiver waited ${Math.round(waitedMs)} ms after the verdict`);
});
