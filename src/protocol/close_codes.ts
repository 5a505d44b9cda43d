/**
 * How connections end: the close codes phonehome uses, the error that maps a
 * violation to one, and the one place close reasons are cut to fit.
 *
 * @module
 */

/** Longest close reason RFC 6455 allows, in bytes of UTF-8. */
export const MAX_CLOSE_REASON_BYTES = 123;

/**
 * `reason` cut to fit a close frame (123 bytes of UTF-8) without splitting a
 * character; every close either side sends goes through here.
 */
export function closeReason(reason: string): string {
  const bytes = new TextEncoder().encode(reason);
  if (bytes.byteLength <= MAX_CLOSE_REASON_BYTES) return reason;
  // Room for the ellipsis (3 bytes); a character cut in half decodes to U+FFFD and is dropped.
  const cut = new TextDecoder().decode(bytes.subarray(0, MAX_CLOSE_REASON_BYTES - 3));
  return `${cut.replace(/\uFFFD+$/, "")}\u2026`;
}

/** WebSocket close codes used by phonehome (4000-4999 is the private range). */
export const CloseCode = {
  /** Normal closure after the verdict. */
  normal: 1000,
  /** The peer speaks a protocol version this side does not. */
  versionMismatch: 4001,
  /** The peer sent something the protocol does not allow. */
  protocolViolation: 4002,
  /** A newer connection of the same build took over (fencing). */
  superseded: 4003,
  /** The receiver cannot take the stream any more (output closed, shutting down). */
  receiverGone: 4004,
  /** No ping answered within the liveness deadline. */
  peerUnresponsive: 4005,
} as const;

/** One of phonehome's close codes. */
export type CloseCode = typeof CloseCode[keyof typeof CloseCode];

/** The close codes after which a relay gives up at once: retrying cannot help. */
export const FINAL_CLOSE_CODES: ReadonlySet<CloseCode> = new Set([
  CloseCode.versionMismatch,
  CloseCode.protocolViolation,
  CloseCode.superseded,
  CloseCode.receiverGone,
]);

/** Raised when bytes on the wire break the protocol; the connection must be closed. */
export class ProtocolError extends Error {
  /** The WebSocket close code that reports this violation to the peer. */
  readonly closeCode: CloseCode;

  /** Creates a protocol error with the close code to send to the peer. */
  constructor(message: string, closeCode: CloseCode = CloseCode.protocolViolation) {
    super(message);
    this.name = "ProtocolError";
    this.closeCode = closeCode;
  }
}
