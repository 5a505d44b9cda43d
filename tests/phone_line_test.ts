/**
 * The relay's connection logic against a clock and a receiver the test plays:
 * backoff between attempts, deadlines, liveness judged by pings, resuming
 * from the receiver's offsets; minutes of protocol time in milliseconds.
 */

import assert from "node:assert/strict";
import { PROTOCOL_VERSION } from "../src/protocol/mod.ts";
import { MIN_HANDSHAKE_TIMEOUT_MS } from "../src/relay/connection_attempt.ts";
import { Outbox } from "../src/relay/outbox.ts";
import {
  backoffMs,
  INITIAL_BACKOFF_MS,
  MAX_BACKOFF_MS,
  PhoneLine,
} from "../src/relay/phone_line.ts";
import { FakeClock, FakeSocket } from "./support/fake_clock.ts";

const PING_MS = 1000;

/** A phone line on a fake clock whose sockets the test gets, one per connection. */
function line(
  options: { connectTimeoutMs?: number; reconnectGraceMs?: number; refuse?: boolean } = {},
): {
  clock: FakeClock;
  sockets: FakeSocket[];
  logs: string[];
  phone: PhoneLine;
} {
  const clock = new FakeClock();
  const sockets: FakeSocket[] = [];
  const logs: string[] = [];
  const phone = new PhoneLine({
    url: "ws://receiver.test/phonehome/stream",
    token: "a-secret-of-enough-bytes",
    relayId: "relay-1",
    outbox: new Outbox(65536),
    connectTimeoutMs: options.connectTimeoutMs ?? 60_000,
    reconnectGraceMs: options.reconnectGraceMs ?? 60_000,
    pingIntervalMs: PING_MS,
    log: (text) => logs.push(text),
    clock,
    openSocket: () => {
      const socket = new FakeSocket(clock.now());
      sockets.push(socket);
      if (options.refuse) {
        // Refused at once, as a closed port refuses.
        clock.after(0, () => socket.end(1006, "", "NetworkError: connection refused"));
      }
      return socket;
    },
  });
  phone.start();
  return { clock, sockets, logs, phone };
}

function welcome(socket: FakeSocket, stdout = 0): void {
  socket.open();
  socket.receive({ type: "welcome", version: PROTOCOL_VERSION, acked: { stdout, stderr: 0 } });
}

Deno.test("the pause between attempts doubles from 100 ms to 2 s, jittered over its upper half", () => {
  const pauses = (random: number): number[] =>
    Array.from({ length: 7 }, (_, failures) => backoffMs(failures, () => random));
  assert.deepEqual(pauses(0), [50, 100, 200, 400, 800, 1000, 1000]);
  assert.deepEqual(pauses(1), [100, 200, 400, 800, 1600, 2000, 2000]);
  assert.equal(INITIAL_BACKOFF_MS, 100);
  assert.equal(MAX_BACKOFF_MS, 2000);
});

Deno.test("a receiver that is not there is retried with growing pauses until the connect timeout", async () => {
  const { clock, sockets, logs, phone } = line({ connectTimeoutMs: 10_000, refuse: true });
  clock.randomValue = 1;
  await clock.advance(20_000);
  await phone.settled;
  // 100 ms doubling to 2 s; the last try is cut to fit the 10 s deadline.
  assert.deepEqual(
    sockets.map((socket) => socket.openedAtMs),
    [0, 100, 300, 700, 1500, 3100, 5100, 7100, 9100, 10_000],
  );
  assert.match(phone.failure ?? "", /^No connection within 10s \(last: connection refused\)/);
  assert.match(
    logs[0],
    /Cannot reach the receiver yet \(connection refused\); retrying for up to 10s\./,
  );
});

Deno.test("a connection silent for four ping intervals is given up, and the next one resumes", async () => {
  const { clock, sockets, logs } = line();
  await clock.advance(0);
  welcome(sockets[0]);
  assert.deepEqual(sockets[0].sent[0], {
    type: "hello",
    versions: [PROTOCOL_VERSION],
    relay: "relay-1",
    attempt: 1,
    window: 65536,
  });
  // Pings go out each interval; nothing comes back.
  await clock.advance(4 * PING_MS);
  assert.equal(sockets[0].sent.filter((m) => m.type === "ping").length, 4);
  assert.equal(sockets.length, 1, "still on the first connection after four silent intervals");
  await clock.advance(PING_MS);
  assert.equal(sockets[0].closedWith?.code, 4005);
  assert.match(
    logs.at(-1) ?? "",
    /Lost the connection to the receiver \(no answer to pings for 5s\)/,
  );
  await clock.advance(MAX_BACKOFF_MS);
  assert.equal(sockets.length, 2);
  welcome(sockets[1]);
  assert.equal(sockets[1].sent[0].attempt, 2, "the next connection carries the next attempt");
});

Deno.test("a connection that answers pings stays up through an hour without output", async () => {
  const { clock, sockets } = line();
  await clock.advance(0);
  welcome(sockets[0]);
  for (let second = 0; second < 3600; second++) {
    await clock.advance(PING_MS);
    sockets[0].receive({ type: "pong" });
  }
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].closedWith, undefined);
});

Deno.test("a handshake never welcomed is given up after 5 s however short the pings", async () => {
  const { clock, sockets } = line();
  await clock.advance(0);
  sockets[0].open();
  await clock.advance(MIN_HANDSHAKE_TIMEOUT_MS - 1);
  const closeCode = (): number | undefined => sockets[0].closedWith?.code;
  assert.equal(closeCode(), undefined, "4 intervals are not enough for a handshake");
  await clock.advance(PING_MS + 1);
  assert.equal(closeCode(), 4005);
});

Deno.test("a receiver that goes away for good (4004) ends the line at once, and says so", async () => {
  const { clock, sockets, phone } = line();
  await clock.advance(0);
  welcome(sockets[0]);
  sockets[0].end(4004, "The receiver is shutting down.");
  await clock.advance(0);
  assert.match(await phone.receiverGone, /closed the connection with code 4004/);
  await phone.settled;
  assert.equal(sockets.length, 1, "no reconnection");
});
