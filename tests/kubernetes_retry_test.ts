/**
 * Transient API failures, as real API servers produce them (429 with
 * Retry-After, 500 during an etcd leader change, 502, 503, 504, dropped
 * connections, answers lost after the work was done): the retry policy on its
 * own with an injected clock, the client against the fake API server, and
 * `phonehome build` and `phonehome gc` end to end with faults injected.
 */

import assert from "node:assert/strict";
import { KubeClient } from "../src/launchers/kubernetes/client.ts";
import { KubernetesApiError } from "../src/launchers/kubernetes/errors.ts";
import {
  type AttemptFailure,
  isConnectFailure,
  isRetryable,
  isTransientNetworkError,
  MAX_BACKOFF_MS,
  MAX_RETRY_AFTER_MS,
  nextRetryDelayMs,
  parseRetryAfterMs,
  type RetryClock,
  retryDelayMs,
  retrying,
} from "../src/launchers/kubernetes/retry.ts";
import type { FaultSpec } from "./kube/fault_injection.ts";
import type { KObject, RequestRecord } from "./kube/fake_api_server.ts";
import { NAMESPACE, PLAIN_IMAGE, RELAY_IMAGE, TestCluster } from "./kube/cluster.ts";
import { collect, type Finished, spawnPhonehome } from "./support/processes.ts";

// ---- the policy on its own ----

/** A clock whose pauses pass at once, recorded; `random` always gives `chance`. */
function fakeClock(chance = 0.5): RetryClock & { sleeps: number[] } {
  let nowMs = 0;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => nowMs,
    sleep: (ms) => {
      sleeps.push(ms);
      nowMs += ms;
      return Promise.resolve();
    },
    random: () => chance,
  };
}

/** A try that fails with each of `failures` in turn, then succeeds with "done". */
function scripted(
  failures: AttemptFailure[],
  timeouts: number[] = [],
): (timeoutMs: number) => Promise<string> {
  let next = 0;
  return (timeoutMs) => {
    timeouts.push(timeoutMs);
    const failure = failures[next++];
    return failure === undefined ? Promise.resolve("done") : Promise.reject(failure);
  };
}

const asFailure = (error: unknown): AttemptFailure | undefined =>
  typeof error === "object" && error !== null && !(error instanceof Error)
    ? error as AttemptFailure
    : undefined;

Deno.test("429, 500, 502, 503, 504 and connections failing in passing are retried; other refusals are final", () => {
  for (const status of [429, 500, 502, 503, 504]) assert.ok(isRetryable({ status }), `${status}`);
  for (const status of [400, 401, 403, 404, 409, 410, 422]) {
    assert.ok(!isRetryable({ status }), `${status}`);
  }
  assert.ok(isRetryable({ transient: true }));
  assert.ok(!isRetryable({ transient: false }));
  const socket = Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" });
  assert.ok(isTransientNetworkError(new TypeError("fetch failed", { cause: socket })));
  assert.ok(isTransientNetworkError(Object.assign(new Error("x"), { code: "ECONNREFUSED" })));
  assert.ok(isTransientNetworkError(new DOMException("timed out", "TimeoutError")));
  const tls = Object.assign(new Error("self-signed certificate"), {
    code: "DEPTH_ZERO_SELF_SIGNED_CERT",
  });
  assert.ok(!isTransientNetworkError(new TypeError("fetch failed", { cause: tls })));
  // What was never sent cannot have been carried out; a connection cut later may have been.
  assert.ok(isConnectFailure(new TypeError("fetch failed", { cause: tls })));
  assert.ok(isConnectFailure(Object.assign(new Error("x"), { code: "ECONNREFUSED" })));
  assert.ok(!isConnectFailure(new TypeError("fetch failed", { cause: socket })));
});

Deno.test("Retry-After is read as seconds or as an HTTP date", () => {
  assert.equal(parseRetryAfterMs("1", 0), 1000);
  assert.equal(parseRetryAfterMs(" 30 ", 0), 30_000);
  const now = Date.parse("2024-05-01T12:00:00Z");
  assert.equal(parseRetryAfterMs("Wed, 01 May 2024 12:00:05 GMT", now), 5000);
  assert.equal(parseRetryAfterMs("Wed, 01 May 2024 11:00:00 GMT", now), 0);
  assert.equal(parseRetryAfterMs("soon", now), undefined);
  assert.equal(parseRetryAfterMs(undefined, now), undefined);
});

Deno.test("pauses double with jitter up to a ceiling, and Retry-After is honoured up to a bound", () => {
  const lowest = [1, 2, 3, 4, 5].map((tries) => retryDelayMs({ status: 503 }, tries, 0));
  const highest = [1, 2, 3, 4, 5].map((tries) => retryDelayMs({ status: 503 }, tries, 0.999_999));
  assert.deepEqual(lowest, [50, 100, 200, 400, 800]);
  assert.deepEqual(highest, [100, 200, 400, 800, 1600]);
  assert.equal(retryDelayMs({ status: 503 }, 40, 0.999_999), MAX_BACKOFF_MS);
  assert.equal(retryDelayMs({ status: 429, retryAfterMs: 1000 }, 1, 0.7), 1000);
  assert.equal(retryDelayMs({ status: 429, retryAfterMs: 3_600_000 }, 1, 0), MAX_RETRY_AFTER_MS);
  assert.equal(
    nextRetryDelayMs({
      failure: { status: 429, retryAfterMs: 5000 },
      tries: 1,
      elapsedMs: 0,
      budgetMs: 4000,
      random: 0,
    }),
    undefined,
    "a Retry-After past the budget ends the retries",
  );
  assert.equal(
    nextRetryDelayMs({
      failure: { status: 403 },
      tries: 1,
      elapsedMs: 0,
      budgetMs: 30_000,
      random: 0,
    }),
    undefined,
  );
});

Deno.test("a call that fails twice in passing succeeds on its third try, after two pauses", async () => {
  const clock = fakeClock();
  const notices: Array<[number, number]> = [];
  const result = await retrying({
    attempt: scripted([{ status: 503 }, { transient: true }]),
    failureOf: asFailure,
    budgetMs: 30_000,
    attemptTimeoutMs: 10_000,
    clock,
    onRetry: (notice) => notices.push([notice.tries, notice.delayMs]),
  });
  assert.deepEqual(result, { ok: true, value: "done", tries: 3 });
  assert.deepEqual(clock.sleeps, [75, 150]);
  assert.deepEqual(notices, [[1, 75], [2, 150]]);
});

Deno.test("a fault that outlasts the budget ends the call within it, saying how many tries it made", async () => {
  const clock = fakeClock();
  const timeouts: number[] = [];
  const result = await retrying({
    attempt: scripted(Array(100).fill({ status: 500 }), timeouts),
    failureOf: asFailure,
    budgetMs: 10_000,
    attemptTimeoutMs: 4_000,
    clock,
  });
  assert.equal(result.ok, false);
  assert.ok(!result.ok && result.tries === clock.sleeps.length + 1);
  assert.ok(!result.ok && result.elapsedMs <= 10_000, JSON.stringify(result));
  assert.equal(timeouts[0], 4_000, "a try never takes longer than one request may");
  assert.ok(
    timeouts.every((timeoutMs, i) =>
      timeoutMs <= 10_000 - clock.sleeps.slice(0, i).reduce((a, b) => a + b, 0)
    ),
    `each try fits in what is left of the budget: ${timeouts} after ${clock.sleeps}`,
  );
});

Deno.test("a final refusal is not retried, and an error that is not the API's is thrown at once", async () => {
  const clock = fakeClock();
  const refused = await retrying({
    attempt: scripted([{ status: 403 }]),
    failureOf: asFailure,
    budgetMs: 30_000,
    attemptTimeoutMs: 10_000,
    clock,
  });
  assert.deepEqual(refused, { ok: false, error: { status: 403 }, tries: 1, elapsedMs: 0 });
  await assert.rejects(
    retrying({
      attempt: () => Promise.reject(new RangeError("a bug")),
      failureOf: asFailure,
      budgetMs: 30_000,
      attemptTimeoutMs: 10_000,
      clock,
    }),
    RangeError,
  );
  assert.deepEqual(clock.sleeps, []);
});

// ---- against the fake API server ----

function requests(k8s: TestCluster, verb: string, resource: string): RequestRecord[] {
  return k8s.api.requests.filter((r) => r.verb === verb && r.resource === resource);
}

/** Resolves once no object of `resource` is left in the build namespace. */
async function gone(k8s: TestCluster, resource: "pods" | "jobs" | "secrets"): Promise<void> {
  while (k8s.api.list(resource, NAMESPACE).length > 0) {
    await k8s.api.waitForEvent((e) => e.resource === resource && e.type === "DELETED");
  }
}

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

Deno.test("a retried create that finds its name taken by an object that is not the build's fails", async () => {
  await using k8s = await TestCluster.start({ podNetwork: false });
  const client = KubeClient.load({ kubeconfig: k8s.kubeconfigPath }, { budgetMs: 10_000 });
  const name = "slugbuild-taken-0a1b2c3d";
  const labels = { "app.kubernetes.io/managed-by": "phonehome", "phonehome/build": name };
  // A node selector no node has, so the kubelet stand-in leaves the pod alone.
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels },
    spec: {
      nodeSelector: { "phonehome.test/never": "true" },
      restartPolicy: "Never",
      containers: [{ name: "build", image: RELAY_IMAGE }],
    },
  };
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

Deno.test("'phonehome gc' retries transient failures, and with --verbose says so on stderr", async () => {
  await using k8s = await TestCluster.start({ podNetwork: false });
  const old = new Date(Date.now() - 2 * 3_600_000).toISOString();
  for (const resource of ["secrets", "pods"] as const) {
    const name = resource === "pods" ? "slugbuild-old-pod" : "slugbuild-old-pod-phonehome";
    const body = resource === "pods"
      ? {
        spec: {
          nodeSelector: { "phonehome.test/never": "true" },
          restartPolicy: "Never",
          containers: [{ name: "build", image: RELAY_IMAGE }],
        },
      }
      : { data: {} };
    k8s.api.insert(resource, {
      metadata: {
        name,
        namespace: NAMESPACE,
        labels: { "app.kubernetes.io/managed-by": "phonehome" },
      },
      ...body,
    } as KObject);
    k8s.api.update(resource, NAMESPACE, name, (o) => {
      o.metadata.creationTimestamp = old;
    });
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
