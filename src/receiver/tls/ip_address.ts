/**
 * IP addresses in text form as bytes, which both a certificate's
 * SubjectAltName and the kernel's socket tables are written in.
 *
 * @module
 */

/** The 4 bytes of a dotted IPv4 address, or undefined for anything else. */
export function ipv4Bytes(text: string): Uint8Array | undefined {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (match === null) return undefined;
  const parts = match.slice(1).map(Number);
  return parts.every((part) => part <= 255) ? Uint8Array.from(parts) : undefined;
}

/** The 16 bytes of an IPv6 address in text form (`::` allowed), or undefined for anything else. */
export function ipv6Bytes(text: string): Uint8Array | undefined {
  if (!text.includes(":")) return undefined;
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const groups = (part: string | undefined): number[] =>
    part === undefined || part === "" ? [] : part.split(":").map((group) => parseInt(group, 16));
  const front = groups(head);
  const back = groups(tail);
  const all = tail === undefined
    ? front
    : [...front, ...new Array(8 - front.length - back.length).fill(0), ...back];
  if (all.length !== 8 || all.some((group) => !(group >= 0 && group <= 0xffff))) return undefined;
  const bytes = new Uint8Array(16);
  all.forEach((group, i) => {
    bytes[i * 2] = group >> 8;
    bytes[i * 2 + 1] = group & 0xff;
  });
  return bytes;
}
