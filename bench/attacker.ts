/**
 * The attacks case's attacker, a process of its own:
 * `attacker.ts MODE URL SECONDS`, with the build's secret in PHONEHOME_TOKEN
 * as a relay gets it. Runs one attack of attack_modes.ts until the time is up
 * and prints what it did as one line of JSON.
 *
 * @module
 */

import { RELAY_ENV } from "../src/protocol/mod.ts";
import { ATTACK_MODES, type AttackMode, runAttack } from "./attack_modes.ts";

const [mode, url, secondsText] = Deno.args;
const seconds = Number(secondsText);
if (!(ATTACK_MODES as readonly string[]).includes(mode) || !url || !(seconds > 0)) {
  console.error(`Usage: attacker.ts ${ATTACK_MODES.join("|")} URL SECONDS`);
  Deno.exit(64);
}
const tally = await runAttack(mode as AttackMode, {
  url,
  token: Deno.env.get(RELAY_ENV.token) ?? "",
  deadlineMs: performance.now() + seconds * 1000,
});
console.log(JSON.stringify(tally));
// A socket the receiver never closed must not keep the attacker past its time.
Deno.exit(0);
