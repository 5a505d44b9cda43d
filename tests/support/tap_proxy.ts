/**
 * Test support: a proxy in the middle of the relay's connection that keeps a
 * copy of everything it passes on. Plain, it records the bytes on the wire,
 * as someone capturing the pod network would. With a certificate of its own
 * it plays a man in the middle: it ends TLS itself, opens its own TLS
 * connection to the receiver, and records what it could decrypt.
 *
 * @module
 */

import { concatBytes } from "../../src/io.ts";

/** Settings of a {@linkcode TapProxy}. */
export interface TapOptions {
  /** Where the proxy forwards to. */
  target: { hostname: string; port: number };
  /** Serve TLS with this certificate and key (a man in the middle); plain TCP when absent. */
  serve?: { certPem: string; keyPem: string };
  /** Reach the target over TLS, trusting this CA (what the man in the middle does). */
  targetCaPem?: string;
}

/** A recording proxy on a free loopback port. */
export class TapProxy implements AsyncDisposable {
  #listener: Deno.Listener;
  #options: TapOptions;
  #open = new Set<Deno.Conn>();
  #recorded: Record<"up" | "down", Uint8Array[]> = { up: [], down: [] };
  #accepting: Promise<void>;
  /** Connections accepted, and failures the proxy saw (a failed TLS handshake among them). */
  readonly stats = { connections: 0, failures: [] as string[] };

  /** Starts listening on 127.0.0.1, on a port the OS picks. */
  constructor(options: TapOptions) {
    this.#options = options;
    this.#listener = options.serve === undefined
      ? Deno.listen({ hostname: "127.0.0.1", port: 0 })
      : Deno.listenTls({
        hostname: "127.0.0.1",
        port: 0,
        cert: options.serve.certPem,
        key: options.serve.keyPem,
      });
    this.#accepting = this.#accept();
  }

  /** The port to dial. */
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /**
   * What the proxy saw going `direction` (up: from the relay; down: to it),
   * or both ways, as one byte string.
   */
  recorded(direction?: "up" | "down"): Uint8Array {
    const parts = direction === undefined
      ? [...this.#recorded.up, ...this.#recorded.down]
      : this.#recorded[direction];
    return concatBytes(parts);
  }

  /** Whether `text` (as UTF-8) occurs anywhere in what the proxy saw. */
  saw(text: string): boolean {
    const needle = new TextEncoder().encode(text);
    const haystack = this.recorded();
    outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
      for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
      return true;
    }
    return false;
  }

  async #accept(): Promise<void> {
    try {
      for await (const client of this.#listener) {
        this.stats.connections++;
        this.#serve(client).catch((error) => this.stats.failures.push(String(error)));
      }
    } catch {
      // The listener was closed.
    }
  }

  async #serve(client: Deno.Conn): Promise<void> {
    this.#open.add(client);
    const { target, targetCaPem } = this.#options;
    let server: Deno.Conn;
    try {
      if ("handshake" in client) await (client as Deno.TlsConn).handshake();
      server = targetCaPem === undefined
        ? await Deno.connect(target)
        : await Deno.connectTls({ ...target, caCerts: [targetCaPem] });
    } catch (error) {
      this.#close(client);
      throw error;
    }
    this.#open.add(server);
    await Promise.all([this.#pump(client, server, "up"), this.#pump(server, client, "down")]);
  }

  async #pump(from: Deno.Conn, to: Deno.Conn, direction: "up" | "down"): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (let n = await from.read(buffer); n !== null; n = await from.read(buffer)) {
        const chunk = buffer.slice(0, n);
        this.#recorded[direction].push(chunk);
        for (let done = 0; done < chunk.byteLength;) done += await to.write(chunk.subarray(done));
      }
    } catch {
      // Either side went away.
    } finally {
      this.#close(from);
      this.#close(to);
    }
  }

  #close(conn: Deno.Conn): void {
    this.#open.delete(conn);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }

  /** Stops listening and closes every connection. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    for (const conn of [...this.#open]) this.#close(conn);
    await this.#accepting;
  }
}
