/**
 * Just enough DER (ITU-T X.690) to write an X.509 certificate: the few types
 * a certificate uses, encoded from values. It writes and never parses, so it
 * has no input from anybody to distrust.
 *
 * @module
 */

import { concatBytes } from "../../io.ts";

/** Encoded DER, ready to nest in another value. */
export type Der = Uint8Array<ArrayBuffer>;

/** Tag numbers of the universal types used. */
const Tag = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  objectIdentifier: 0x06,
  utf8String: 0x0c,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

/** A value with `tag` and the given contents. */
export function tagged(tag: number, contents: Uint8Array): Der {
  const length = contents.byteLength;
  const lengthBytes: number[] = [];
  if (length < 0x80) {
    lengthBytes.push(length);
  } else {
    for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) {
      lengthBytes.unshift(rest & 0xff);
    }
    lengthBytes.unshift(0x80 | lengthBytes.length);
  }
  const out = new Uint8Array(1 + lengthBytes.length + length);
  out[0] = tag;
  out.set(lengthBytes, 1);
  out.set(contents, 1 + lengthBytes.length);
  return out;
}

/** SEQUENCE of `items`. */
export function sequence(...items: Der[]): Der {
  return tagged(Tag.sequence, concatBytes(items));
}

/** SET of `items` (one item here, so no sorting is needed). */
export function set(item: Der): Der {
  return tagged(Tag.set, item);
}

/** A context-specific, constructed, explicitly tagged value: `[number] EXPLICIT`. */
export function explicit(number: number, value: Der): Der {
  return tagged(0xa0 | number, value);
}

/** A context-specific, primitive, implicitly tagged value: `[number] IMPLICIT`. */
export function implicit(number: number, contents: Uint8Array): Der {
  return tagged(0x80 | number, contents);
}

/** BOOLEAN. */
export function boolean(value: boolean): Der {
  return tagged(Tag.boolean, Uint8Array.of(value ? 0xff : 0x00));
}

/** INTEGER from big-endian unsigned bytes: leading zeros trimmed, a sign byte added if needed. */
export function unsignedInteger(bytes: Uint8Array): Der {
  let start = 0;
  while (start < bytes.byteLength - 1 && bytes[start] === 0) start++;
  const trimmed = bytes.subarray(start);
  const contents = trimmed[0] & 0x80 ? concatBytes([Uint8Array.of(0), trimmed]) : trimmed;
  return tagged(Tag.integer, contents);
}

/** INTEGER from a small non-negative number. */
export function smallInteger(value: number): Der {
  const bytes: number[] = [];
  for (let rest = value; bytes.length === 0 || rest > 0; rest = Math.floor(rest / 256)) {
    bytes.unshift(rest & 0xff);
  }
  return unsignedInteger(Uint8Array.from(bytes));
}

/** OBJECT IDENTIFIER from its dotted form. */
export function objectIdentifier(dotted: string): Der {
  const arcs = dotted.split(".").map(Number);
  const bytes: number[] = [arcs[0] * 40 + arcs[1]];
  for (const arc of arcs.slice(2)) {
    const base128: number[] = [arc & 0x7f];
    for (let rest = Math.floor(arc / 128); rest > 0; rest = Math.floor(rest / 128)) {
      base128.unshift(0x80 | (rest & 0x7f));
    }
    bytes.push(...base128);
  }
  return tagged(Tag.objectIdentifier, Uint8Array.from(bytes));
}

/** BIT STRING holding whole bytes. */
export function bitString(bytes: Uint8Array): Der {
  return tagged(Tag.bitString, concatBytes([Uint8Array.of(0), bytes]));
}

/**
 * BIT STRING of named bits, as KeyUsage writes them: bit 0 is the most
 * significant bit of the first byte, and unused trailing bits are counted.
 */
export function namedBits(bits: readonly number[]): Der {
  const highest = Math.max(...bits);
  const bytes = new Uint8Array(Math.floor(highest / 8) + 1);
  for (const bit of bits) bytes[Math.floor(bit / 8)] |= 0x80 >> (bit % 8);
  const unused = 7 - (highest % 8);
  return tagged(Tag.bitString, concatBytes([Uint8Array.of(unused), bytes]));
}

/** OCTET STRING. */
export function octetString(bytes: Uint8Array): Der {
  return tagged(Tag.octetString, bytes);
}

/** UTF8String. */
export function utf8String(text: string): Der {
  return tagged(Tag.utf8String, new TextEncoder().encode(text));
}

/**
 * A certificate time: UTCTime through 2049, GeneralizedTime after, as RFC
 * 5280 4.1.2.5 requires.
 */
export function time(date: Date): Der {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, "") + "Z";
  const year = date.getUTCFullYear();
  return year < 2050
    ? tagged(Tag.utcTime, new TextEncoder().encode(digits.slice(2)))
    : tagged(Tag.generalizedTime, new TextEncoder().encode(digits));
}

/**
 * An ECDSA signature as X.509 carries it, `SEQUENCE { r INTEGER, s INTEGER }`,
 * from Web Crypto's fixed-width `r || s`.
 */
export function ecdsaSignature(raw: Uint8Array): Der {
  const half = raw.byteLength / 2;
  return sequence(unsignedInteger(raw.subarray(0, half)), unsignedInteger(raw.subarray(half)));
}

/** PEM text of `der` under `label` (`CERTIFICATE`, `PRIVATE KEY`). */
export function pem(label: string, der: Uint8Array): string {
  let binary = "";
  for (const byte of der) binary += String.fromCharCode(byte);
  const lines = btoa(binary).match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}
