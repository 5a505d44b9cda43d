/**
 * Transient API failures that retries get past, as real API servers produce
 * them (429 with Retry-After, 500 during an etcd leader change, 502, 503, 504,
 * dropped connections, answers lost after the work was done): `phonehome
 * build` and `phonehome gc` end to end against the fake API server with
 * faults injected, each ending as it would without them and leaving nothing
 * behind, quietly unless --verbose. The policy on its
 * own is in kubernetes_retry_policy_test.ts; failures that retrying cannot
 * mend are in kubernetes_retry_failure_test.ts.
 */

import assert from "node:assert/strict";
import type { FaultSpec } from "./kube/fault_injection.ts";
import { PLAIN_IMAGE, RELAY_IMAGE, TestCluster } from "./kube/cluster.ts";
import { gone, requests } from "./kube/cluster_queries.ts";
import { leftover } from "./kube/planted_objects.ts";
import { collect, type Finished, spawnPhonehome } from "./support/processes.ts";

/** Runs a build of `echo built` with `faults` injected; checks it succeeded and left nothing. */
async function buildThrough(
  faults: FaultSpec[],
  flags: string[] = [],
): Promise<{ k8s: TestCluster; result: Finished }> {
  const k8s = await TestCluster.start();
  try {
    k8s.api.injectFaults(...faults);
    const result = await collect(
      k8s.build([`--image=${RELAY_IMAGE}`, ...flags], ["echo", "built"]),
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "built\n");
    assert.doesNotMatch(result.stderr, /Could not delete/);
    await gone(k8s, "pods");
    assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
    return { k8s, result };
  } catch (error) {
    await k8s[Symbol.asyncDispose]();
    throw error;
  }
}

Deno.test("one 429 on creating the secret waits for Retry-After and the build succeeds", async () => {
  const { k8s, result } = await buildThrough([
    { verb: "create", resource: "secrets", status: 429, retryAfterSeconds: 1, count: 1 },
  ]);
  await using _ = k8s;
  const creates = requests(k8s, "create", "secrets");
  assert.deepEqual(creates.map((r) => r.status), [429, 201]);
  const waitedMs = creates[1].receivedMs - creates[0].receivedMs;
  assert.ok(waitedMs >= 900, `waited ${waitedMs} ms for Retry-After: 1`);
  assert.doesNotMatch(result.stderr, /trying again/, "a retry that succeeds says nothing");
});

const rows: Array<{ name: string; faults: FaultSpec[]; verb: string; resource: string }> = [
  {
    name: "two 503 on creating the pod are retried",
    faults: [{ verb: "create", resource: "pods", status: 503, count: 2 }],
    verb: "create",
    resource: "pods",
  },
  {
    name: 'one 500 "etcdserver: leader changed" on creating the pod is retried',
    faults: [{
      verb: "create",
      resource: "pods",
      status: 500,
      message: "etcdserver: leader changed",
      count: 1,
    }],
    verb: "create",
    resource: "pods",
  },
  {
    name: "two 500 on deleting the pod after the build are retried",
    faults: [{ verb: "delete", resource: "pods", status: 500, count: 2 }],
    verb: "delete",
    resource: "pods",
  },
  {
    name: "two 503 on deleting the secret are retried",
    faults: [{ verb: "delete", resource: "secrets", status: 503, count: 2 }],
    verb: "delete",
    resource: "secrets",
  },
  {
    name: "a 502 from a proxy and a 504 on creating the pod are retried",
    faults: [
      { verb: "create", resource: "pods", status: 502, count: 1 },
      { verb: "create", resource: "pods", status: 504, count: 1 },
    ],
    verb: "create",
    resource: "pods",
  },
  {
    name: "a dropped connection on creating the secret is retried",
    faults: [{ verb: "create", resource: "secrets", kind: "reset", count: 1 }],
    verb: "create",
    resource: "secrets",
  },
];

for (const row of rows) {
  Deno.test(`${row.name}: the build succeeds and leaves nothing behind`, async () => {
    const { k8s, result } = await buildThrough(row.faults);
    await using _ = k8s;
    const faulted = row.faults.reduce((sum, fault) => sum + fault.count, 0);
    const made = requests(k8s, row.verb, row.resource);
    assert.equal(made.length, faulted + 1, JSON.stringify(made.map((r) => r.status)));
    assert.ok(made.slice(0, faulted).every((r) => r.fault !== undefined));
    assert.doesNotMatch(result.stderr, /trying again/);
  });
}

Deno.test("with --verbose each retry is one line on stderr, naming the call and the answer", async () => {
  const { k8s, result } = await buildThrough(
    [{ verb: "create", resource: "pods", status: 503, count: 2 }],
    ["--verbose"],
  );
  await using _ = k8s;
  const lines = result.stderr.split("\n").filter((line) => line.includes("trying again"));
  assert.equal(lines.length, 2, result.stderr);
  lines.forEach((line, i) =>
    assert.match(
      line,
      new RegExp(
        String.raw`^phonehome: Creating pod slugbuild-[a-z0-9]{8}: the server is currently ` +
          String.raw`unable to handle the request \(HTTP 503, ServiceUnavailable\); trying again ` +
          String.raw`in \d+ms \(try ${i + 2}\)\.$`,
      ),
    )
  );
});

Deno.test("three 500 on the pod watch, two 503 on the list and five 500 on the pod log still show the log of a pod without the relay", async () => {
  await using k8s = await TestCluster.start();
  k8s.api.injectFaults(
    { verb: "watch", resource: "pods", status: 500, count: 3 },
    { verb: "list", resource: "pods", status: 503, count: 2 },
    { verb: "get", resource: "pods/log", status: 500, count: 5 },
  );
  const result = await collect(k8s.build(
    [`--image=${PLAIN_IMAGE}`],
    ["sh", "-c", "echo building without a relay"],
  ));
  assert.equal(result.code, 69, result.stderr);
  assert.equal(result.stdout, "building without a relay\n");
  assert.match(result.stderr, /The relay in pod \S+ never phoned home; here is what the pod log/);
  assert.doesNotMatch(result.stderr, /keeps failing|trying again/);
  assert.deepEqual(
    requests(k8s, "get", "pods/log").map((r) => r.status),
    [500, 500, 500, 500, 500, 200],
  );
  await gone(k8s, "pods");
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});

for (const resource of ["secrets", "pods", "jobs"] as const) {
  Deno.test(`a lost answer to creating the ${resource.slice(0, -1)} ends in one, not two and not an error`, async () => {
    const flags = resource === "jobs" ? ["--kind=job"] : [];
    const { k8s } = await buildThrough(
      [{ verb: "create", resource, kind: "lostAnswer", count: 1 }],
      flags,
    );
    await using _ = k8s;
    // One object made (its answer lost), one 409 for it, which counts as success.
    const creates = requests(k8s, "create", resource).map((r) => [r.status, r.fault]);
    assert.deepEqual(creates, [[201, "lostAnswer"], [409, undefined]]);
  });
}

Deno.test("'phonehome gc' retries transient failures, and with --verbose says so on stderr", async () => {
  await using k8s = await TestCluster.start({ podNetwork: false });
  for (const resource of ["secrets", "pods"] as const) {
    const name = resource === "pods" ? "slugbuild-old-pod" : "slugbuild-old-pod-phonehome";
    leftover(k8s, resource, name, { ageMs: 2 * 3_600_000 });
  }
  k8s.api.injectFaults(
    { verb: "list", resource: "secrets", status: 429, retryAfterSeconds: 0, count: 1 },
    { verb: "delete", resource: "pods", status: 500, count: 2 },
    { verb: "delete", resource: "secrets", kind: "reset", count: 1 },
  );
  const result = await collect(
    spawnPhonehome(["gc", `--kubeconfig=${k8s.kubeconfigPath}`, "--verbose"]),
  );
  assert.equal(result.code, 0, result.stderr);
  assert.equal(
    result.stdout,
    "deleted pod/slugbuild-old-pod (age 2h)\ndeleted secret/slugbuild-old-pod-phonehome (age 2h)\n",
  );
  const lines = result.stderr.split("\n").filter((line) => line !== "");
  assert.equal(lines.length, 4, result.stderr);
  assert.ok(
    lines.every((line) => /^phonehome: .*; trying again in \d+ms \(try \d\)\.$/.test(line)),
  );
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});
