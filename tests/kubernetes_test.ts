/**
 * End to end through `phonehome build --backend kubernetes` and `phonehome gc`:
 * a real builder process against the fake API server (which enforces
 * deploy/rbac.yaml), with the kubelet stand-in running each pod's container as
 * a local process in a network namespace of its own when root. These are the
 * scenarios that together make every call the Role grants: a build that
 * succeeds (pods and secrets created, followed, deleted), one whose pod log is
 * shown (pods/log), builds as Jobs (a Job read back to explain its pod's end),
 * 'phonehome gc' (lists), and a Role missing a verb; the last test checks that
 * every verb the Role grants was used by them. The other end-to-end scenarios
 * are in kubernetes_failure_test.ts, kubernetes_cleanup_test.ts,
 * kubernetes_api_connection_test.ts and kubernetes_pod_template_test.ts, and
 * with faults injected in kubernetes_retry_test.ts and
 * kubernetes_retry_failure_test.ts.
 */

import assert from "node:assert/strict";
import {
  collect,
  type Finished,
  LineWatcher,
  readText,
  spawnPhonehome,
} from "./support/processes.ts";
import type { KObject } from "./kube/fake_api_server.ts";
import { NAMESPACE, PLAIN_IMAGE, RELAY_IMAGE, roleRules, TestCluster } from "./kube/cluster.ts";
import { deletes, gone } from "./kube/cluster_queries.ts";
import { leftover } from "./kube/planted_objects.ts";

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
