/**
 * A fault-injecting TCP proxy for the tests: sits between relay and receiver
 * and, per connection, cuts it at a byte offset, drops it when a chosen
 * WebSocket message passes, stalls it (a black hole that keeps the sockets
 * open, like a half-open connection), delays it, or closes one direction.
 *
 * @module
 */

/** `up` is relay to receiver; `down` is receiver to relay. */
export type Direction = "up" | "down";

/** A WebSocket message as the proxy sees it, unmasked. */
export interface WireMessage {
  /** 1 text, 2 binary, 8 close, 9 ping, 10 pong. */
  opcode: number;
  payload: Uint8Array;
}

/** What to do to one connection; every field is optional. */
export interface Fault {
  /** Cut both sides once this many bytes have gone this way. */
  cutAfter?: { direction: Direction; bytes: number };
  /** Drop the first message this way that matches, and cut both sides instead of passing it. */
  cutOnMessage?: { direction: Direction; matches: (message: WireMessage) => boolean };
  /** Stop forwarding anything, both ways, once this many bytes have gone this way; sockets stay open. */
  stallAfter?: { direction: Direction; bytes: number };
  /** Pass the first message this way that matches, then stall as {@linkcode stallAfter} does. */
  stallAfterMessage?: { direction: Direction; matches: (message: WireMessage) => boolean };
  /** Call `seen` for each message this way that matches, once it has been passed on. */
  watch?: {
    direction: Direction;
    matches: (message: WireMessage) => boolean;
    seen: () => void;
  };
  /** Close only this direction (the far side reads end-of-file) after this many bytes went up. */
  halfCloseAfter?: { direction: Direction; upBytes: number };
  /** Hold every chunk this long before passing it on. */
  delayMs?: number;
}

/** What the proxy did, for the fault suite's summary. */
export interface ProxyStats {
  connections: number;
  cuts: number;
  stalls: number;
  halfCloses: number;
}

const HEADER_END = new TextEncoder().encode("\r\n\r\n");

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * Splits a byte stream into whole units: the HTTP head first, then one
 * WebSocket frame at a time (unmasked), so a message can be recognised and
 * dropped, or read back from a capture.
 */
export class FrameSplitter {
  #pending: Uint8Array = new Uint8Array(0);
  #inHead = true;

  /** Feeds bytes; returns the complete units, each with the message when it is a frame. */
  push(bytes: Uint8Array): Array<{ raw: Uint8Array; message?: WireMessage }> {
    this.#pending = concat(this.#pending, bytes);
    const units: Array<{ raw: Uint8Array; message?: WireMessage }> = [];
    while (true) {
      if (this.#inHead) {
        const end = indexOf(this.#pending, HEADER_END);
        if (end === -1) return units;
        units.push({ raw: this.#pending.slice(0, end + 4) });
        this.#pending = this.#pending.slice(end + 4);
        this.#inHead = false;
        continue;
      }
      const frame = this.#frame();
      if (frame === undefined) return units;
      units.push(frame);
    }
  }

  #frame(): { raw: Uint8Array; message: WireMessage } | undefined {
    const b = this.#pending;
    if (b.length < 2) return undefined;
    let length = b[1] & 0x7f;
    let at = 2;
    if (length === 126) {
      if (b.length < 4) return undefined;
      length = (b[2] << 8) | b[3];
      at = 4;
    } else if (length === 127) {
      if (b.length < 10) return undefined;
      length = Number(new DataView(b.buffer, b.byteOffset + 2, 8).getBigUint64(0));
      at = 10;
    }
    const masked = (b[1] & 0x80) !== 0;
    const mask = masked ? b.slice(at, at + 4) : undefined;
    if (masked) at += 4;
    if (b.length < at + length) return undefined;
    const payload = b.slice(at, at + length);
    if (mask !== undefined) { for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4]; }
    const raw = b.slice(0, at + length);
    this.#pending = b.slice(at + length);
    return { raw, message: { opcode: b[0] & 0x0f, payload } };
  }
}

/** The proxy; create it with {@linkcode FaultProxy.start}. */
export class FaultProxy {
  #listener: Deno.Listener;
  #targetPort: number;
  #plan: (index: number) => Fault;
  #open = new Set<Deno.Conn>();
  #accepting: Promise<void>;
  /** What happened so far. */
  readonly stats: ProxyStats = { connections: 0, cuts: 0, stalls: 0, halfCloses: 0 };

  private constructor(
    targetPort: number,
    plan: (index: number) => Fault,
    listen: { hostname: string; port: number },
  ) {
    this.#listener = Deno.listen(listen);
    this.#targetPort = targetPort;
    this.#plan = plan;
    this.#accepting = this.#accept();
  }

  /**
   * Starts a proxy to `127.0.0.1:targetPort`, listening on `listen` (a port of
   * its own on 127.0.0.1 by default); `plan` says what to do to the n-th
   * connection (from 0).
   */
  static start(
    targetPort: number,
    plan: (index: number) => Fault,
    listen: { hostname: string; port: number } = { hostname: "127.0.0.1", port: 0 },
  ): FaultProxy {
    return new FaultProxy(targetPort, plan, listen);
  }

  /** The port relays should dial. */
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** Stops accepting and closes every connection. */
  async close(): Promise<void> {
    this.#listener.close();
    for (const conn of this.#open) this.#closeQuietly(conn);
    await this.#accepting;
  }

  #closeQuietly(conn: Deno.Conn): void {
    this.#open.delete(conn);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }

  async #accept(): Promise<void> {
    try {
      for await (const client of this.#listener) {
        const index = this.stats.connections++;
        this.#serve(client, this.#plan(index)).catch(() => {});
      }
    } catch {
      // The listener was closed.
    }
  }

  async #serve(client: Deno.Conn, fault: Fault): Promise<void> {
    this.#open.add(client);
    let server: Deno.Conn;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: this.#targetPort });
    } catch {
      this.#closeQuietly(client);
      return;
    }
    this.#open.add(server);
    const state = { cut: false, stalled: false, upBytes: 0 };
    const cut = (): void => {
      if (state.cut) return;
      state.cut = true;
      this.stats.cuts++;
      this.#closeQuietly(client);
      this.#closeQuietly(server);
    };
    const pump = async (from: Deno.Conn, to: Deno.Conn, direction: Direction): Promise<void> => {
      const splitter = [fault.cutOnMessage, fault.stallAfterMessage, fault.watch]
          .some((rule) => rule?.direction === direction)
        ? new FrameSplitter()
        : undefined;
      const buffer = new Uint8Array(64 * 1024);
      let moved = 0;
      while (!state.cut) {
        let n: number | null;
        try {
          n = await from.read(buffer);
        } catch {
          n = null;
        }
        if (n === null) break;
        if (state.stalled) continue;
        let chunk = buffer.slice(0, n);
        const cutAt = fault.cutAfter?.direction === direction
          ? fault.cutAfter.bytes - moved
          : Infinity;
        const stallAt = fault.stallAfter?.direction === direction
          ? fault.stallAfter.bytes - moved
          : Infinity;
        if (stallAt <= chunk.length) {
          chunk = chunk.slice(0, Math.max(0, stallAt));
          await this.#write(to, chunk, fault.delayMs);
          state.stalled = true;
          this.stats.stalls++;
          // Keep reading so the sender sees nothing wrong; pass nothing on, like a dead path.
          continue;
        }
        if (cutAt <= chunk.length) {
          await this.#write(to, chunk.slice(0, Math.max(0, cutAt)), fault.delayMs);
          cut();
          return;
        }
        moved += chunk.length;
        if (direction === "up") state.upBytes += chunk.length;
        if (splitter === undefined) {
          await this.#write(to, chunk, fault.delayMs);
        } else {
          for (const unit of splitter.push(chunk)) {
            const message = unit.message;
            const rules = (
              rule?: { direction: Direction; matches: (m: WireMessage) => boolean },
            ): boolean =>
              message !== undefined && rule?.direction === direction && rule.matches(message);
            if (rules(fault.cutOnMessage)) {
              cut();
              return;
            }
            if (state.stalled) break;
            await this.#write(to, unit.raw, fault.delayMs);
            if (rules(fault.watch)) fault.watch?.seen();
            if (rules(fault.stallAfterMessage)) {
              state.stalled = true;
              this.stats.stalls++;
            }
          }
        }
        const half = fault.halfCloseAfter;
        if (half !== undefined && state.upBytes >= half.upBytes && !state.cut) {
          // Both pumps check: take the fault before awaiting, so it happens once.
          fault.halfCloseAfter = undefined;
          const target = half.direction === "up" ? server : client;
          try {
            await target.closeWrite();
            this.stats.halfCloses++;
          } catch {
            // The socket is gone already.
          }
          if (half.direction === direction) return;
        }
      }
      if (!state.cut && !state.stalled) {
        try {
          await to.closeWrite();
        } catch {
          // Closed meanwhile.
        }
      }
    };
    await Promise.all([pump(client, server, "up"), pump(server, client, "down")]);
    if (!state.stalled) {
      this.#closeQuietly(client);
      this.#closeQuietly(server);
    }
  }

  async #write(to: Deno.Conn, bytes: Uint8Array, delayMs: number | undefined): Promise<void> {
    if (delayMs !== undefined && delayMs > 0) {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
    let done = 0;
    try {
      while (done < bytes.length) done += await to.write(bytes.subarray(done));
    } catch {
      // The other side went away; its own pump will notice.
    }
  }
}

/** Whether a proxied message is a control message of the given type. */
export function isControl(type: string): (message: WireMessage) => boolean {
  const marker = `"type":"${type}"`;
  return (message) =>
    message.opcode === 1 && new TextDecoder().decode(message.payload).includes(marker);
}

/** A small seeded generator (mulberry32), so a failing fault run can be replayed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
