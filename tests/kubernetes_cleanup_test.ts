/**
 * What a Kubernetes build leaves behind, end to end through `phonehome build
 * --backend kubernetes` against the fake API server: nothing when its pod is
 * gone before the builder first looks (whose output still arrives), when the
 * builder is killed mid-build, or when the user's session goes away; with
 * --keep-pod, the pod but never its secret.
 */

import assert from "node:assert/strict";
import { collect, LineWatcher, readText } from "./support/processes.ts";
import { RELAY_IMAGE, TestCluster } from "./kube/cluster.ts";
import { deletes, gone } from "./kube/cluster_queries.ts";

Deno.test("the original race: a pod that starts, finishes and is deleted before the builder first looks still reports", async () => {
  await using k8s = await TestCluster.start({ deleteWhenDone: true });
  // The builder's first look at the pod is held back until the pod is already gone.
  const podGone = k8s.api.waitForEvent((e) => e.resource === "pods" && e.type === "DELETED");
  k8s.api.hold((r) => r.resource === "pods" && (r.verb === "list" || r.verb === "watch"), podGone);
  const result = await collect(k8s.build(
    [`--image=${RELAY_IMAGE}`],
    ["sh", "-c", "printf 'fast build\\n'; printf 'no newline'"],
  ));
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "fast build\nno newline");
  const list = k8s.api.requests.find((r) => r.resource === "pods" && r.verb === "list");
  assert.ok(list !== undefined, "the builder did look");
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});

Deno.test("the builder killed mid-build deletes the pod, and the relay still reports how the build ended", async () => {
  await using k8s = await TestCluster.start();
  const child = k8s.build(
    [`--image=${RELAY_IMAGE}`],
    ["sh", "-c", "trap 'echo stopping; exit 143' TERM; echo started; sleep 60 & wait"],
  );
  const stdout = new LineWatcher(child.stdout);
  await stdout.waitFor(/^started$/);
  child.kill("SIGTERM");
  const [stderr, status] = await Promise.all([readText(child.stderr), child.status]);
  assert.equal(status.code, 143, stderr);
  assert.match(stderr, /Received SIGTERM; stopping the build\./);
  assert.equal(await stdout.done, "started\nstopping\n");
  assert.equal(deletes(k8s, "pods").length >= 1, true);
  await gone(k8s, "pods");
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});

Deno.test("--keep-pod keeps the pod but still deletes its secret", async () => {
  await using k8s = await TestCluster.start();
  const result = await collect(
    k8s.build([`--image=${RELAY_IMAGE}`, "--keep-pod"], ["echo", "kept"]),
  );
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /Keeping pod \S+ \(--keep-pod\); 'phonehome gc' removes it later\./);
  assert.deepEqual(deletes(k8s, "pods"), []);
  assert.equal(k8s.leftovers().pods.length, 1);
  assert.deepEqual(k8s.leftovers().secrets, []);
});

Deno.test("when the user's session goes away (stdout closes) the pod and secret are deleted", async () => {
  await using k8s = await TestCluster.start();
  const child = k8s.build(
    [`--image=${RELAY_IMAGE}`],
    ["sh", "-c", "echo started; while :; do echo more output; done"],
  );
  const reader = child.stdout.getReader();
  await reader.read();
  await reader.cancel();
  const [stderr, status] = await Promise.all([readText(child.stderr), child.status]);
  assert.equal(status.code, 74, stderr);
  assert.equal(deletes(k8s, "pods").length, 1);
  assert.equal(deletes(k8s, "secrets").length, 1);
  assert.deepEqual(k8s.leftovers().secrets, []);
});
