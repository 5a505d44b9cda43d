/**
 * API failures that retrying cannot mend, end to end against the fake API
 * server with faults injected: a retried create that finds its name taken by
 * someone else's object, a fault that outlasts the retry budget (status 77,
 * naming the call, the answer and the tries), an API that refuses every
 * connection, a pod whose create may have been carried out, and clean-up that
 * cannot delete the secret; each says what may be left and how to remove it.
 */

import assert from "node:assert/strict";
import { KubeClient } from "../src/launchers/kubernetes/client.ts";
import { KubernetesApiError } from "../src/launchers/kubernetes/errors.ts";
import type { KObject } from "./kube/fake_api_server.ts";
import { NAMESPACE, RELAY_IMAGE, TestCluster } from "./kube/cluster.ts";
import { gone, requests } from "./kube/cluster_queries.ts";
import { parkedPodSpec } from "./kube/planted_objects.ts";
import { collect, spawnPhonehome } from "./support/processes.ts";

Deno.test("a retried create that finds its name taken by an object that is not the build's fails", async () => {
  await using k8s = await TestCluster.start({ podNetwork: false });
  const client = KubeClient.load({ kubeconfig: k8s.kubeconfigPath }, { budgetMs: 10_000 });
  const name = "slugbuild-taken-0a1b2c3d";
  const labels = { "app.kubernetes.io/managed-by": "phonehome", "phonehome/build": name };
  // A node selector no node has, so the kubelet stand-in leaves the pod alone.
  const pod = { apiVersion: "v1", kind: "Pod", metadata: { name, labels }, spec: parkedPodSpec() };
  // The answer is lost, and before the retry someone else's object holds the name.
  k8s.api.injectFaults({ verb: "create", resource: "pods", kind: "lostAnswer", count: 1 });
  const stop = k8s.api.subscribe((event) => {
    if (event.type !== "ADDED" || event.object.metadata.name !== name) return;
    stop();
    k8s.api.remove("pods", NAMESPACE, name);
    k8s.api.insert("pods", { ...structuredClone(pod), metadata: { name, namespace: NAMESPACE } });
  });
  await assert.rejects(
    client.createPod(structuredClone(pod)),
    (error: unknown) =>
      error instanceof KubernetesApiError && error.status === 409 &&
      /^Creating pod slugbuild-taken-0a1b2c3d failed after 2 tries in \S+: pods "slugbuild-taken-0a1b2c3d" already exists \(HTTP 409, AlreadyExists\)\. It is not this build's \(its labels differ/
        .test(error.message),
  );
  const stored = k8s.api.get("pods", NAMESPACE, name) as KObject;
  assert.deepEqual(stored.metadata.labels, undefined, "someone else's pod is left alone");

  await assert.rejects(
    client.createPod(structuredClone(pod)),
    (error: unknown) =>
      error instanceof KubernetesApiError && error.tries === 1 &&
      /^Creating pod \S+ failed: pods "\S+" already exists \(HTTP 409, AlreadyExists\)\.$/
        .test(error.message),
    "a 409 on the first try is an error, whatever the labels",
  );
});

Deno.test("a fault that outlasts the budget fails with 77 and names the call, the status and the tries", async () => {
  await using k8s = await TestCluster.start();
  k8s.api.injectFaults({ verb: "create", resource: "pods", status: 503, count: Infinity });
  const result = await collect(
    k8s.build([`--image=${RELAY_IMAGE}`, "--api-retry-budget=1500"], ["echo", "never"]),
  );
  assert.equal(result.code, 77, result.stderr);
  assert.match(
    result.stderr,
    /^phonehome: Creating pod (slugbuild-[a-z0-9]{8}) failed after (\d+) tries in \S+: the server is currently unable to handle the request \(HTTP 503, ServiceUnavailable\)\. The API kept failing for the whole retry budget \(--api-retry-budget\); check the API server's health and load\.$/m,
  );
  const tries = Number(/failed after (\d+) tries/.exec(result.stderr)?.[1]);
  assert.equal(requests(k8s, "create", "pods").length, tries);
  assert.ok(tries >= 2, `${tries} tries`);
  assert.doesNotMatch(result.stderr, /Could not delete/);
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});

Deno.test("an API that refuses every connection fails the build with 77 after the budget, claiming nothing left", async () => {
  await using k8s = await TestCluster.start({ podNetwork: false });
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (closed.addr as Deno.NetAddr).port;
  closed.close();
  const kubeconfig = `${k8s.dir}/refused.kubeconfig`;
  await Deno.writeTextFile(
    kubeconfig,
    k8s.api.kubeconfig(NAMESPACE).replace(/server: .*/, `server: https://127.0.0.1:${port}`),
  );
  const result = await collect(spawnPhonehome([
    "build",
    "--backend=kubernetes",
    `--kubeconfig=${kubeconfig}`,
    "--advertise-host=127.0.0.1",
    `--image=${RELAY_IMAGE}`,
    "--api-retry-budget=1000",
    "--",
    "true",
  ]));
  assert.equal(result.code, 77, result.stderr);
  assert.match(
    result.stderr,
    /phonehome: Creating secret \S+ failed after \d+ tries in \S+: cannot reach the Kubernetes API at https:\/\/127\.0\.0\.1:\d+ \(fetch failed \(connect ECONNREFUSED [^)]*\)\)\. The API kept failing/,
  );
  // Refused connections carried nothing out, so there is nothing to delete or to warn about.
  assert.doesNotMatch(result.stderr, /Could not/);
});

Deno.test("a pod whose create may have been carried out is deleted too, or said to be perhaps left", async () => {
  await using k8s = await TestCluster.start({ podNetwork: false });
  // The first try makes the pod and loses the answer; every later try, and every delete, fails.
  k8s.api.injectFaults(
    { verb: "create", resource: "pods", kind: "lostAnswer", count: 1 },
    { verb: "create", resource: "pods", status: 503, count: Infinity },
    { verb: "delete", resource: "pods", status: 500, count: Infinity },
  );
  const result = await collect(k8s.build(
    [`--image=${RELAY_IMAGE}`, "--api-retry-budget=1000", "--node-selector=phonehome.test/never:1"],
    ["true"],
  ));
  assert.equal(result.code, 77, result.stderr);
  assert.match(
    result.stderr,
    /phonehome: Creating pod \S+ failed after \d+ tries in \S+: .*HTTP 503/,
  );
  const [pod] = k8s.leftovers().pods;
  assert.ok(
    result.stderr.includes(
      `phonehome: Could not make sure pod ${pod} is gone after `,
    ) &&
      result.stderr.includes(
        `. If it exists, remove it with: kubectl -n builds delete pod ${pod}\n`,
      ),
    result.stderr,
  );
  assert.deepEqual(k8s.leftovers().secrets, [], "the secret went first, as always");
});

Deno.test("clean-up that cannot delete the secret says it is left, holding the token, and how to remove it", async () => {
  await using k8s = await TestCluster.start();
  k8s.api.injectFaults({ verb: "delete", resource: "secrets", status: 503, count: Infinity });
  const result = await collect(
    k8s.build([`--image=${RELAY_IMAGE}`, "--api-retry-budget=1000"], ["echo", "built"]),
  );
  assert.equal(result.code, 0, result.stderr);
  const match =
    /phonehome: Could not delete secret (slugbuild-[a-z0-9]{8}-phonehome) after \d+ tries: the server is currently unable to handle the request \(HTTP 503, ServiceUnavailable\); it holds the build's token\. Remove it with: kubectl -n builds delete secret (\S+)\n/
      .exec(result.stderr);
  assert.ok(match !== null, result.stderr);
  assert.equal(match[2], match[1]);
  const deletes = k8s.api.requests.filter((r) => r.verb === "delete");
  assert.equal(deletes[0].resource, "secrets", "the secret is tried first");
  assert.ok(deletes.some((r) => r.resource === "pods" && r.status === 200), "the pod still goes");
  await gone(k8s, "pods");
  assert.deepEqual(k8s.leftovers().secrets, [match[1]]);
});
