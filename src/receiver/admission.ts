/**
 * The receiver's front door: listens, accepts connections without ever running
 * out of descriptors, reads each request head against a deadline and a size
 * limit, and answers everything but a well-formed, authenticated WebSocket
 * upgrade on the stream path with a plain refusal. With a certificate it
 * speaks only TLS, and the deadline on the request head covers the TLS
 * handshake too. Nothing a client sends is ever echoed to the user's
 * terminal: refusals name the peer's address and the rule it broke.
 *
 * @module
 */

import { errorMessage } from "../errors.ts";
import { settlesWithin } from "../timing.ts";
import { STREAM_PATH } from "../protocol/mod.ts";
import { authorizationMatches } from "../protocol/mod.ts";
import { RefusalLog } from "./refusal_log.ts";
import { shutDownSocket } from "./tls/stuck_socket.ts";
import {
  BadRequestError,
  headEnd,
  isValidKey,
  listsToken,
  parseRequestHead,
  refusalResponse,
  type RequestHead,
  switchingProtocolsResponse,
} from "./websocket/http_head.ts";

/** How long a client has to send its whole request head. */
export const HEADER_TIMEOUT_MS = 5_000;

/** Longest request head accepted. */
export const MAX_HEAD_BYTES = 8 * 1024;

/**
 * Connections open at once, at most, whatever their state: far above what one
 * build's relay needs (one, briefly two while a reconnect overlaps a dying
 * connection), and lowered to half the descriptor limit where that is less.
 */
export const MAX_OPEN_CONNECTIONS = 512;

/**
 * The connection limit of this process: {@linkcode MAX_OPEN_CONNECTIONS}, or
 * half the descriptors it has left, if that is less.
 */
export function openConnectionLimit(): number {
  let soft: number;
  let used: number;
  try {
    const limits = Deno.readTextFileSync("/proc/self/limits");
    soft = Number(/^Max open files\s+(\d+)/m.exec(limits)?.[1]);
    used = [...Deno.readDirSync("/proc/self/fd")].length;
  } catch {
    return MAX_OPEN_CONNECTIONS;
  }
  if (!Number.isSafeInteger(soft)) return MAX_OPEN_CONNECTIONS;
  return Math.max(4, Math.min(MAX_OPEN_CONNECTIONS, Math.floor((soft - used) / 2)));
}

/** How long a refusal may take to write before the connection is closed anyway. */
const REFUSAL_WRITE_TIMEOUT_MS = 1_000;

/** How long accepting pauses when the process is out of descriptors. */
const DESCRIPTOR_BACKOFF_MS = 100;

/** An accepted upgrade: the connection, answered 101, and what came after its head. */
export interface Upgrade {
  conn: Deno.Conn;
  /** Bytes read past the head: the start of the first frames. */
  leftover: Uint8Array;
  /** The peer's address, for messages. */
  remote: string;
  /** Call once the connection has ended, so that it no longer counts against the limit. */
  release: () => void;
}

/** A refusal of an otherwise acceptable upgrade, decided by the receiver's state. */
export interface Refusal {
  status: number;
  reason: string;
}

/** Settings of an {@linkcode Admission}. */
export interface AdmissionOptions {
  /** Address to listen on. */
  hostname: string;
  /** Port to listen on; 0 lets the OS pick one. */
  port: number;
  /** The per-build secret a client must present. */
  token: string;
  /** The certificate (chain) and private key to serve TLS with, in PEM; plain TCP when absent. */
  tls?: { certPem: string; keyPem: string };
  /** Writes one of phonehome's own messages. */
  log: (text: string) => void;
  /** Says whether the receiver can take an upgrade now; undefined when it can. */
  check: () => Refusal | undefined;
  /** Takes over an upgraded connection. */
  accept: (upgrade: Upgrade) => void;
}

/** Formats a peer address as HOST:PORT, with IPv6 hosts in brackets. */
export function formatRemote(address: Deno.Addr): string {
  if (address.transport !== "tcp" && address.transport !== "udp") return address.transport;
  const host = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname;
  return `${host}:${address.port}`;
}

/** The listener and its checks; create it with {@linkcode Admission.listen}. */
export class Admission {
  #options: AdmissionOptions;
  #listener: Deno.Listener;
  /** Every accepted connection not yet released, upgraded or not. */
  #open = new Set<Deno.Conn>();
  /** Connections still being admitted: their heads are being read or answered. */
  #admitting = new Set<Deno.Conn>();
  #refusals: RefusalLog;
  #closes: RefusalLog;
  #maxOpen = openConnectionLimit();
  /** TLS connections whose handshake has not completed: close() alone would not free them. */
  #handshaking = new Set<Deno.Conn>();
  #closed = false;
  /** Settles when the accept loop has ended. */
  readonly done: Promise<void>;

  private constructor(options: AdmissionOptions, listener: Deno.Listener) {
    this.#options = options;
    this.#listener = listener;
    // Closes of upgraded connections are counted apart, so that a flood of refusals cannot
    // hide them.
    this.#refusals = new RefusalLog(options.log);
    this.#closes = new RefusalLog(options.log);
    this.done = this.#acceptLoop();
  }

  /**
   * Starts listening; throws Deno's errors for an address in use or not
   * available, or for a certificate or key it cannot use.
   */
  static listen(options: AdmissionOptions): Admission {
    const { hostname, port, tls } = options;
    const listener = tls === undefined ? Deno.listen({ hostname, port }) : Deno.listenTls({
      hostname,
      port,
      cert: tls.certPem,
      key: tls.keyPem,
      // No ALPN: Deno's WebSocket client, when its HTTP/1.1 attempt fails, tries again asking
      // for h2 alone; refusing that by ALPN would hide why the first attempt failed (a
      // certificate it does not trust) behind "no application protocol".
    });
    return new Admission(options, listener);
  }

  /** The port the listener has. */
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** Stops accepting and drops connections that were never upgraded. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#refusals.stop();
    this.#closes.stop();
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    for (const conn of this.#admitting) this.#drop(conn);
  }

  /** Tells the user, rate-limited, that an upgraded connection from `remote` was closed. */
  noteClosed(remote: string, reason: string): void {
    this.#closes.note(remote, reason, "Closed");
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closed) return;
        // Out of descriptors (EMFILE, ENFILE) or a connection reset before it was accepted:
        // neither may end the receiver. Pause so a persistent failure does not spin.
        this.#refusals.note("(unknown)", `cannot accept a connection: ${errorMessage(error)}`);
        await new Promise((resolve) => setTimeout(resolve, DESCRIPTOR_BACKOFF_MS));
        continue;
      }
      if (this.#closed) {
        this.#drop(conn);
        return;
      }
      this.#handle(conn).catch(() => {});
    }
  }

  async #handle(conn: Deno.Conn): Promise<void> {
    const remote = formatRemote(conn.remoteAddr);
    if (this.#open.size >= this.#maxOpen) {
      // Refused before reading anything: the descriptor limit must never be reached.
      this.#refusals.note(remote, `${this.#maxOpen} connections are open already.`);
      await this.#answer(conn, 503, "Too many connections are open.");
      return;
    }
    this.#open.add(conn);
    this.#admitting.add(conn);
    if (this.#options.tls !== undefined) {
      this.#handshaking.add(conn);
      const done = (): boolean => this.#handshaking.delete(conn);
      (conn as Deno.TlsConn).handshake().then(done, done);
    }
    let handedOver = false;
    try {
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      const request = await readHead(conn, () => this.#drop(conn));
      if (typeof request === "number") {
        const reason = request === 408
          ? `its request was not complete within ${HEADER_TIMEOUT_MS / 1000}s.`
          : request === 431
          ? `its request head is over ${MAX_HEAD_BYTES} bytes.`
          : "it closed before its request was complete.";
        this.#refusals.note(remote, reason);
        if (request === 431) await this.#answer(conn, 431, "The request head is too long.");
        return;
      }
      const { head, leftover } = request;
      const refusal = head instanceof BadRequestError
        ? { status: 400, reason: `Bad request: ${head.message}.` }
        : this.#judge(head);
      if (refusal !== undefined) {
        this.#refusals.note(remote, refusal.reason);
        await this.#answer(
          conn,
          refusal.status,
          refusal.reason,
          refusal.status === 401
            ? { "WWW-Authenticate": 'Bearer realm="phonehome"' }
            : refusal.status === 426
            ? { "Upgrade": "websocket", "Sec-WebSocket-Version": "13" }
            : {},
        );
        return;
      }
      if (head instanceof BadRequestError) return;
      await writeAll(conn, switchingProtocolsResponse(head.headers.get("sec-websocket-key") ?? ""));
      handedOver = true;
      this.#admitting.delete(conn);
      this.#options.accept({ conn, leftover, remote, release: () => this.#open.delete(conn) });
    } catch (error) {
      // A connection that fails while being admitted (reset, or a TLS handshake that failed:
      // a client that does not trust this certificate, or that does not speak TLS) is dropped.
      this.#refusals.note(remote, `the connection failed: ${errorMessage(error)}.`);
    } finally {
      if (!handedOver) {
        this.#open.delete(conn);
        this.#admitting.delete(conn);
        this.#drop(conn);
      }
    }
  }

  #judge(head: RequestHead): Refusal | undefined {
    if (head.path !== STREAM_PATH) return { status: 404, reason: "Unknown path." };
    if (!authorizationMatches(head.headers.get("authorization") ?? null, this.#options.token)) {
      return { status: 401, reason: "Missing or wrong secret." };
    }
    const { headers } = head;
    const isUpgrade = head.method === "GET" && listsToken(headers.get("upgrade"), "websocket") &&
      listsToken(headers.get("connection"), "upgrade") &&
      isValidKey(headers.get("sec-websocket-key"));
    if (!isUpgrade || headers.get("sec-websocket-version") !== "13") {
      return { status: 426, reason: "Not a WebSocket upgrade (version 13)." };
    }
    return this.#options.check();
  }

  async #answer(
    conn: Deno.Conn,
    status: number,
    body: string,
    headers: Readonly<Record<string, string>> = {},
  ): Promise<void> {
    // A write may wait for a TLS handshake that never completes: it gets a deadline.
    await settlesWithin(
      writeAll(conn, refusalResponse(status, body, headers)),
      REFUSAL_WRITE_TIMEOUT_MS,
    );
    this.#drop(conn);
  }

  /** Closes `conn`, shutting its socket down first if a TLS handshake still holds it. */
  #drop(conn: Deno.Conn): void {
    if (this.#handshaking.delete(conn)) shutDownSocket(conn);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

/**
 * Reads a request head: the parsed head (or why it is bad) and the bytes after
 * it; or the status it was refused with: 408 past the deadline (answered
 * here, then `drop` ends the connection), 431 when too long, 0 when the
 * client closed first.
 */
async function readHead(
  conn: Deno.Conn,
  drop: () => void,
): Promise<{ head: RequestHead | BadRequestError; leftover: Uint8Array } | number> {
  const buffer = new Uint8Array(MAX_HEAD_BYTES);
  let filled = 0;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    // Closing is the only way to interrupt the pending read; answer first, briefly: over TLS
    // the answer may wait for a handshake that never completes.
    settlesWithin(
      writeAll(conn, refusalResponse(408, "The request was not complete in time.")),
      REFUSAL_WRITE_TIMEOUT_MS,
    )
      .finally(drop);
  }, HEADER_TIMEOUT_MS);
  try {
    while (true) {
      if (filled === buffer.byteLength) return 431;
      let read: number | null;
      try {
        read = await conn.read(buffer.subarray(filled));
      } catch (error) {
        if (timedOut) return 408;
        throw error;
      }
      if (timedOut) return 408;
      if (read === null) return 0;
      filled += read;
      const end = headEnd(buffer.subarray(0, filled));
      if (end === -1) continue;
      const leftover = buffer.slice(end, filled);
      try {
        return { head: parseRequestHead(buffer.subarray(0, end)), leftover };
      } catch (error) {
        if (error instanceof BadRequestError) return { head: error, leftover };
        throw error;
      }
    }
  } finally {
    clearTimeout(timer);
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) done += await conn.write(bytes.subarray(done));
}
