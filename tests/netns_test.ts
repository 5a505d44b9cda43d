/**
 * Real network faults, on Linux as root: the relay runs in a network namespace
 * of its own, joined to the receiver by a veth link that the test takes down
 * or makes lossy. Skipped with the reason in the test name elsewhere.
 */

import assert from "node:assert/strict";
import { STREAM_PATH } from "../src/protocol/mod.ts";
import {
  denoScript,
  digestStream,
  LineWatcher,
  phonehomeArgv,
  sha256,
  spawnPhonehome,
  tempDir,
  waitForFile,
} from "./support/processes.ts";
import { missing, skipNote, unavailable } from "./support/requirements.ts";

const TOKEN = "netns-suite-secret-value";
const MiB = 1024 * 1024;

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

async function sh(...args: string[]): Promise<{ ok: boolean; stderr: string }> {
  const result = await new Deno.Command(args[0], {
    args: args.slice(1),
    stdout: "null",
    stderr: "piped",
  })
    .output();
  return { ok: result.success, stderr: new TextDecoder().decode(result.stderr) };
}

async function must(...args: string[]): Promise<void> {
  const result = await sh(...args);
  if (!result.ok) throw new Error(`${args.join(" ")} failed: ${result.stderr.trim()}`);
}

/** Runs a command line (split on spaces) in namespace `where`, or here when it is empty. */
async function inNamespace(where: string, line: string): Promise<void> {
  await must(...(where ? ["ip", "netns", "exec", where] : []), ...line.split(" "));
}

/** Why the relay cannot get a network namespace of its own here (root and ip are needed). */
const netnsMissing = unavailable({ root: "for network namespaces", programs: ["ip"] });

/** A network namespace joined to this one by a veth pair on a /30 of its own. */
interface Namespace extends AsyncDisposable {
  name: string;
  hostLink: string;
  nsLink: string;
  hostIp: string;
}

async function createNamespace(): Promise<Namespace> {
  const id = crypto.getRandomValues(new Uint8Array(2));
  const name = `ph${id[0].toString(16)}${id[1].toString(16)}`;
  const hostLink = `${name}h`;
  const nsLink = `${name}n`;
  // A /30 in 10.231.0.0/16 chosen from the random id, so parallel runs do not collide.
  const base = `10.231.${id[0]}.${(id[1] & 0x3f) * 4}`;
  const [a, b, c] = base.split(".");
  const d = Number(base.split(".")[3]);
  const hostIp = `${a}.${b}.${c}.${d + 1}`;
  const nsIp = `${a}.${b}.${c}.${d + 2}`;
  await must("ip", "netns", "add", name);
  await must("ip", "link", "add", hostLink, "type", "veth", "peer", "name", nsLink);
  await must("ip", "link", "set", nsLink, "netns", name);
  await must("ip", "addr", "add", `${hostIp}/30`, "dev", hostLink);
  await must("ip", "link", "set", hostLink, "up");
  await must("ip", "netns", "exec", name, "ip", "addr", "add", `${nsIp}/30`, "dev", nsLink);
  await must("ip", "netns", "exec", name, "ip", "link", "set", nsLink, "up");
  await must("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up");
  return {
    name,
    hostLink,
    nsLink,
    hostIp,
    async [Symbol.asyncDispose](): Promise<void> {
      await sh("ip", "netns", "del", name);
      await sh("ip", "link", "del", hostLink);
    },
  };
}

interface NetRun {
  relayLog: string;
  receiverLog: string;
}

/**
 * Streams a build from a relay inside `ns` to a receiver here and checks that
 * stdout arrived as `expected`; `during` runs once the relay has connected.
 */
async function streamAcross(
  ns: Namespace,
  dir: string,
  build: { command: string[]; expected: () => Promise<{ bytes: number; sha256: string }> },
  during: (receiverLog: LineWatcher) => Promise<void>,
): Promise<NetRun> {
  const receiver = spawnPhonehome(
    [
      "receive",
      `--listen=${ns.hostIp}:0`,
      `--url-file=${dir}/url`,
      "--idle-interval=0",
      "--verbose",
      "--ping-interval=200",
      "--reconnect-grace=30000",
    ],
    { env: { PHONEHOME_TOKEN: TOKEN } },
  );
  const receiverErr = new LineWatcher(receiver.stderr);
  const receiverOut = digestStream(receiver.stdout);
  const url = (await waitForFile(`${dir}/url`)).trim();
  assert.ok(url.endsWith(STREAM_PATH));
  const relay = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns.name,
      ...phonehomeArgv("relay"),
      "--no-tee",
      "--window=262144",
      "--ping-interval=200",
      "--reconnect-grace=30000",
      "--",
      ...build.command,
    ],
    env: { PHONEHOME_URL: url, PHONEHOME_TOKEN: TOKEN },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const relayErr = new LineWatcher(relay.stderr);
  await receiverErr.waitFor(/Relay connected/);
  await during(receiverErr);
  const [relayStatus, receiverStatus, stdout, relayLog, receiverLog] = await Promise.all([
    relay.status,
    receiver.status,
    receiverOut,
    relayErr.done,
    receiverErr.done,
  ]);
  const context = `relay said:\n${relayLog}\nreceiver said:\n${receiverLog}`;
  assert.equal(relayStatus.code, 0, context);
  assert.equal(receiverStatus.code, 0, context);
  assert.deepEqual({ bytes: stdout.bytes, sha256: stdout.sha256 }, await build.expected(), context);
  return { relayLog, receiverLog };
}

/** The link-down test also holds the build at a FIFO. */
const linkDownMissing = netnsMissing ?? missing(["mkfifo"]);

Deno.test({
  name: `a link taken down for longer than the ping timeout is survived${
    skipNote(linkDownMissing)
  }`,
  ignore: linkDownMissing !== undefined,
  async fn(): Promise<void> {
    await using ns = await createNamespace();
    await using dir = await tempDir();
    const gate = `${dir.path}/gate`;
    await must("mkfifo", gate);
    // One MiB, then (once the test opens the gate, after the outage) eight more.
    const command = [
      "sh",
      "-c",
      `head -c ${MiB} /dev/zero; read go < ${gate}; head -c ${8 * MiB} /dev/zero | tr '\\0' y`,
    ];
    const expected = () =>
      Promise.resolve({
        bytes: 9 * MiB,
        sha256: sha256(concat(new Uint8Array(MiB), new Uint8Array(8 * MiB).fill(0x79))),
      });
    const run = await streamAcross(ns, dir.path, { command, expected }, async (receiverErr) => {
      await must("ip", "link", "set", ns.hostLink, "down");
      // Down until the receiver itself has noticed the silence: longer than the ping timeout.
      await receiverErr.waitFor(/Lost the connection to the relay/);
      await must("ip", "link", "set", ns.hostLink, "up");
      // Opening the gate blocks until the build reads it, after its first MiB got through.
      await Deno.writeTextFile(gate, "go\n");
    });
    assert.match(run.receiverLog, /no answer to pings/);
    assert.match(run.receiverLog, /Relay reconnected/);
  },
});

/** Shaping the link needs tc; where netem is missing, the loss comes from nftables. */
const shapingMissing = netnsMissing ?? missing(["tc"]);

const hasNetem = shapingMissing === undefined && await (async () => {
  await using ns = await createNamespace();
  return (await sh("tc", "qdisc", "add", "dev", ns.hostLink, "root", "netem", "delay", "1ms")).ok;
})();

const lossyMissing = shapingMissing ?? (hasNetem ? undefined : missing(["nft"]));

/** The lossy test's name says how the loss is made, once that is known. */
function lossyName(): string {
  if (shapingMissing !== undefined) {
    return `a lossy, slow link delivers everything${skipNote(shapingMissing)}`;
  }
  if (hasNetem) return "a lossy, slow link (tc netem: 5% loss, 20 ms delay) delivers everything";
  return "a lossy, slow link delivers everything (this kernel lacks tc netem: 5% loss by " +
    `nftables and a 20 Mbit/s tc tbf instead)${skipNote(lossyMissing)}`;
}

Deno.test({
  name: lossyName(),
  ignore: lossyMissing !== undefined,
  async fn(): Promise<void> {
    await using ns = await createNamespace();
    // Shaping applies to what leaves an interface: set it on both ends of the link.
    const ends: Array<[string, string]> = [["", ns.hostLink], [ns.name, ns.nsLink]];
    if (hasNetem) {
      for (const [where, link] of ends) {
        await inNamespace(where, `tc qdisc add dev ${link} root netem loss 5% delay 20ms`);
      }
    } else {
      for (const [where, link] of ends) {
        await inNamespace(
          where,
          `tc qdisc add dev ${link} root tbf rate 20mbit burst 32kbit latency 50ms`,
        );
      }
      await inNamespace(ns.name, "nft add table inet phonehome");
      for (const hook of ["input", "output"]) {
        await inNamespace(
          ns.name,
          `nft add chain inet phonehome ${hook} { type filter hook ${hook} priority 0 ; }`,
        );
        await inNamespace(
          ns.name,
          `nft add rule inet phonehome ${hook} numgen random mod 100 < 5 drop`,
        );
      }
    }
    await using dir = await tempDir();
    const report = `${dir.path}/report.json`;
    await streamAcross(ns, dir.path, {
      command: denoScript("emit.ts", String(4 * MiB), "0", "5", report, "0"),
      expected: async () => JSON.parse(await Deno.readTextFile(report)).stdout,
    }, () => Promise.resolve());
  },
});
