/**
 * Deno's own start-up floor: prints one byte as soon as it runs, for the
 * start-up case's baseline.
 *
 * @module
 */

Deno.stdout.writeSync(new Uint8Array([120]));
