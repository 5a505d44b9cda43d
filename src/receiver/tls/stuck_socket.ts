/**
 * Ending a TLS connection whose handshake never completed. Deno's close()
 * on such a connection waits for the handshake to finish before it lets go
 * of the socket (denoland/deno#14547), so a client that connects and says
 * nothing would keep its socket, and a descriptor, forever. The socket is
 * shut down underneath instead: found by its addresses in /proc, then
 * shutdown(2) through the C library, which ends the handshake with an error
 * and frees the descriptor. Linux with glibc only; elsewhere close() is all
 * there is.
 *
 * @module
 */

import { ownDescriptors } from "../../descriptors.ts";
import { libc } from "../../libc.ts";
import { ipv4Bytes, ipv6Bytes } from "./ip_address.ts";

/** shutdown(2)'s "both directions". */
const SHUT_RDWR = 2;

/** An address as /proc/net/tcp writes it: the IP in host byte order, in hex, then the port. */
function procAddress(address: Deno.NetAddr): string | undefined {
  const port = address.port.toString(16).toUpperCase().padStart(4, "0");
  const v4 = ipv4Bytes(address.hostname);
  if (v4 !== undefined) {
    const hex = [...v4].reverse().map((part) => part.toString(16).padStart(2, "0"));
    return `${hex.join("").toUpperCase()}:${port}`;
  }
  const bytes = ipv6Bytes(address.hostname);
  if (bytes === undefined) return undefined;
  let hex = "";
  // Four 32-bit words, each in host (little-endian) byte order.
  for (let word = 0; word < 16; word += 4) {
    for (let i = 3; i >= 0; i--) hex += bytes[word + i].toString(16).padStart(2, "0");
  }
  return `${hex.toUpperCase()}:${port}`;
}

/** The inode of the TCP socket from `local` to `remote`, from /proc/self/net. */
function socketInode(local: Deno.NetAddr, remote: Deno.NetAddr): string | undefined {
  const wanted = `${procAddress(local)} ${procAddress(remote)}`;
  const table = local.hostname.includes(":") ? "tcp6" : "tcp";
  const lines = Deno.readTextFileSync(`/proc/self/net/${table}`).split("\n");
  for (const line of lines) {
    const fields = line.trim().split(/\s+/);
    if (`${fields[1]} ${fields[2]}` === wanted) return fields[9];
  }
  return undefined;
}

/**
 * Shuts `conn`'s socket down in both directions, so that a handshake that
 * waits for the peer ends at once; returns whether it could. Call close()
 * as well: this frees nothing by itself.
 */
export function shutDownSocket(conn: Deno.Conn): boolean {
  const c = libc();
  if (typeof c === "string") return false;
  if (conn.localAddr.transport !== "tcp" || conn.remoteAddr.transport !== "tcp") return false;
  try {
    const inode = socketInode(conn.localAddr, conn.remoteAddr);
    if (inode === undefined) return false;
    const socket = ownDescriptors().find(({ link }) => link === `socket:[${inode}]`);
    if (socket !== undefined) return c.shutdown(socket.fd, SHUT_RDWR) === 0;
  } catch {
    // /proc unreadable: nothing more can be done than close().
  }
  return false;
}
