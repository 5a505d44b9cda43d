/**
 * Turns Nagle's algorithm off on the relay's connection. Deno's WebSocket
 * client connects through hyper's connector, which leaves TCP_NODELAY off and
 * offers no way to set it (denoland/deno#35581 proposes one for
 * `Deno.createHttpClient`). With Nagle on, a DATA frame sent while the relay's
 * previous small message (a pong) is not yet acknowledged waits for that
 * acknowledgement, which the receiver delays by up to 40 ms: a lone line
 * then arrives tens of milliseconds late, about once per ping interval.
 *
 * @module
 */

import { libc } from "../libc.ts";
import { ownDescriptors } from "../descriptors.ts";

/** setsockopt(2) level and option (Linux). */
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;

/** The option's value, 1, as a C int. */
const ON = new Int32Array([1]);

/**
 * Sets TCP_NODELAY on every socket this process holds: the relay holds no
 * TCP socket but its connections to the receiver, and on any other kind of
 * socket the call fails harmlessly. Returns how many sockets took it.
 */
export function disableNagle(): number {
  const c = libc();
  if (typeof c === "string") return 0;
  const on = new Uint8Array(ON.buffer);
  let set = 0;
  for (const { fd, link } of ownDescriptors()) {
    if (link.startsWith("socket:") && c.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, on, 4) === 0) {
      set++;
    }
  }
  return set;
}
