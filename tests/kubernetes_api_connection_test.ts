/**
 * The builder's connection to the Kubernetes API, end to end against the fake
 * API server: watches dropped mid-build (the connection cut, the stream broken
 * off, a clean end) are resumed from their resource version, a watch whose
 * history was compacted re-lists after 410 Gone, the client speaks HTTP/1.1
 * to a server that offers HTTP/2, and inside a pod the builder finds the API
 * through its service account.
 */

import assert from "node:assert/strict";
import diagnostics from "node:diagnostics_channel";
import { KubeClient } from "../src/launchers/kubernetes/client.ts";
import { collect, LineWatcher, phonehomeArgv, readText } from "./support/processes.ts";
import { TEST_CA_PEM } from "./kube/fake_api_server.ts";
import { NAMESPACE, RELAY_IMAGE, TestCluster } from "./kube/cluster.ts";
import { onlyPod } from "./kube/cluster_queries.ts";

/** A build command that says it started, then waits for the test to let it go on. */
async function gatedBuild(
  cluster: TestCluster,
): Promise<{ command: string[]; open: () => Promise<void> }> {
  const fifo = `${cluster.dir}/gate`;
  const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
  assert.ok(made.success, "mkfifo works");
  return {
    command: ["sh", "-c", `echo started; read word < ${fifo}; echo "then $word"`],
    open: () => Deno.writeTextFile(fifo, "finished\n"),
  };
}

for (const mode of ["connection cut", "stream broken off", "clean end"] as const) {
  Deno.test(`the API server dropping the watch mid-build (${mode}) neither crashes nor blinds the builder`, async () => {
    await using k8s = await TestCluster.start();
    const gate = await gatedBuild(k8s);
    const child = k8s.build(
      [`--image=${RELAY_IMAGE}`, "--watch-timeout=1000", "--tick=10"],
      gate.command,
    );
    const stdout = new LineWatcher(child.stdout);
    await stdout.waitFor(/^started$/);
    const firstWatch = await k8s.api.waitForRequest((r) => r.verb === "watch");
    const before = k8s.api.requests.length;
    if (mode === "connection cut") assert.ok(k8s.api.cutConnections() >= 1);
    else assert.ok(k8s.api.dropWatches(mode === "clean end" ? "clean" : "reset") >= 1);
    assert.equal(firstWatch.status, 200);
    const resumed = await k8s.api.waitForRequest((r) =>
      r.verb === "watch" && k8s.api.requests.indexOf(r) >= before
    );
    assert.ok(resumed.query.get("resourceVersion"), "the watch resumes from a resource version");
    assert.ok(resumed.query.get("timeoutSeconds"), "every watch carries timeoutSeconds");
    // After the drop the builder still sees the pod: an eviction now is reported.
    k8s.kubelet.evict(
      NAMESPACE,
      onlyPod(k8s).metadata.name,
      "The node was low on resource: ephemeral-storage.",
    );
    const [stderr, status] = await Promise.all([readText(child.stderr), child.status]);
    assert.equal(status.code, 75, stderr);
    assert.match(stderr, /was evicted: The node was low on resource: ephemeral-storage/);
    await stdout.done;
  });
}

Deno.test("a watch resumed after its history was compacted gets 410 Gone and re-lists", async () => {
  await using k8s = await TestCluster.start();
  const gate = await gatedBuild(k8s);
  const child = k8s.build([`--image=${RELAY_IMAGE}`, "--tick=10"], gate.command);
  const stdout = new LineWatcher(child.stdout);
  await stdout.waitFor(/^started$/);
  await k8s.api.waitForRequest((r) => r.verb === "watch");
  const before = k8s.api.requests.length;
  k8s.api.compact();
  k8s.api.dropWatches("clean");
  const relisted = k8s.api.waitForRequest((r) =>
    r.verb === "list" && r.resource === "pods" && k8s.api.requests.indexOf(r) >= before
  );
  await relisted;
  await gate.open();
  const [stderr, status] = await Promise.all([readText(child.stderr), child.status]);
  assert.equal(status.code, 0, stderr);
  assert.equal(await stdout.done, "started\nthen finished\n");
});

Deno.test("the Kubernetes client speaks HTTP/1.1 even to an API server that offers HTTP/2", async () => {
  await using k8s = await TestCluster.start();
  const protocols: string[] = [];
  const onConnected = (message: unknown): void => {
    const socket = (message as { socket: { alpnProtocol?: string | false } }).socket;
    protocols.push(String(socket.alpnProtocol));
  };
  diagnostics.subscribe("undici:client:connected", onConnected);
  try {
    const client = KubeClient.load({ kubeconfig: k8s.kubeconfigPath }, { budgetMs: 30_000 });
    const list = await client.listPods({ labelSelector: "phonehome/build=none" });
    assert.deepEqual(list.items, []);
  } finally {
    diagnostics.unsubscribe("undici:client:connected", onConnected);
  }
  // The server's ALPN offers h2 first; over HTTP/2 a server closing the connection can crash
  // Deno (the brief), so the client must not take it.
  assert.deepEqual(protocols, ["http/1.1"]);
});

const inClusterSkip = Deno.uid() === 0 ? undefined : "a private mount namespace needs root";

Deno.test({
  name: "inside a pod the builder finds the API through its service account" +
    (inClusterSkip === undefined ? "" : ` (skipped: ${inClusterSkip})`),
  ignore: inClusterSkip !== undefined,
  fn: async () => {
    await using k8s = await TestCluster.start();
    const account = `${k8s.dir}/serviceaccount`;
    await Deno.mkdir(account);
    await Deno.writeTextFile(`${account}/token`, k8s.api.token);
    await Deno.writeTextFile(`${account}/ca.crt`, TEST_CA_PEM);
    await Deno.writeTextFile(`${account}/namespace`, NAMESPACE);
    const port = new URL(k8s.api.url).port;
    // The service account appears where Kubernetes mounts it, in a mount namespace of its own.
    const mountDir = "/run/secrets/kubernetes.io/serviceaccount";
    const script = `mount -t tmpfs tmpfs /run && mkdir -p ${mountDir} && ` +
      `cp ${account}/* ${mountDir}/ && exec "$@"`;
    const child = new Deno.Command("unshare", {
      args: [
        "--mount",
        "--propagation=private",
        "sh",
        "-c",
        script,
        "sh",
        ...phonehomeArgv("build"),
        "--backend=kubernetes",
        `--image=${RELAY_IMAGE}`,
        "--idle-interval=0",
        "--",
        "echo",
        "in cluster",
      ],
      env: {
        KUBERNETES_SERVICE_HOST: "127.0.0.1",
        KUBERNETES_SERVICE_PORT: port,
        POD_IP: k8s.advertiseHost,
        KUBECONFIG: "",
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const result = await collect(child);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "in cluster\n");
    const created = k8s.api.requests.find((r) => r.verb === "create" && r.resource === "pods");
    assert.equal(created?.path, `/api/v1/namespaces/${NAMESPACE}/pods`);
  },
});
