/**
 * Deno doing nothing: says it is up, then waits, so the bench can read the
 * peak RSS of Deno itself, the floor under both of phonehome's processes.
 *
 * @module
 */

Deno.stdout.writeSync(new TextEncoder().encode("up\n"));
await new Promise((resolve) => setTimeout(resolve, 2000));
