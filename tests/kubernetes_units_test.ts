/**
 * The Kubernetes backend's pure parts: names, flag parsing, templates, and
 * reading pod status (the retry policy's are in kubernetes_retry_policy_test.ts).
 */

import assert from "node:assert/strict";
import { parseFlags } from "../src/cli/flags.ts";
import { buildSpec } from "../src/cli/build_command.ts";
import { UsageError } from "../src/errors.ts";
import { kubernetesSettings } from "../src/cli/kubernetes_flags.ts";
import type { KubernetesSettings } from "../src/launchers/kubernetes/settings.ts";
import { parseTemplate } from "../src/launchers/kubernetes/manifest.ts";
import { buildName, MAX_POD_NAME_LENGTH } from "../src/launchers/kubernetes/naming.ts";
import { assessPod, type PodAssessment, readPod } from "../src/launchers/kubernetes/pod_status.ts";

function settings(args: string[], env: Record<string, string> = {}): KubernetesSettings {
  const flags = parseFlags(buildSpec, [...args, "--", "true"], (name) => env[name]);
  return kubernetesSettings(flags, (name) => env[name]);
}

Deno.test("pod names follow the old builder's rule and never exceed 63 characters", () => {
  assert.match(
    buildName({ prefix: "slugbuild", app: "web", sha: "ABCDEF0123456789", maxLength: 63 }),
    /^slugbuild-web-abcdef01-[a-z0-9]{8}$/,
  );
  const long = buildName({
    prefix: "dockerbuild",
    app: "a-very-long-application-name-that-goes-on-and-on-and-on-forever",
    sha: "0123456789",
    maxLength: MAX_POD_NAME_LENGTH,
  });
  assert.ok(long.length <= 63, long);
  assert.match(long, /^dockerbuild-a-very-long-[a-z0-9-]*[a-z0-9]-01234567-[a-z0-9]{8}$/);
});

Deno.test("the old builder's variables set the node selector and the pull policy by build kind", () => {
  const env = {
    BUILDER_POD_NODE_SELECTOR: "pool:builders, disk:ssd",
    SLUG_BUILDER_IMAGE_PULL_POLICY: "Always",
    DOCKER_BUILDER_IMAGE_PULL_POLICY: "IfNotPresent",
  };
  const slug = settings(["--image=x"], env);
  assert.deepEqual(slug.nodeSelector, { pool: "builders", disk: "ssd" });
  assert.equal(slug.pullPolicy, "Always");
  assert.equal(
    settings(["--image=x", "--name-prefix=dockerbuild"], env).pullPolicy,
    "IfNotPresent",
  );
  assert.equal(settings(["--pull-policy=Never"], env).pullPolicy, "Never");
});

Deno.test("the API retry budget defaults to 30 s and comes from --api-retry-budget or PHONEHOME_API_RETRY_BUDGET", () => {
  assert.deepEqual(settings(["--image=x"]).retry, { budgetMs: 30_000 });
  assert.deepEqual(settings(["--image=x"], { PHONEHOME_API_RETRY_BUDGET: "5000" }).retry, {
    budgetMs: 5000,
  });
  assert.deepEqual(settings(["--image=x", "--api-retry-budget=2000"]).retry, { budgetMs: 2000 });
  assert.throws(
    () => settings(["--api-retry-budget=10"]),
    (error: unknown) =>
      error instanceof UsageError && /--api-retry-budget must be at least 1000/.test(error.message),
  );
});

Deno.test("malformed Kubernetes settings are usage errors that name their source", () => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [
      [],
      { BUILDER_POD_NODE_SELECTOR: "oops" },
      /BUILDER_POD_NODE_SELECTOR \(from the environment\) must look like KEY:VALUE/,
    ],
    [["--limits=memory=lots"], {}, /--limits gives memory the quantity "lots"/],
    [["--kind=deployment"], {}, /--kind must be pod or job/],
    [["--env=PHONEHOME_URL=x"], {}, /--env cannot set PHONEHOME_URL/],
    [
      [],
      { SLUG_BUILDER_IMAGE_PULL_POLICY: "Sometimes" },
      /SLUG_BUILDER_IMAGE_PULL_POLICY must be one of Always, IfNotPresent, Never/,
    ],
  ];
  for (const [args, env, message] of cases) {
    assert.throws(
      () => settings(args, env),
      (error: unknown) => error instanceof UsageError && message.test(error.message),
    );
  }
});

Deno.test("a pod template must be one Pod or Job with named containers", () => {
  assert.equal(
    parseTemplate("kind: Pod\napiVersion: v1\nspec: {containers: [{name: a}]}\n", "t").kind,
    "Pod",
  );
  const rejects: Array<[string, RegExp]> = [
    ["kind: Deployment\napiVersion: apps/v1\nspec: {}\n", /it must be a v1 Pod or a batch\/v1 Job/],
    ["kind: Pod\napiVersion: v1\nspec: {containers: []}\n", /has no containers/],
    ["kind: Pod\napiVersion: v1\nspec: {containers: [{image: x}]}\n", /a container without a name/],
    ["a: [\n", /is neither JSON nor YAML/],
    ["kind: Pod\n---\nkind: Pod\n", /holds 2 documents/],
  ];
  for (const [text, message] of rejects) {
    assert.throws(
      () => parseTemplate(text, "t.yaml"),
      (error: unknown) => error instanceof UsageError && message.test(error.message),
    );
  }
});

Deno.test("pod status reads as starting, running, unable to start, or ended", () => {
  const pod = (status: Record<string, unknown>): PodAssessment =>
    assessPod(
      readPod({
        metadata: { name: "p" },
        spec: { containers: [{ name: "b", image: "i" }] },
        status,
      }, "b"),
    );
  assert.equal(pod({ phase: "Pending" }).kind, "starting");
  assert.equal(
    pod({
      containerStatuses: [{
        name: "b",
        state: { waiting: { reason: "ErrImagePull", message: "nope" } },
      }],
    })
      .kind,
    "cannotStart",
  );
  assert.equal(pod({ containerStatuses: [{ name: "b", state: { running: {} } }] }).kind, "running");
  const oom = pod({
    phase: "Failed",
    containerStatuses: [{
      name: "b",
      state: { terminated: { exitCode: 137, reason: "OOMKilled", startedAt: "t" } },
    }],
  });
  assert.deepEqual(oom.kind === "ended" && [oom.exitCode, oom.ran], [137, true]);
  const evicted = pod({ phase: "Failed", reason: "Evicted", message: "low on memory" });
  assert.equal(evicted.kind === "ended" && evicted.why, "was evicted: low on memory.");
});
