/**
 * The attacks of the attacks case, as a holder of the build's secret can make
 * them against a receiver: huge messages before hello, an owner's endless
 * 1-byte DATA frames, and pings that are never read, before and after hello.
 * Each keeps at it until its deadline and counts what it did. They run in a
 * process of their own (attacker.ts), so that the receiver meets a real peer
 * and their CPU is not the bench's.
 *
 * @module
 */

import {
  encodeControl,
  encodeDataFrame,
  MIN_WINDOW_BYTES,
  parseReceiverMessage,
  PROTOCOL_VERSION,
  type ReceiverMessage,
} from "../src/protocol/mod.ts";
import { clientFrame, connect, upgradeHead, writeAll } from "../tests/support/raw_client.ts";

/** The attacks, as the attacker's command line names them. */
export const ATTACK_MODES = ["huge", "flood", "pings", "owner-pings"] as const;

/** One of the attacks. */
export type AttackMode = typeof ATTACK_MODES[number];

/** Concurrent connections of the attacks that are not the stream's owner. */
export const ATTACK_CONNECTIONS = 4;

/** The message each connection of the huge attack sends before hello. */
export const HUGE_MESSAGE_BYTES = 60 * 1024 * 1024;

/** What the flood's client may hold unsent before it yields: as fast as its buffer allows. */
const FLOOD_BUFFERED_BYTES = 1024 * 1024;

/** Each ping attack writes pings in bursts of this many of each kind. */
const PINGS_PER_BURST = 256;

/** Pause before connecting again after a connection was refused. */
const RECONNECT_PAUSE_MS = 10;

const WEBSOCKET_OPCODE = { text: 0x1, ping: 0x9 } as const;

/** Where to attack, with which secret, and until when. */
export interface AttackTarget {
  /** The receiver's URL, as a relay is given it. */
  url: string;
  /** The build's secret. */
  token: string;
  /** `performance.now()` at which the attack stops. */
  deadlineMs: number;
}

/** What an attack did, for the report. */
export interface AttackTally {
  mode: AttackMode;
  /** Connections opened. */
  connections: number;
  /** Bytes of messages or frames handed to the connections. */
  bytesSent: number;
  /** How connections ended, counted by their close code and reason (digits as N) or failure. */
  ends: Record<string, number>;
  /**
   * Wall-clock time (epoch ms) at which the receiver first welcomed the
   * attacker as the stream's owner; null when it never did.
   */
  firstWelcomeAtEpochMs: number | null;
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function hello(attempt: number): string {
  return encodeControl({
    type: "hello",
    versions: [PROTOCOL_VERSION],
    relay: "bench-attacker",
    attempt,
    window: MIN_WINDOW_BYTES,
  });
}

/** A receiver's control message; undefined for anything else (the attacker does not care). */
function receiverMessage(data: unknown): ReceiverMessage | undefined {
  if (typeof data !== "string") return undefined;
  try {
    return parseReceiverMessage(data);
  } catch {
    return undefined;
  }
}

/** WebSocket pings (125 bytes each) and `{"type":"ping"}` messages, alternating. */
function pingBurst(): Uint8Array {
  const ping = clientFrame(WEBSOCKET_OPCODE.ping, new Uint8Array(125));
  const text = clientFrame(WEBSOCKET_OPCODE.text, encodeControl({ type: "ping" }));
  const burst = new Uint8Array((ping.byteLength + text.byteLength) * PINGS_PER_BURST);
  for (let at = 0; at < burst.byteLength; at += ping.byteLength + text.byteLength) {
    burst.set(ping, at);
    burst.set(text, at + ping.byteLength);
  }
  return burst;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already: at the deadline, or after a failed write.
  }
}

/** One attack against one receiver, counting what it does. */
class Attacker {
  readonly #target: AttackTarget;
  readonly #tally: AttackTally;

  constructor(mode: AttackMode, target: AttackTarget) {
    this.#target = target;
    this.#tally = { mode, connections: 0, bytesSent: 0, ends: {}, firstWelcomeAtEpochMs: null };
  }

  /** What the attack did so far. */
  get tally(): AttackTally {
    return structuredClone(this.#tally);
  }

  /** Runs the attack until the deadline. */
  run(): Promise<void> {
    switch (this.#tally.mode) {
      case "huge":
        return this.#hugeBeforeHello();
      case "flood":
        return this.#ownerFlood();
      case "pings":
        return this.#pingsBeforeHello();
      case "owner-pings":
        return this.#ownerPings();
    }
  }

  get #timeLeftMs(): number {
    return this.#target.deadlineMs - performance.now();
  }

  #ended(how: string): void {
    this.#tally.ends[how] = (this.#tally.ends[how] ?? 0) + 1;
  }

  #sent(bytes: number): void {
    this.#tally.bytesSent += bytes;
  }

  /** A WebSocket to the receiver with the secret, as a relay opens it. */
  #openSocket(): WebSocket {
    this.#tally.connections++;
    const socket = new WebSocket(this.#target.url, {
      headers: { authorization: `Bearer ${this.#target.token}` },
    });
    socket.binaryType = "arraybuffer";
    return socket;
  }

  /** Resolves with how `socket` ended: its close code and reason, or "deadline" (closing it). */
  #ending(socket: WebSocket): Promise<string> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        socket.close();
        resolve("deadline");
      }, Math.max(0, this.#timeLeftMs));
      socket.addEventListener("close", (event) => {
        clearTimeout(timer);
        if (!event.wasClean) return resolve("lost without a close frame");
        // Numbers in reasons vary from close to close (sizes, ports): the kind of ending counts.
        resolve(`close ${event.code} ${event.reason.replace(/\d+/g, "N")}`.trim());
      });
    });
  }

  /** (a) Connections that each send one huge binary message before hello, again and again. */
  async #hugeBeforeHello(): Promise<void> {
    const message = new Uint8Array(HUGE_MESSAGE_BYTES);
    const connection = async (): Promise<void> => {
      while (this.#timeLeftMs > 0) {
        const socket = this.#openSocket();
        socket.onopen = () => {
          socket.send(message);
          this.#sent(message.byteLength);
        };
        this.#ended(await this.#ending(socket));
      }
    };
    await Promise.all(Array.from({ length: ATTACK_CONNECTIONS }, connection));
  }

  /**
   * (b) The stream's owner: says hello, then sends 1-byte DATA frames as fast
   * as its client's buffer allows; reconnects with the next attempt when
   * closed, until a connection is not welcomed any more (the receiver is over).
   */
  async #ownerFlood(): Promise<void> {
    for (let attempt = 1; this.#timeLeftMs > 0; attempt++) {
      const socket = this.#openSocket();
      let welcomed = false;
      socket.onopen = () => socket.send(hello(attempt));
      socket.onmessage = (event) => {
        const message = receiverMessage(event.data);
        if (message?.type === "ping") socket.send(encodeControl({ type: "pong" }));
        if (message?.type !== "welcome") return;
        welcomed = true;
        this.#tally.firstWelcomeAtEpochMs ??= performance.timeOrigin + performance.now();
        this.#pumpDataFrames(socket, message.acked.stdout);
      };
      this.#ended(await this.#ending(socket));
      if (!welcomed) break;
    }
  }

  /** Sends 1-byte DATA frames from `offset` for as long as the socket is open and time is left. */
  #pumpDataFrames(socket: WebSocket, offset: number): void {
    const payload = Uint8Array.of(0x61);
    let next = offset;
    const pump = (): void => {
      if (socket.readyState !== WebSocket.OPEN || this.#timeLeftMs <= 0) return;
      while (socket.bufferedAmount < FLOOD_BUFFERED_BYTES) {
        const frame = encodeDataFrame("stdout", next++, payload);
        socket.send(frame);
        this.#sent(frame.byteLength);
      }
      // Yield, so that the socket can drain and its messages be read.
      setTimeout(pump, 0);
    };
    pump();
  }

  /** (c) Connections that ping before hello without ever reading, reconnecting when dropped. */
  async #pingsBeforeHello(): Promise<void> {
    const burst = pingBurst();
    const connection = async (): Promise<void> => {
      while (this.#timeLeftMs > 0) {
        this.#ended(await this.#writeWithoutReading([upgradeHead(this.#target.token)], burst));
      }
    };
    await Promise.all(Array.from({ length: ATTACK_CONNECTIONS }, connection));
  }

  /**
   * (d) The stream's owner: says hello, then pings for the whole attack
   * without reading a word; reconnects with the next attempt when dropped.
   */
  async #ownerPings(): Promise<void> {
    const burst = pingBurst();
    for (let attempt = 1; this.#timeLeftMs > 0; attempt++) {
      const opening = [
        upgradeHead(this.#target.token),
        clientFrame(WEBSOCKET_OPCODE.text, hello(attempt)),
      ];
      this.#ended(await this.#writeWithoutReading(opening, burst));
    }
  }

  /**
   * One raw connection that writes `opening`, then `burst` over and over
   * without ever reading, until it is dropped or the time is up; returns how
   * it ended.
   */
  async #writeWithoutReading(
    opening: ReadonlyArray<Uint8Array | string>,
    burst: Uint8Array,
  ): Promise<string> {
    let conn: Deno.TcpConn;
    try {
      conn = await connect(this.#target.url);
    } catch (error) {
      await pause(RECONNECT_PAUSE_MS);
      return `connect failed: ${(error as Error).name}`;
    }
    this.#tally.connections++;
    // A write blocks once the peer stops reading: closing at the deadline ends it.
    const timer = setTimeout(() => closeQuietly(conn), Math.max(0, this.#timeLeftMs));
    try {
      for (const part of opening) await writeAll(conn, part);
      while (this.#timeLeftMs > 0) {
        await writeAll(conn, burst);
        this.#sent(burst.byteLength);
      }
      return "deadline";
    } catch (error) {
      return this.#timeLeftMs > 0 ? `dropped: ${(error as Error).name}` : "deadline";
    } finally {
      clearTimeout(timer);
      closeQuietly(conn);
    }
  }
}

/** Runs one attack until `target.deadlineMs`; resolves with what it did. */
export async function runAttack(mode: AttackMode, target: AttackTarget): Promise<AttackTally> {
  const attacker = new Attacker(mode, target);
  await attacker.run();
  return attacker.tally;
}
