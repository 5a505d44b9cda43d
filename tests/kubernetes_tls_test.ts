/**
 * wss on Kubernetes: by default the build pod dials wss:// and trusts the CA
 * its Secret holds, which nothing else in the pod spec carries; --no-tls
 * leaves both out.
 */

import assert from "node:assert/strict";
import { collect } from "./support/processes.ts";
import type { KObject } from "./kube/fake_api_server.ts";
import { RELAY_IMAGE, TestCluster } from "./kube/cluster.ts";
import { requests } from "./kube/cluster_queries.ts";

type EnvVar = { name: string; value?: string; valueFrom?: unknown };

/** The environment of the first container of the build's pod, as it was created. */
function podEnv(k8s: TestCluster): EnvVar[] {
  const pod = requests(k8s, "create", "pods")[0]?.body as KObject;
  const spec = pod.spec as { containers: Array<{ env: EnvVar[] }> };
  return spec.containers[0].env;
}

/** The data of the build's Secret, as it was created, decoded. */
function secretData(k8s: TestCluster): Record<string, string> {
  const secret = requests(k8s, "create", "secrets")[0]?.body as { data: Record<string, string> };
  return Object.fromEntries(Object.entries(secret.data).map(([key, value]) => [key, atob(value)]));
}

Deno.test("by default the build pod dials wss:// and trusts the CA from its Secret", async () => {
  await using k8s = await TestCluster.start();
  const result = await collect(
    k8s.build([`--image=${RELAY_IMAGE}`], ["echo", "over wss"]),
  );
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "over wss\n");
  const env = podEnv(k8s);
  assert.match(env.find((v) => v.name === "PHONEHOME_URL")?.value ?? "", /^wss:\/\//);
  const ca = env.find((v) => v.name === "PHONEHOME_TLS_CA");
  const secretName = (requests(k8s, "create", "secrets")[0]?.body as KObject).metadata.name;
  assert.deepEqual(ca, {
    name: "PHONEHOME_TLS_CA",
    valueFrom: { secretKeyRef: { name: secretName, key: "ca.crt" } },
  });
  const data = secretData(k8s);
  assert.deepEqual(Object.keys(data).sort(), ["ca.crt", "token"]);
  assert.match(data["ca.crt"], /^-----BEGIN CERTIFICATE-----\n/);
  assert.ok(!JSON.stringify(podEnv(k8s)).includes("BEGIN CERTIFICATE"));
  assert.deepEqual(k8s.leftovers(), { pods: [], secrets: [], jobs: [] });
});

Deno.test("with --no-tls the build pod dials ws:// and its Secret holds only the token", async () => {
  await using k8s = await TestCluster.start();
  const result = await collect(
    k8s.build([`--image=${RELAY_IMAGE}`, "--no-tls"], ["echo", "over ws"]),
  );
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "over ws\n");
  const env = podEnv(k8s);
  assert.match(env.find((v) => v.name === "PHONEHOME_URL")?.value ?? "", /^ws:\/\//);
  assert.equal(env.find((v) => v.name === "PHONEHOME_TLS_CA"), undefined);
  assert.deepEqual(Object.keys(secretData(k8s)), ["token"]);
});
