/**
 * The wire format on its own: frames round-trip, and malformed input is a
 * ProtocolError with a reason rather than a crash or a silent misreading.
 */

import assert from "node:assert/strict";
import {
  CloseCode,
  DATA_HEADER_BYTES,
  decodeDataFrame,
  encodeDataFrame,
  parseReceiverMessage,
  parseRelayMessage,
  ProtocolError,
} from "../src/protocol/mod.ts";

Deno.test("a DATA frame round-trips its stream, offset and payload", () => {
  const payload = Uint8Array.from([0, 255, 10, 13, 27]);
  const frame = encodeDataFrame("stderr", 2 ** 40 + 3, payload);
  assert.equal(frame.byteLength, DATA_HEADER_BYTES + payload.byteLength);
  const decoded = decodeDataFrame(frame);
  assert.equal(decoded.stream, "stderr");
  assert.equal(decoded.offset, 2 ** 40 + 3);
  assert.deepEqual(decoded.payload, payload);
});

Deno.test("malformed binary frames are protocol errors", async (t) => {
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ["too short", new Uint8Array(3), /shorter than a header/],
    [
      "unknown kind",
      Uint8Array.from([9, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
      /Unknown binary frame kind 0x9/,
    ],
    ["unknown stream", Uint8Array.from([1, 7, 0, 0, 0, 0, 0, 0, 0, 0]), /Unknown stream id 7/],
    [
      "offset overflow",
      Uint8Array.from([1, 0, 255, 255, 255, 255, 255, 255, 255, 255]),
      /beyond what phonehome supports/,
    ],
  ];
  for (const [name, bytes, message] of cases) {
    await t.step(name, () => {
      assert.throws(
        () => decodeDataFrame(bytes),
        (e) => e instanceof ProtocolError && message.test(e.message),
      );
    });
  }
});

Deno.test("control messages are validated field by field", async (t) => {
  const crc = "0a1b2c3d";
  const good = {
    type: "finished",
    exit: { code: 137, signal: "SIGKILL" },
    streams: { stdout: { bytes: 5, crc32: crc }, stderr: { bytes: 0, crc32: crc } },
  };
  await t.step("a valid FINISHED parses", () => {
    assert.deepEqual(parseRelayMessage(JSON.stringify(good)), good);
  });
  const bad: Array<[string, unknown, RegExp]> = [
    ["not JSON", "{", /not valid JSON/],
    ["an array", [], /not a JSON object/],
    ["unknown type", { type: "launch" }, /Unknown control message type "launch"/],
    [
      "hello without versions",
      { type: "hello", relay: "r", window: 1 },
      /list of protocol versions/,
    ],
    ["exit code out of range", { ...good, exit: { code: 300, signal: null } }, /outside 0-255/],
    [
      "bad checksum",
      { ...good, streams: { ...good.streams, stdout: { bytes: 1, crc32: "xyz" } } },
      /no valid crc32/,
    ],
    ["negative count", {
      ...good,
      streams: { ...good.streams, stderr: { bytes: -1, crc32: crc } },
    }, /byte count of stderr is not a whole number from 0 to 2\^53-1/],
  ];
  for (const [name, value, message] of bad) {
    await t.step(`${name} is refused`, () => {
      const text = typeof value === "string" ? value : JSON.stringify(value);
      assert.throws(
        () => parseRelayMessage(text),
        (e) => e instanceof ProtocolError && message.test(e.message),
      );
    });
  }
  await t.step("an ack with a fractional offset is refused", () => {
    assert.throws(
      () =>
        parseReceiverMessage(
          JSON.stringify({ type: "ack", acked: { stdout: 1.5, stderr: 0 } }),
        ),
      ProtocolError,
    );
  });
});

Deno.test("a version mismatch carries its own close code", () => {
  const error = new ProtocolError("mismatch", CloseCode.versionMismatch);
  assert.equal(error.closeCode, 4001);
  assert.equal(new ProtocolError("other").closeCode, CloseCode.protocolViolation);
});
