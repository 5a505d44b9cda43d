/**
 * The POSIX tar (ustar) layout that carries a build's source from the builder
 * to the relay: 512-byte headers with octal fields and a checksum, contents
 * padded to 512 bytes, pax extended headers for long names. Both the writer
 * and the reader use these helpers; nothing else knows the layout.
 *
 * @module
 */

/** The unit of a tar archive. */
export const BLOCK_BYTES = 512;

/** Entry types phonehome writes or reads (the header's typeflag). */
export const EntryType = {
  file: "0",
  oldFile: "\0",
  contiguousFile: "7",
  hardLink: "1",
  symlink: "2",
  directory: "5",
  paxExtended: "x",
  paxGlobal: "g",
  gnuLongName: "L",
  gnuLongLink: "K",
} as const;

/** A parsed header block. */
export interface TarHeader {
  name: string;
  mode: number;
  size: number;
  mtimeSeconds: number;
  type: string;
  linkName: string;
}

/** An archive phonehome will not unpack; the message says which entry and why. */
export class ArchiveError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "ArchiveError";
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function readString(block: Uint8Array, at: number, length: number): string {
  const field = block.subarray(at, at + length);
  const end = field.indexOf(0);
  return decoder.decode(end === -1 ? field : field.subarray(0, end));
}

function readOctal(block: Uint8Array, at: number, length: number, what: string): number {
  const field = block.subarray(at, at + length);
  if ((field[0] & 0x80) !== 0) {
    // Base-256, GNU's form for values octal cannot hold.
    let value = field[0] & 0x7f;
    for (let i = 1; i < length; i++) value = value * 256 + field[i];
    if (!Number.isSafeInteger(value)) throw new ArchiveError(`A header's ${what} is too large.`);
    return value;
  }
  const text = readString(block, at, length).trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new ArchiveError(`A header's ${what} is not a number.`);
  return parseInt(text, 8);
}

function writeString(block: Uint8Array, at: number, length: number, text: string): void {
  const bytes = encoder.encode(text);
  if (bytes.byteLength > length) throw new RangeError(`${text} does not fit ${length} bytes`);
  block.set(bytes, at);
}

function writeOctal(block: Uint8Array, at: number, length: number, value: number): void {
  writeString(block, at, length, value.toString(8).padStart(length - 1, "0"));
}

/** The checksum of a header block, its own field counted as spaces. */
function checksumOf(block: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < BLOCK_BYTES; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  return sum;
}

/** Whether a block is all zero bytes: two of them end an archive. */
export function isZeroBlock(block: Uint8Array): boolean {
  return block.every((byte) => byte === 0);
}

/** Parses a header block; throws {@linkcode ArchiveError} for a bad checksum or field. */
export function parseHeader(block: Uint8Array): TarHeader {
  const stored = readOctal(block, 148, 8, "checksum");
  if (stored !== checksumOf(block)) {
    throw new ArchiveError("A header's checksum is wrong: the archive is corrupt or not tar.");
  }
  const prefix = readString(block, 345, 155);
  const name = readString(block, 0, 100);
  const isUstar = readString(block, 257, 6) === "ustar";
  return {
    name: isUstar && prefix !== "" ? `${prefix}/${name}` : name,
    mode: readOctal(block, 100, 8, "mode"),
    size: readOctal(block, 124, 12, "size"),
    mtimeSeconds: readOctal(block, 136, 12, "modification time"),
    type: String.fromCharCode(block[156]),
    linkName: readString(block, 157, 100),
  };
}

/** Encodes one header block (ustar); a name or link that does not fit is the caller's to put in pax. */
export function encodeHeader(header: TarHeader): Uint8Array {
  const block = new Uint8Array(BLOCK_BYTES);
  writeString(block, 0, 100, header.name);
  writeOctal(block, 100, 8, header.mode);
  writeOctal(block, 108, 8, 0);
  writeOctal(block, 116, 8, 0);
  writeOctal(block, 124, 12, header.size);
  writeOctal(block, 136, 12, header.mtimeSeconds);
  block[156] = header.type.charCodeAt(0);
  writeString(block, 157, 100, header.linkName);
  writeString(block, 257, 6, "ustar");
  writeString(block, 263, 2, "00");
  writeString(block, 148, 8, `${checksumOf(block).toString(8).padStart(6, "0")}\0 `);
  return block;
}

/** Whether `text` fits a ustar name or link field as it is. */
export function fitsField(text: string): boolean {
  return encoder.encode(text).byteLength <= 100;
}

/** A pax extended header's records, `LENGTH key=value\n` each, the length counting itself. */
export function encodePaxRecords(records: Readonly<Record<string, string>>): Uint8Array {
  let text = "";
  for (const [key, value] of Object.entries(records)) {
    const body = ` ${key}=${value}\n`;
    const bodyBytes = encoder.encode(body).byteLength;
    let length = bodyBytes + 1;
    while (String(length).length + bodyBytes !== length) length = String(length).length + bodyBytes;
    text += `${length}${body}`;
  }
  return encoder.encode(text);
}

/** Parses pax extended header records. */
export function parsePaxRecords(bytes: Uint8Array): Record<string, string> {
  const records: Record<string, string> = {};
  let at = 0;
  while (at < bytes.byteLength) {
    const space = bytes.indexOf(0x20, at);
    const length = Number(decoder.decode(bytes.subarray(at, space)));
    if (space === -1 || !Number.isSafeInteger(length) || length <= 0) {
      throw new ArchiveError("A pax extended header is malformed.");
    }
    const record = decoder.decode(bytes.subarray(space + 1, at + length - 1));
    const equals = record.indexOf("=");
    if (equals === -1) throw new ArchiveError("A pax extended header is malformed.");
    records[record.slice(0, equals)] = record.slice(equals + 1);
    at += length;
  }
  return records;
}

/** Bytes of padding after `size` bytes of content. */
export function paddingOf(size: number): number {
  return (BLOCK_BYTES - (size % BLOCK_BYTES)) % BLOCK_BYTES;
}
