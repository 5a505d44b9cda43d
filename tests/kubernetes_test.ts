/**
 * End to end through `phonehome build --backend kubernetes`: a real builder
 * process against the fake API server (which enforces deploy/rbac.yaml), with
 * the kubelet stand-in running each pod's container as a local process in a
 * network namespace of its own when root.
 */

import assert from "node:assert/strict";
import diagnostics from "node:diagnostics_channel";
import { KubeClient } from "../src/launchers/kubernetes/client.ts";
import {
  collect,
  type Finished,
  LineWatcher,
  phonehomeArgv,
  readText,
  spawnPhonehome,
} from "./support/processes.ts";
import { type KObject, type RequestRecord, TEST_CA_PEM } from "./kube/fake_api_server.ts";
import { NAMESPACE, PLAIN_IMAGE, RELAY_IMAGE, roleRules, TestCluster } from "./kube/cluster.ts";

/** `group/resource/verb` used by any test of this file, to compare with the Role at the end. */
const usedVerbs = new Set<string>();

/** Starts a cluster whose API usage counts towards the Role check. */
async function cluster(
  options: Parameters<typeof TestCluster.start>[0] = {},
): Promise<TestCluster> {
  const started = await TestCluster.start(options);
  const dispose = started[Symbol.asyncDispose].bind(started);
  return Object.assign(started, {
    async [Symbol.asyncDispose](): Promise<void> {
      for (const used of started.api.used) usedVerbs.add(used);
      await dispose();
    },
  });
}

function onlyPod(cluster: TestCluster): KObject {
  const pods = cluster.api.list("pods", NAMESPACE);
  assert.equal(pods.length, 1, `one build pod, not ${pods.map((p) => p.metadata.name)}`);
  return pods[0];
}

function deletes(cluster: TestCluster, resource: string): RequestRecord[] {
  return cluster.api.requests.filter((r) => r.verb === "delete" && r.resource === resource);
}

/** Resolves once no object of `resource` is left in the build namespace. */
async function gone(cluster: TestCluster, resource: "pods" | "jobs" | "secrets"): Promise<void> {
  while (cluster.api.list(resource, NAMESPACE).length > 0) {
    await cluster.api.waitForEvent((e) => e.resource === resource && e.type === "DELETED");
  }
}

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

Deno.test("a build that succeeds streams its output home, then its pod and secret are deleted", async () => {
  await using k8s = await cluster();
  const token = `secret-${crypto.randomUUID()}`;
  const child = k8s.build(
    [`--image=${RELAY_IMAGE}`, "--app=My_App", "--sha=0123456789abcdef", `--token=${token}`],
    ["sh", "-c", "printf 'hello from the pod\\n'; printf 'to stderr\\n' >&2; printf '$(HOME) $$ '"],
  );
  const result = await collect(child);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "hello from the pod\n$(HOME) $$ ");
  // The old builder's banners are the git hook's business, not phonehome build's.
  assert.equal(result.stderr, "to stderr\n");

  const created = k8s.api.requests.find((r) => r.verb === "create" && r.resource === "pods");
  const pod = created?.body as KObject;
  const name = pod.metadata.name;
  assert.match(name, /^slugbuild-my-app-01234567-[a-z0-9]{8}$/);
  assert.equal(pod.metadata.labels?.["app.kubernetes.io/managed-by" as never], "phonehome");
  const spec = pod.spec as { restartPolicy: string; containers: Array<Record<string, unknown>> };
  assert.equal(spec.restartPolicy, "Never");
  const env = spec.containers[0].env as Array<Record<string, unknown>>;
  assert.deepEqual(env.find((v) => v.name === "PHONEHOME_TOKEN"), {
    name: "PHONEHOME_TOKEN",
    valueFrom: { secretKeyRef: { name: `${name}-phonehome`, key: "token" } },
  });
  assert.ok(
    !JSON.stringify(k8s.api.requests.filter((r) => r.resource === "pods").map((r) => r.body))
      .includes(token),
    "the secret never appears in the pod spec",
  );
  const secretBody = k8s.api.requests.find((r) => r.verb === "create" && r.resource === "secrets")
    ?.body as { data: { token: string } };
  assert.equal(atob(secretBody.data.token), token);

  assert.deepEqual(deletes(k8s, "pods").map((r) => [r.name, r.status]), [[name, 200]]);
  assert.deepEqual(deletes(k8s, "secrets").map((r) => [r.name, r.status]), [[
    `${name}-phonehome`,
    200,
  ]]);
  await gone(k8s, "pods");
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});

Deno.test("a build that fails with code 3 exits 3 and is cleaned up", async () => {
  await using k8s = await cluster();
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

Deno.test("the original race: a pod that starts, finishes and is deleted before the builder first looks still reports", async () => {
  await using k8s = await cluster({ deleteWhenDone: true });
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

Deno.test("an image that cannot be pulled fails fast with the image's name", async () => {
  await using k8s = await cluster();
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
  await using k8s = await cluster();
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
  await using k8s = await cluster();
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
  await using k8s = await cluster();
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

Deno.test("a container without the relay fails, and the pod log is shown instead", async () => {
  await using k8s = await cluster();
  const result = await collect(k8s.build(
    [`--image=${PLAIN_IMAGE}`],
    ["sh", "-c", "echo building without a relay; echo warning on stderr >&2"],
  ));
  assert.equal(result.code, 69, result.stderr);
  assert.match(result.stdout, /building without a relay\n/);
  assert.match(result.stdout, /warning on stderr\n/);
  assert.match(
    result.stderr,
    /The relay in pod \S+ never phoned home; here is what the pod log holds:/,
  );
  assert.match(
    result.stderr,
    /Pod \S+ ended: its build container exited with code 0, and its relay never phoned home\. Check that the image "registry\.example\/slugbuilder:no-relay" runs 'phonehome relay -- \.\.\.' as its entrypoint/,
  );
  assert.deepEqual(deletes(k8s, "pods").length, 1);
  assert.deepEqual(deletes(k8s, "secrets").length, 1);
});

Deno.test("a pod whose relay cannot reach the builder fails at the start deadline, showing its log", async () => {
  await using k8s = await cluster();
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
            `PHONEHOME_URL=ws://127.0.0.1:1/phonehome/stream exec ${
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

Deno.test("the builder killed mid-build deletes the pod, and the relay still reports how the build ended", async () => {
  await using k8s = await cluster();
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

Deno.test("a pod deleted by someone else mid-build ends the build with the reason", async () => {
  await using k8s = await cluster();
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

for (const mode of ["connection cut", "stream broken off", "clean end"] as const) {
  Deno.test(`the API server dropping the watch mid-build (${mode}) neither crashes nor blinds the builder`, async () => {
    await using k8s = await cluster();
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

Deno.test("the Kubernetes client speaks HTTP/1.1 even to an API server that offers HTTP/2", async () => {
  await using k8s = await cluster();
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

Deno.test("a watch resumed after its history was compacted gets 410 Gone and re-lists", async () => {
  await using k8s = await cluster();
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

Deno.test("--keep-pod keeps the pod but still deletes its secret", async () => {
  await using k8s = await cluster();
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
  await using k8s = await cluster();
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

Deno.test("a Job gets backoffLimit 0, a TTL and a deadline, and is deleted with its pods", async () => {
  await using k8s = await cluster();
  const result = await collect(k8s.build(
    [`--image=${RELAY_IMAGE}`, "--kind=job", "--build-deadline=600000", "--job-ttl=120000"],
    ["echo", "built by a job"],
  ));
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "built by a job\n");
  const job = k8s.api.requests.find((r) => r.verb === "create" && r.resource === "jobs")
    ?.body as KObject;
  const spec = job.spec as Record<string, unknown>;
  assert.equal(spec.backoffLimit, 0);
  assert.equal(spec.ttlSecondsAfterFinished, 120);
  assert.equal(spec.activeDeadlineSeconds, 600);
  const template = spec.template as { spec: { restartPolicy: string } };
  assert.equal(template.spec.restartPolicy, "Never");
  const deleted = deletes(k8s, "jobs");
  assert.equal(deleted.length, 1);
  assert.equal(
    deleted[0].query.get("propagationPolicy") ??
      (deleted[0].body as Record<string, unknown>)?.propagationPolicy,
    "Background",
  );
  await gone(k8s, "pods");
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});

Deno.test("a Job past its deadline is reported as such", async () => {
  await using k8s = await cluster();
  const child = k8s.build(
    [`--image=${RELAY_IMAGE}`, "--kind=job", "--build-deadline=600000"],
    ["sh", "-c", "echo started; sleep 60"],
  );
  const stdout = new LineWatcher(child.stdout);
  await stdout.waitFor(/^started$/);
  const [job] = k8s.leftovers().jobs;
  k8s.jobs.exceedDeadline(NAMESPACE, job);
  const [stderr, status] = await Promise.all([readText(child.stderr), child.status]);
  assert.equal(status.code, 75, stderr);
  assert.match(
    stderr,
    /Job \S+ ran past its deadline \(activeDeadlineSeconds\) and its pod was deleted before the build finished\./,
  );
  await stdout.done;
});

Deno.test("a pod template in JSON (a Pod) and in YAML (a Job) keep their fields and get the relay's wiring", async (t) => {
  await using k8s = await cluster();
  await t.step("JSON Pod", async () => {
    const path = `${k8s.dir}/pod.json`;
    await Deno.writeTextFile(
      path,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "ignored", labels: { team: "web" }, annotations: { note: "kept" } },
        spec: {
          serviceAccountName: "builder-pods",
          tolerations: [{ key: "builds", operator: "Exists", effect: "NoSchedule" }],
          containers: [{
            name: "slugbuilder",
            image: RELAY_IMAGE,
            env: [{ name: "BUILDPACK_URL", value: "https://example.invalid/buildpack" }],
            args: ["replaced"],
          }],
        },
      }),
    );
    const result = await collect(k8s.build([`--pod-template=${path}`, "--env=STACK=heroku-24"], [
      "sh",
      "-c",
      'echo "$BUILDPACK_URL $STACK"',
    ]));
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "https://example.invalid/buildpack heroku-24\n");
    const pod = k8s.api.requests.findLast((r) => r.verb === "create" && r.resource === "pods")
      ?.body as KObject;
    assert.match(pod.metadata.name, /^slugbuild-/);
    assert.equal((pod.metadata.labels as Record<string, string>).team, "web");
    assert.equal((pod.metadata.annotations as Record<string, string>).note, "kept");
    const spec = pod.spec as Record<string, unknown>;
    assert.equal(spec.serviceAccountName, "builder-pods");
    assert.deepEqual(spec.tolerations, [{
      key: "builds",
      operator: "Exists",
      effect: "NoSchedule",
    }]);
    assert.equal(spec.restartPolicy, "Never");
    const container = (spec.containers as Array<Record<string, unknown>>)[0];
    assert.deepEqual(container.args, ["sh", "-c", 'echo "$$BUILDPACK_URL $$STACK"']);
  });
  await t.step("YAML Job", async () => {
    const path = `${k8s.dir}/job.yaml`;
    await Deno.writeTextFile(
      path,
      [
        "apiVersion: batch/v1",
        "kind: Job",
        "metadata:",
        "  name: ignored",
        "spec:",
        "  backoffLimit: 4",
        "  template:",
        "    metadata:",
        "      labels:",
        "        team: web",
        "    spec:",
        "      restartPolicy: OnFailure",
        "      containers:",
        "        - name: dockerbuilder",
        `          image: ${RELAY_IMAGE}`,
        "",
      ].join("\n"),
    );
    const result = await collect(k8s.build(
      [`--pod-template=${path}`, "--name-prefix=dockerbuild", "--app=api"],
      ["echo", "from a job template"],
    ));
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "from a job template\n");
    const job = k8s.api.requests.find((r) => r.verb === "create" && r.resource === "jobs")
      ?.body as KObject;
    assert.match(job.metadata.name, /^dockerbuild-api-[a-z0-9]{8}$/);
    const spec = job.spec as Record<string, unknown>;
    assert.equal(spec.backoffLimit, 0);
    const template = spec.template as {
      metadata: { labels: Record<string, string> };
      spec: Record<string, unknown>;
    };
    assert.equal(template.metadata.labels.team, "web");
    assert.equal(template.metadata.labels["phonehome/build"], job.metadata.name);
    assert.equal(template.spec.restartPolicy, "Never");
  });
  await gone(k8s, "pods");
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});

Deno.test("a missing RBAC verb is reported in one sentence with status 77, and the secret is removed", async () => {
  const rules = roleRules().map((rule) =>
    rule.resources.includes("pods")
      ? { ...rule, verbs: rule.verbs.filter((v) => v !== "create") }
      : rule
  );
  await using k8s = await cluster({ rbac: rules });
  const result = await collect(k8s.build([`--image=${RELAY_IMAGE}`], ["true"]));
  assert.equal(result.code, 77, result.stderr);
  assert.match(
    result.stderr,
    /phonehome: Creating pod slugbuild-[a-z0-9]{8} failed: pods is forbidden: User "system:serviceaccount:builds:phonehome-builder" cannot create resource "pods" in API group "" in the namespace "builds" \(HTTP 403, Forbidden\)\. Check the builder's Role and RoleBinding \(deploy\/rbac\.yaml\)\.\n/,
  );
  assert.equal(deletes(k8s, "secrets").length, 1);
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});

Deno.test("the example build image's slugbuilder-style script runs under the relay", async () => {
  await using k8s = await cluster();
  const script = new URL("../deploy/example-build-image/build.sh", import.meta.url).pathname;
  const app = `${k8s.dir}/app`;
  const buildpack = `${k8s.dir}/buildpacks/shell`;
  await Deno.mkdir(app, { recursive: true });
  await Deno.mkdir(`${buildpack}/bin`, { recursive: true });
  await Deno.writeTextFile(`${app}/run.sh`, "echo hi\n");
  await Deno.writeTextFile(
    `${buildpack}/bin/detect`,
    '#!/bin/sh\n[ -f "$1/run.sh" ] && echo Shell\n',
    {
      mode: 0o755,
    },
  );
  await Deno.writeTextFile(
    `${buildpack}/bin/compile`,
    "#!/bin/sh\nprintf '\\033[1G       nothing to compile in %s\\n' \"$1\"\necho 'no Procfile' >&2\n",
    { mode: 0o755 },
  );
  const result = await collect(k8s.build(
    [
      `--image=${RELAY_IMAGE}`,
      `--env=APP_DIR=${app}`,
      `--env=BUILDPACKS_DIR=${k8s.dir}/buildpacks`,
      `--env=CACHE_DIR=${k8s.dir}/cache`,
      `--env=SLUG_PATH=${k8s.dir}/slug.tgz`,
    ],
    ["sh", script],
  ));
  assert.equal(result.code, 0, result.stderr);
  assert.match(
    result.stdout,
    new RegExp(
      "^\x1b\\[1G-----> Shell app detected\n\x1b\\[1G       nothing to compile in .*\n" +
        "\x1b\\[1G-----> Compressing the slug\n\x1b\\[1G-----> Compiled slug size is \\d+ KiB\n$",
    ),
  );
  assert.match(result.stderr, /no Procfile\n/);
  await Deno.stat(`${k8s.dir}/slug.tgz`);
});

const inClusterSkip = Deno.uid() === 0 ? undefined : "a private mount namespace needs root";

Deno.test({
  name: "inside a pod the builder finds the API through its service account" +
    (inClusterSkip === undefined ? "" : ` (skipped: ${inClusterSkip})`),
  ignore: inClusterSkip !== undefined,
  fn: async () => {
    await using k8s = await cluster();
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

/** Stores an object as if phonehome had created it `ageMs` ago. */
function leftover(
  k8s: TestCluster,
  resource: "pods" | "jobs" | "secrets",
  name: string,
  options: { ageMs: number; managed?: boolean; ownedBy?: KObject },
): KObject {
  const metadata: KObject["metadata"] = {
    name,
    namespace: NAMESPACE,
    labels: options.managed === false ? {} : { "app.kubernetes.io/managed-by": "phonehome" },
  };
  if (options.ownedBy !== undefined) {
    metadata.ownerReferences = [{
      apiVersion: "batch/v1",
      kind: "Job",
      name: options.ownedBy.metadata.name,
      uid: options.ownedBy.metadata.uid,
    }];
  }
  // A node selector no node has, so the kubelet stand-in leaves these pods alone.
  const podSpec = {
    nodeSelector: { "phonehome.test/never": "true" },
    restartPolicy: "Never",
    containers: [{ name: "build", image: RELAY_IMAGE }],
  };
  const body: Record<string, unknown> = resource === "pods"
    ? { spec: podSpec }
    : resource === "jobs"
    ? { spec: { template: { spec: podSpec } } }
    : { data: {} };
  const stored = k8s.api.insert(resource, { metadata, ...body } as KObject);
  return k8s.api.update(resource, NAMESPACE, name, (o) => {
    o.metadata.creationTimestamp = new Date(Date.now() - options.ageMs).toISOString();
  }) ?? stored;
}

Deno.test("'phonehome gc' deletes leftover build pods, Jobs and Secrets older than the age, and nothing else", async (t) => {
  await using k8s = await cluster();
  const hour = 3_600_000;
  leftover(k8s, "pods", "slugbuild-old-pod", { ageMs: 2 * hour });
  leftover(k8s, "pods", "slugbuild-new-pod", { ageMs: 60_000 });
  leftover(k8s, "pods", "someone-elses-pod", { ageMs: 5 * hour, managed: false });
  const job = leftover(k8s, "jobs", "slugbuild-old-job", { ageMs: 3 * hour });
  leftover(k8s, "pods", "slugbuild-old-job-x1y2z", { ageMs: 3 * hour, ownedBy: job });
  leftover(k8s, "secrets", "slugbuild-old-pod-phonehome", { ageMs: 2 * hour });
  leftover(k8s, "secrets", "slugbuild-new-pod-phonehome", { ageMs: 60_000 });
  const gc = (...flags: string[]): Promise<Finished> =>
    collect(spawnPhonehome(["gc", `--kubeconfig=${k8s.kubeconfigPath}`, ...flags]));

  await t.step("--dry-run only says what it would delete", async () => {
    const result = await gc("--dry-run");
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      result.stdout,
      "would delete job/slugbuild-old-job (age 3h)\n" +
        "would delete pod/slugbuild-old-pod (age 2h)\n" +
        "would delete secret/slugbuild-old-pod-phonehome (age 2h)\n",
    );
    assert.ok(k8s.leftovers().pods.includes("slugbuild-old-pod"));
    assert.deepEqual(k8s.leftovers().jobs, ["slugbuild-old-job"]);
  });

  await t.step("a real run deletes them, the Job's pod with its Job", async () => {
    const result = await gc("--older-than=3600000");
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      result.stdout,
      "deleted job/slugbuild-old-job (age 3h)\n" +
        "deleted pod/slugbuild-old-pod (age 2h)\n" +
        "deleted secret/slugbuild-old-pod-phonehome (age 2h)\n",
    );
    const left = k8s.leftovers();
    assert.deepEqual(left.pods.sort(), ["slugbuild-new-pod", "someone-elses-pod"]);
    assert.deepEqual(left.jobs, []);
    assert.deepEqual(left.secrets, ["slugbuild-new-pod-phonehome"]);
  });
});

Deno.test("every verb the Role grants was used, and nothing else was needed", () => {
  const granted = new Set(
    roleRules().flatMap((rule) =>
      rule.apiGroups.flatMap((group) =>
        rule.resources.flatMap((resource) =>
          rule.verbs.map((verb) => `${group}/${resource}/${verb}`)
        )
      )
    ),
  );
  assert.deepEqual([...usedVerbs].sort(), [...granted].sort());
});
