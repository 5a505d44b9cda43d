/**
 * The few C library calls phonehome needs that Deno has no API for, through
 * FFI, loaded once and only on Linux: poll(2) and open(2) to watch pipes,
 * prctl(2) to guard the secret and adopt orphans, waitid(2) and waitpid(2)
 * to find and reap them, shutdown(2) to end a TLS socket Deno will not let
 * go of, fcntl(2) to enlarge a pipe, setsockopt(2) to turn Nagle's
 * algorithm off.
 *
 * @module
 */

const SYMBOLS = {
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  waitid: { parameters: ["i32", "i32", "buffer", "i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
} as const;

/** The loaded symbols. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let libcOrReason: Libc | string | undefined;

/** The C library, or a sentence fragment saying why it cannot be used here. */
export function libc(): Libc | string {
  if (libcOrReason !== undefined) return libcOrReason;
  if (Deno.build.os !== "linux") {
    libcOrReason = `the C library is only used on Linux, not ${Deno.build.os}`;
    return libcOrReason;
  }
  try {
    libcOrReason = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  } catch (error) {
    // Without --allow-ffi, or on a C library other than glibc's.
    libcOrReason = `cannot load libc.so.6 (${error instanceof Error ? error.message : error})`;
  }
  return libcOrReason;
}

/** A NUL-terminated copy of `text`, for a `char *` argument. */
export function cString(text: string): Uint8Array {
  return new TextEncoder().encode(`${text}\0`);
}
