/**
 * The phonehome wire protocol, shared by the relay (pod side) and the receiver
 * (builder side): the whole contract between them, and nothing of either side.
 * docs/protocol.md describes it for humans.
 *
 * @module
 */

export * from "./auth.ts";
export * from "./checksum.ts";
export * from "./close_codes.ts";
export * from "./environment.ts";
export * from "./frames.ts";
export * from "./limits.ts";
export * from "./messages.ts";
