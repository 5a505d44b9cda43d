/**
 * Data messages out of data frames (RFC 6455 section 5.4): which frames
 * begin, continue and end a message, the limit on a message's length (the
 * sum of its frames, judged by their headers before a byte is read), and a
 * text message's UTF-8.
 *
 * @module
 */

import { concatBytes } from "../../io.ts";
import { Opcode, WebSocketError } from "./frames.ts";

/** Decodes whole messages (never streaming), so one decoder serves every connection. */
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The message being assembled: its opcode and its frames' payloads so far. */
interface Fragments {
  opcode: number;
  parts: Uint8Array[];
  bytes: number;
}

/** Assembles one connection's data messages, a frame at a time. */
export class MessageAssembler {
  #fragments: Fragments | undefined;
  /** Set while the rest of a message is read past and dropped. */
  #skipping = false;
  #onTooLarge: (length: number, limit: number) => void;
  /** Longest message (the sum of its frames) accepted from now on. */
  maxMessageBytes: number;

  /** `onTooLarge` hears of each message dropped for its length. */
  constructor(
    { maxMessageBytes, onTooLarge }: {
      maxMessageBytes: number;
      onTooLarge: (length: number, limit: number) => void;
    },
  ) {
    this.maxMessageBytes = maxMessageBytes;
    this.#onTooLarge = onTooLarge;
  }

  /**
   * Judges a data frame by its header: whether its payload is kept. Throws
   * {@linkcode WebSocketError} for a frame out of sequence. A message over
   * {@linkcode maxMessageBytes} is dropped; so is the rest of a dropped
   * message, and every message when `accepting` is false. (No object per
   * call: a flood of tiny frames must not make garbage.)
   */
  begin(header: { opcode: number; fin: boolean; length: number }, accepting: boolean): boolean {
    const { opcode } = header;
    if (opcode === Opcode.continuation && this.#fragments === undefined && !this.#skipping) {
      throw new WebSocketError("A continuation frame arrived with no message to continue.");
    }
    if (opcode !== Opcode.continuation && (this.#fragments !== undefined || this.#skipping)) {
      throw new WebSocketError("A new message began before the previous one ended.");
    }
    let keep = accepting && !this.#skipping;
    const total = (this.#fragments?.bytes ?? 0) + header.length;
    if (keep && total > this.maxMessageBytes) {
      keep = false;
      this.#fragments = undefined;
      this.#onTooLarge(total, this.maxMessageBytes);
    }
    // A dropped frame drops the rest of its message: nothing of it is kept.
    this.#skipping = !keep && !header.fin;
    return keep;
  }

  /**
   * Takes a kept frame's payload; returns the whole message once its last
   * frame is in (a string for text), or undefined. Throws
   * {@linkcode WebSocketError} (1007) for text that is not UTF-8.
   */
  end(
    header: { opcode: number; fin: boolean },
    payload: Uint8Array,
  ): string | Uint8Array | undefined {
    if (!header.fin) {
      this.#fragments ??= { opcode: header.opcode, parts: [], bytes: 0 };
      this.#fragments.parts.push(payload);
      this.#fragments.bytes += payload.byteLength;
      return undefined;
    }
    const opcode = this.#fragments?.opcode ?? header.opcode;
    const whole = this.#fragments === undefined
      ? payload
      : concatBytes([...this.#fragments.parts, payload]);
    this.#fragments = undefined;
    if (opcode !== Opcode.text) return whole;
    try {
      return strictUtf8.decode(whole);
    } catch {
      throw new WebSocketError("A text message is not valid UTF-8.", 1007);
    }
  }
}
