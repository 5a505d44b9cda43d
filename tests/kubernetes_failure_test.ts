/**
 * Build pods that fail or are taken away, end to end through `phonehome build
 * --backend kubernetes` against the fake API server and the kubelet stand-in:
 * a build that exits non-zero, an image that cannot be pulled, a pod that
 * cannot be scheduled, an eviction, an OOM kill, a relay that cannot reach the
 * builder, and a pod deleted by someone else. Each says why in one line, with
 * the exit status the failure calls for.
 */

import assert from "node:assert/strict";
import { collect, LineWatcher, phonehomeArgv, readText } from "./support/processes.ts";
import type { KObject } from "./kube/fake_api_server.ts";
import { NAMESPACE, RELAY_IMAGE, TestCluster } from "./kube/cluster.ts";
import { deletes, gone, onlyPod } from "./kube/cluster_queries.ts";

Deno.test("a build that fails with code 3 exits 3 and is cleaned up", async () => {
  await using k8s = await TestCluster.start();
  const result = await collect(k8s.build(
    [`--image=${RELAY_IMAGE}`],
    ["sh", "-c", "echo compiling; echo 'error: it broke' >&2; exit 3"],
  ));
  assert.equal(result.code, 3, result.stderr);
  assert.equal(result.stdout, "compiling\n");
  assert.equal(result.stderr, "error: it broke\n");
  await gone(k8s, "pods");
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});

Deno.test("an image that cannot be pulled fails fast with the image's name", async () => {
  await using k8s = await TestCluster.start();
  const result = await collect(k8s.build(["--image=registry.example/missing:1"], ["true"]));
  assert.equal(result.code, 69, result.stderr);
  assert.match(
    result.stderr,
    /phonehome: Pod slugbuild-[a-z0-9]{8} cannot pull its image "registry\.example\/missing:1" \((ErrImagePull|ImagePullBackOff)\): .*not found\.\n/,
  );
  await gone(k8s, "pods");
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});

Deno.test("a pod that cannot be scheduled fails at the start deadline with the scheduler's message", async () => {
  await using k8s = await TestCluster.start();
  const result = await collect(k8s.build(
    [`--image=${RELAY_IMAGE}`, "--connect-timeout=1500"],
    ["true"],
    { env: { BUILDER_POD_NODE_SELECTOR: "disktype:ssd,phonehome.test/pool:builders" } },
  ));
  assert.equal(result.code, 69, result.stderr);
  assert.match(
    result.stderr,
    /cannot be scheduled: 0\/1 nodes are available: 1 node\(s\) didn't match Pod's node affinity\/selector\./,
  );
  assert.match(
    result.stderr,
    /phonehome: Pod \S+ did not start within 1\.5s: it cannot be scheduled: 0\/1 nodes are available.* Check the node selector \(BUILDER_POD_NODE_SELECTOR\)/,
  );
  const pod = k8s.api.requests.find((r) => r.verb === "create" && r.resource === "pods")
    ?.body as KObject;
  assert.deepEqual((pod.spec as Record<string, unknown>).nodeSelector, {
    disktype: "ssd",
    "phonehome.test/pool": "builders",
  });
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});

Deno.test("a pod evicted mid-build ends the build with the eviction's reason", async () => {
  await using k8s = await TestCluster.start();
  const child = k8s.build([`--image=${RELAY_IMAGE}`], ["sh", "-c", "echo started; sleep 60"]);
  const stdout = new LineWatcher(child.stdout);
  await stdout.waitFor(/^started$/);
  const pod = onlyPod(k8s);
  k8s.kubelet.evict(NAMESPACE, pod.metadata.name, "The node was low on resource: memory. ");
  const [stderr, status] = await Promise.all([readText(child.stderr), child.status]);
  assert.equal(status.code, 75, stderr);
  assert.match(
    stderr,
    /phonehome: Pod \S+ was evicted: The node was low on resource: memory, before the build finished\.\n/,
  );
  await stdout.done;
  await gone(k8s, "pods");
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});

Deno.test("an OOM-killed build pod (exit 137, OOMKilled) ends the build saying so", async () => {
  await using k8s = await TestCluster.start();
  const child = k8s.build(
    [`--image=${RELAY_IMAGE}`, "--limits=memory=64Mi"],
    ["sh", "-c", "echo started; sleep 60"],
  );
  const stdout = new LineWatcher(child.stdout);
  await stdout.waitFor(/^started$/);
  k8s.kubelet.oomKill(NAMESPACE, onlyPod(k8s).metadata.name);
  const [stderr, status] = await Promise.all([readText(child.stderr), child.status]);
  assert.equal(status.code, 75, stderr);
  assert.match(
    stderr,
    /was OOM-killed \(exit 137, OOMKilled\): the build needed more memory than the container's limit, before the build finished\./,
  );
  await stdout.done;
  assert.deepEqual(deletes(k8s, "secrets").length, 1);
});

Deno.test("a pod whose relay cannot reach the builder fails at the start deadline, showing its log", async () => {
  await using k8s = await TestCluster.start();
  const template = `${k8s.dir}/unreachable.json`;
  // The entrypoint points the relay at a port where nothing listens, as a NetworkPolicy would.
  await Deno.writeTextFile(
    template,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Pod",
      spec: {
        containers: [{
          name: "build",
          image: RELAY_IMAGE,
          command: [
            "sh",
            "-c",
            `PHONEHOME_URL=wss://127.0.0.1:1/phonehome/stream exec ${
              phonehomeArgv("relay").join(" ")
            } -- "$@"`,
            "sh",
          ],
        }],
      },
    }),
  );
  const result = await collect(k8s.build(
    [`--pod-template=${template}`, "--connect-timeout=3000"],
    ["sh", "-c", "echo compiling in the dark; sleep 60"],
  ));
  assert.equal(result.code, 69, result.stderr);
  assert.match(result.stdout, /compiling in the dark\n/);
  assert.match(
    result.stderr,
    /The relay in pod \S+ never phoned home; here is what the pod log holds:/,
  );
  assert.match(
    result.stderr,
    /phonehome: Pod \S+ is running, but its relay did not phone home within 3s\. Check that the image/,
  );
  assert.equal(deletes(k8s, "pods").length, 1);
  assert.equal(deletes(k8s, "secrets").length, 1);
});

Deno.test("a pod deleted by someone else mid-build ends the build with the reason", async () => {
  await using k8s = await TestCluster.start();
  const child = k8s.build([`--image=${RELAY_IMAGE}`], ["sh", "-c", "echo started; sleep 60"]);
  const stdout = new LineWatcher(child.stdout);
  await stdout.waitFor(/^started$/);
  // A forced delete: the object goes at once and the kubelet kills the container.
  k8s.api.remove("pods", NAMESPACE, onlyPod(k8s).metadata.name);
  const [stderr, status] = await Promise.all([readText(child.stderr), child.status]);
  assert.equal(status.code, 75, stderr);
  assert.match(stderr, /phonehome: Pod \S+ was deleted before the build finished\.\n/);
  await stdout.done;
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});
