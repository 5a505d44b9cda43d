/**
 * FINISHED can arrive long before the receiver has written everything: its
 * reader may be slow, or not reading yet. A connection lost in that window
 * must cost nothing: the relay resends what the receiver had not yet written,
 * the receiver skips what it already holds, and the build ends as it should.
 */

import assert from "node:assert/strict";
import { FaultProxy, isControl } from "./support/fault_proxy.ts";
import {
  digestStream,
  readText,
  sha256,
  spawnPhonehome,
  tempDir,
  waitForFile,
} from "./support/processes.ts";
import { NAMESPACE, TestCluster } from "./kube/cluster.ts";

const TOKEN = "late-reader-test-secret";

/** 2 MiB of random bytes in `dir`/payload; returns them. */
async function writePayload(dir: string): Promise<Uint8Array> {
  const data = new Uint8Array(65536);
  const payload = new Uint8Array(2 * 1024 * 1024);
  for (let at = 0; at < payload.byteLength; at += data.byteLength) {
    crypto.getRandomValues(data);
    payload.set(data, at);
  }
  await Deno.writeFile(`${dir}/payload`, payload);
  return payload;
}

Deno.test("a drop after FINISHED while the receiver is still writing loses nothing", async () => {
  await using dir = await tempDir();
  const payload = await writePayload(dir.path);
  const receiver = spawnPhonehome(
    [
      "receive",
      "--listen=127.0.0.1:0",
      `--url-file=${dir.path}/url`,
      "--idle-interval=0",
      "--ping-interval=200",
    ],
    { env: { PHONEHOME_TOKEN: TOKEN } },
  );
  const receiverErr = readText(receiver.stderr);
  const target = new URL((await waitForFile(`${dir.path}/url`)).trim());
  // The first connection carries everything and FINISHED, then goes dead both ways; the
  // receiver cannot write yet, since nothing reads its stdout.
  let resumed!: () => void;
  const finishedAgain = new Promise<void>((resolve) => (resumed = resolve));
  const proxy = FaultProxy.start(
    Number(target.port),
    (index) =>
      index === 0
        ? { stallAfterMessage: { direction: "up", matches: isControl("finished") } }
        : { watch: { direction: "up", matches: isControl("finished"), seen: resumed } },
  );
  const relay = spawnPhonehome(
    ["relay", "--no-tee", "--ping-interval=200", "--", "cat", `${dir.path}/payload`],
    {
      env: {
        PHONEHOME_URL: `ws://127.0.0.1:${proxy.port}${target.pathname}`,
        PHONEHOME_TOKEN: TOKEN,
      },
      stdout: "null",
    },
  );
  const relayErr = readText(relay.stderr);
  // Only once the relay has resent FINISHED on a new connection does anybody read the output.
  await Promise.race([finishedAgain, relay.status]);
  const [output, relayStatus, receiverStatus] = await Promise.all([
    digestStream(receiver.stdout),
    relay.status,
    receiver.status,
  ]);
  await proxy.close();
  const receiverLog = await receiverErr;
  assert.equal(receiverStatus.code, 0, receiverLog);
  const relayLog = await relayErr;
  assert.equal(relayStatus.code, 0, relayLog);
  assert.doesNotMatch(relayLog, /Could not phone home|rejected/);
  assert.deepEqual(
    { bytes: output.bytes, sha256: output.sha256 },
    { bytes: payload.byteLength, sha256: sha256(payload) },
  );
  assert.ok(proxy.stats.stalls === 1 && proxy.stats.connections >= 2, JSON.stringify(proxy.stats));
  assert.doesNotMatch(receiverLog, /after FINISHED/);
});

/**
 * How long the build supervisor waits, once a pod's container has ended, for
 * the stream to conclude before it fails the build (TERMINATION_SETTLE_MS),
 * with a margin: a build that must not fail must still be running after it.
 */
const SUPERVISOR_SETTLE_WITH_MARGIN_MS = 3_000;

Deno.test("on Kubernetes, a drop after FINISHED while the builder is still writing loses nothing", async () => {
  await using k8s = await TestCluster.start({ podNetwork: false });
  const payload = await writePayload(k8s.dir);
  let resumed!: () => void;
  const finishedAgain = new Promise<void>((resolve) => (resumed = resolve));
  const { builder, proxy } = k8s.buildThroughProxy(
    ["cat", `${k8s.dir}/payload`],
    (index) =>
      index === 0
        ? { stallAfterMessage: { direction: "up", matches: isControl("finished") } }
        : { watch: { direction: "up", matches: isControl("finished"), seen: resumed } },
    // The proxy must read the protocol's messages to find FINISHED: no TLS on this connection.
    ["--no-tls"],
  );
  const stderr = readText(builder.stderr);
  await Promise.race([finishedAgain, builder.status]);
  const [output, status] = await Promise.all([digestStream(builder.stdout), builder.status]);
  await proxy.close();
  assert.equal(status.code, 0, await stderr);
  assert.equal(output.sha256, sha256(payload));
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});

Deno.test("on Kubernetes, a pod that dies after FINISHED while the builder is still writing does not fail the build", async () => {
  await using k8s = await TestCluster.start({ podNetwork: false });
  const payload = await writePayload(k8s.dir);
  let sent!: () => void;
  const finished = new Promise<void>((resolve) => (sent = resolve));
  const { builder, proxy } = k8s.buildThroughProxy(
    ["cat", `${k8s.dir}/payload`],
    (index) =>
      index === 0 ? { watch: { direction: "up", matches: isControl("finished"), seen: sent } } : {},
    // The proxy must read the protocol's messages to find FINISHED: no TLS on this connection.
    ["--no-tls"],
  );
  const stderr = readText(builder.stderr);
  await Promise.race([finished, builder.status]);
  const [pod] = k8s.api.list("pods", NAMESPACE);
  k8s.kubelet.evict(NAMESPACE, pod.metadata.name, "The node was low on resource: memory. ");
  // Nothing reads the builder's output yet: the supervisor sees the pod end first, and must not
  // fail a build whose whole output has arrived, however long writing it takes.
  await new Promise((resolve) => setTimeout(resolve, SUPERVISOR_SETTLE_WITH_MARGIN_MS));
  const [output, status] = await Promise.all([digestStream(builder.stdout), builder.status]);
  await proxy.close();
  const log = await stderr;
  assert.equal(status.code, 0, log);
  assert.equal(output.sha256, sha256(payload));
  assert.doesNotMatch(log, /Pod \S+ (was|before)/);
});
