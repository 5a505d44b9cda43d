/**
 * Who owns a build's stream: the first relay whose hello is accepted, and of
 * its connections only the newest attempt, so that a stale connection that
 * lost a race can never take the stream back.
 *
 * @module
 */

import {
  CloseCode,
  type HelloMessage,
  MAX_WINDOW_BYTES,
  MIN_WINDOW_BYTES,
  PROTOCOL_VERSION,
  ProtocolError,
  versionMismatchMessage,
} from "../protocol/mod.ts";

/** The relay that owns the stream, and its newest connection attempt. */
export class StreamOwner {
  #relayId: string | undefined;
  #attempt = 0;

  /** Whether any relay has been accepted. */
  get known(): boolean {
    return this.#relayId !== undefined;
  }

  /**
   * Accepts `hello` as the stream's owner from now on, or throws the
   * {@linkcode ProtocolError} to close its connection with.
   */
  admit(hello: HelloMessage): void {
    if (!hello.versions.includes(PROTOCOL_VERSION)) {
      throw new ProtocolError(versionMismatchMessage(hello.versions), CloseCode.versionMismatch);
    }
    if (hello.window < MIN_WINDOW_BYTES || hello.window > MAX_WINDOW_BYTES) {
      throw new ProtocolError(
        `A window of ${hello.window} bytes is outside ${MIN_WINDOW_BYTES}-${MAX_WINDOW_BYTES}.`,
      );
    }
    if (this.#relayId !== undefined && hello.relay !== this.#relayId) {
      throw new ProtocolError(
        "Another relay already owns this build's stream.",
        CloseCode.superseded,
      );
    }
    if (hello.attempt <= this.#attempt) {
      throw new ProtocolError(
        `Connection attempt ${hello.attempt} is stale; attempt ${this.#attempt} is current.`,
        CloseCode.superseded,
      );
    }
    this.#relayId = hello.relay;
    this.#attempt = hello.attempt;
  }
}
