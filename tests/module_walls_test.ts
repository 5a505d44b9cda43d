/**
 * The architecture's walls, read from Deno's own module graph (`deno info
 * --json`), type-only imports included: what each part may import, and what
 * the relay binary carries.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { defaultRelayInvocation } from "../src/launchers/local.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const ROOT_URL = new URL("../", import.meta.url).href;

/** Each module of `entry`'s graph (paths from the checkout's root, or npm:/node: names) and what it imports. */
async function importGraph(entry: string): Promise<Map<string, string[]>> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", `--config=${ROOT}deno.json`, `${ROOT}${entry}`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) throw new Error(new TextDecoder().decode(output.stderr));
  const info = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    modules: Array<{
      specifier: string;
      dependencies?: Array<{ code?: { specifier: string }; type?: { specifier: string } }>;
    }>;
  };
  const name = (specifier: string): string => specifier.replace(ROOT_URL, "");
  return new Map(info.modules.map((module) => [
    name(module.specifier),
    (module.dependencies ?? []).flatMap((dependency) =>
      [dependency.code?.specifier, dependency.type?.specifier]
        .filter((specifier): specifier is string => specifier !== undefined)
        .map(name)
    ),
  ]));
}

/** Every module `from` reaches in `graph`, itself included. */
function reachable(graph: Map<string, string[]>, from: string): Set<string> {
  const seen = new Set<string>();
  const pending = [from];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (seen.has(next)) continue;
    seen.add(next);
    pending.push(...(graph.get(next) ?? []));
  }
  return seen;
}

/** The modules under `folder` that reach any module matching `forbidden`, with what they reach. */
function breaches(
  graph: Map<string, string[]>,
  folder: string,
  forbidden: RegExp,
): Record<string, string[]> {
  const found: Record<string, string[]> = {};
  for (const module of graph.keys()) {
    if (!module.startsWith(folder)) continue;
    const reached = [...reachable(graph, module)].filter((other) => forbidden.test(other));
    if (reached.length > 0) found[module] = reached.sort();
  }
  return found;
}

const everything = importGraph("main.ts");

Deno.test("the protocol module imports neither side, nor anything of phonehome's outside it", async () => {
  const graph = await everything;
  assert.deepEqual(breaches(graph, "src/protocol/", /^(src\/(?!protocol\/)|npm:)/), {});
});

Deno.test("the relay never imports the receiver, a launcher or the command line", async () => {
  const graph = await everything;
  assert.deepEqual(breaches(graph, "src/relay/", /^(src\/(receiver|launchers|cli)\/|npm:)/), {});
});

Deno.test("the receiver never imports the relay's code, a launcher or the command line", async () => {
  const graph = await everything;
  // The relay's tuning is the one shared settings type, and it imports nothing but the protocol.
  const forbidden = /^(src\/(relay\/(?!tuning\.ts)|launchers\/|cli\/))/;
  assert.deepEqual(breaches(graph, "src/receiver/", forbidden), {});
});

Deno.test("launchers take typed settings and never import the command line", async () => {
  const graph = await everything;
  assert.deepEqual(breaches(graph, "src/launchers/", /^src\/cli\//), {});
});

Deno.test("the relay's entry point loads nothing of the builder's: no receiver, launcher or npm package", async () => {
  const graph = await importGraph("src/cli/relay_main.ts");
  const builders = [...graph.keys()].filter((module) =>
    /^(src\/(receiver|launchers)\/|npm:)/.test(module)
  );
  assert.deepEqual(builders, []);
});

Deno.test("only the command line reads Deno.args", async () => {
  const readers: string[] = [];
  for (const module of (await everything).keys()) {
    if (!module.startsWith("src/") || module.startsWith("src/cli/")) continue;
    if ((await Deno.readTextFile(`${ROOT}${module}`)).includes("Deno.args")) readers.push(module);
  }
  assert.deepEqual(readers, []);
});

Deno.test("a build from the checkout starts the relay from the relay's entry point", () => {
  const invocation = defaultRelayInvocation();
  assert.ok(
    invocation.includes(fileURLToPath(new URL("../src/cli/relay_main.ts", import.meta.url))),
    invocation.join(" "),
  );
});
