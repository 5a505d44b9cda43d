/**
 * What a build pod is made from, end to end through `phonehome build
 * --backend kubernetes` against the fake API server: pod templates in JSON (a
 * Pod) and YAML (a Job) keep their own fields and get the relay's wiring, and
 * the example build image's slugbuilder-style script runs under the relay.
 */

import assert from "node:assert/strict";
import { collect } from "./support/processes.ts";
import type { KObject } from "./kube/fake_api_server.ts";
import { RELAY_IMAGE, TestCluster } from "./kube/cluster.ts";
import { gone } from "./kube/cluster_queries.ts";

Deno.test("a pod template in JSON (a Pod) and in YAML (a Job) keep their fields and get the relay's wiring", async (t) => {
  await using k8s = await TestCluster.start();
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

Deno.test("the example build image's slugbuilder-style script runs under the relay", async () => {
  await using k8s = await TestCluster.start();
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
