/**
 * The HTTP/1.1 side of a WebSocket upgrade (RFC 6455 §4.2): parses a request
 * head strictly and without trusting it, and writes the two kinds of answer a
 * receiver gives: 101 Switching Protocols, or a short plain-text refusal after
 * which the connection closes.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** A parsed request head. */
export interface RequestHead {
  method: string;
  /** The request target's path, without a query. */
  path: string;
  /** Header values by lower-case name; repeated headers are joined with ", ". */
  headers: Map<string, string>;
}

/** Why a head could not be parsed; the connection is answered 400. */
export class BadRequestError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "BadRequestError";
  }
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Where the head ends (the index just past CRLF CRLF), or -1 when it has not ended yet. */
export function headEnd(bytes: Uint8Array): number {
  for (let i = 3; i < bytes.byteLength; i++) {
    if (bytes[i] === 10 && bytes[i - 1] === 13 && bytes[i - 2] === 10 && bytes[i - 3] === 13) {
      return i + 1;
    }
  }
  return -1;
}

/**
 * Parses a complete request head (through its blank line). Throws
 * {@linkcode BadRequestError} for anything HTTP/1.1 does not allow: no one
 * line of it is ever echoed anywhere, so the message names only the rule.
 */
export function parseRequestHead(bytes: Uint8Array): RequestHead {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new BadRequestError("the request head is not valid UTF-8");
  }
  const lines = text.split("\r\n");
  const requestLine = /^([A-Z]+) (\S+) HTTP\/1\.1$/.exec(lines[0]);
  if (requestLine === null) throw new BadRequestError("the request line is not HTTP/1.1");
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    if (line === "") break;
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    if (colon <= 0 || !TOKEN.test(name)) throw new BadRequestError("a header line is malformed");
    // Control characters in a value (NUL, bare CR or LF) are never legitimate; tab is.
    const value = line.slice(colon + 1).trim();
    if ([...value].some((c) => (c < " " && c !== "\t") || c === "\u007f")) {
      throw new BadRequestError("a header value holds control characters");
    }
    const previous = headers.get(name);
    headers.set(name, previous === undefined ? value : `${previous}, ${value}`);
  }
  const host = headers.get("host");
  if (host === undefined || !/^[A-Za-z0-9.:_\[\]-]{1,255}$/.test(host)) {
    throw new BadRequestError("the Host header is missing or malformed");
  }
  const target = requestLine[2];
  const query = target.indexOf("?");
  return {
    method: requestLine[1],
    path: query === -1 ? target : target.slice(0, query),
    headers,
  };
}

/** Whether a comma-separated header value lists `token`, compared without case. */
export function listsToken(value: string | undefined, token: string): boolean {
  if (value === undefined) return false;
  return value.split(",").some((item) => item.trim().toLowerCase() === token);
}

/** Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 §4.2.2). */
export function acceptKey(key: string): string {
  return createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest(
    "base64",
  );
}

/** Whether `key` is a valid Sec-WebSocket-Key: 16 bytes in base64. */
export function isValidKey(key: string | undefined): key is string {
  return key !== undefined && /^[A-Za-z0-9+/]{22}==$/.test(key);
}

const REASONS: Readonly<Record<number, string>> = {
  400: "Bad Request",
  401: "Unauthorized",
  404: "Not Found",
  408: "Request Timeout",
  410: "Gone",
  426: "Upgrade Required",
  431: "Request Header Fields Too Large",
  503: "Service Unavailable",
};

/** The whole answer of a refusal: status line, headers and a one-line body. */
export function refusalResponse(
  status: number,
  body: string,
  headers: Readonly<Record<string, string>> = {},
): Uint8Array {
  const payload = new TextEncoder().encode(`${body}\n`);
  const lines = [
    `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}`,
    "Content-Type: text/plain; charset=utf-8",
    `Content-Length: ${payload.byteLength}`,
    "Connection: close",
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
    "",
    "",
  ];
  const head = new TextEncoder().encode(lines.join("\r\n"));
  const answer = new Uint8Array(head.byteLength + payload.byteLength);
  answer.set(head);
  answer.set(payload, head.byteLength);
  return answer;
}

/** The 101 answer that completes an upgrade. */
export function switchingProtocolsResponse(key: string): Uint8Array {
  return new TextEncoder().encode(
    [
      "HTTP/1.1 101 Switching Protocols",
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Accept: ${acceptKey(key)}`,
      "",
      "",
    ].join("\r\n"),
  );
}
