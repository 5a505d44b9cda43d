/**
 * The build of the many-small-writes case: writes COUNT numbered 80-byte
 * lines to stdout, each with a write system call of its own, as a chatty
 * build that flushes every line does. Usage: small_writer.ts COUNT
 *
 * @module
 */

import { numberSmallLine, SMALL_LINE_BYTES, smallLineTemplate } from "./small_lines.ts";

const count = Number(Deno.args[0]);
const line = smallLineTemplate();
for (let index = 0; index < count; index++) {
  numberSmallLine(line, index);
  // A pipe write under PIPE_BUF is whole, but loop anyway: correctness first.
  let done = 0;
  while (done < SMALL_LINE_BYTES) done += Deno.stdout.writeSync(line.subarray(done));
}
