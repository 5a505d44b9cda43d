/**
 * Keeps the benchmark working: runs `bench/run.ts --quick` (tiny sizes, every
 * case, the real processes) into a scratch directory and checks that it
 * completes, that its outputs parse, and that no byte was lost. No timing is
 * asserted: figures from tiny sizes on a shared machine mean nothing.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { DENO, tempDir } from "./support/processes.ts";
import { missing, unlessUnavailable } from "./support/requirements.ts";

const BENCH = fileURLToPath(new URL("../bench/run.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../deno.json", import.meta.url));

/** The shape of results.json that the smoke test relies on. */
interface Results {
  rows: Array<{ case: string; figure: string; phonehome: string; met: boolean | null }>;
  failures: string[];
  cases: {
    bulk: {
      phonehome: { bytesPerSecond: number[]; cpuSeconds: Array<{ relay: number }> };
      phonehomeOnePipe: { bytesPerSecond: number[]; buildFlags: string[] };
      phonehomeWss: { bytesPerSecond: number[]; buildFlags: string[] };
    };
    startup: { runs: number; certificates: Array<{ firstMs: number; secondMs: number }> };
    source: { runs: number; bytesPerSecond: number[]; tree: { files: number } };
    scale: { many: { lostBytes: number; wholeBuilds: number; builds: number } };
    latency: { cases: Array<{ series: Array<{ samplesMs: number[] }>; lines: number }> };
    attacks: {
      undisturbed: AttackRun;
      runs: Array<AttackRun & { name: string; mode: string }>;
    };
  };
}

/** One run of the attacks case, as far as the smoke test looks. */
interface AttackRun {
  receiverPeakRssBytes: number;
  receiverExitCode: number;
  build: { intact: boolean } | null;
}

/**
 * socat is the baseline every case measures against; the scale case holds
 * builds at FIFOs and reads each with cksum.
 */
const benchMissing = missing(["socat", "mkfifo", "cksum"]);

Deno.test(unlessUnavailable(benchMissing, {
  name: "the quick benchmark runs every case, writes parseable results, and loses no byte",
  fn: async () => {
    await using dir = await tempDir();
    const output = await new Deno.Command(DENO, {
      args: ["run", "-A", "--quiet", `--config=${CONFIG}`, BENCH, "--quick", `--out=${dir.path}`],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, `bench failed:\n${stdout}\n${stderr}`);
    assert.match(stdout, /No byte was lost and every process exited 0\./);
    const cases = ["1. Bulk", "2. Small", "3. Latency", "4. Memory", "5. Scale", "6. Start"];
    for (const name of [...cases, "7. Attacks"]) {
      assert.ok(stdout.includes(name), `the table has a row for ${name}`);
    }

    const results = JSON.parse(await Deno.readTextFile(`${dir.path}/results.json`)) as Results;
    assert.deepEqual(results.failures, []);
    assert.ok(results.rows.length >= 10, "every case added its rows");
    const bulk = results.cases.bulk;
    assert.ok(
      results.rows.some((row) => row.case.startsWith("1. Bulk") && /one pipe/.test(row.figure)),
      "the table has a row for the bulk case with one pipe",
    );
    assert.deepEqual(bulk.phonehomeOnePipe.buildFlags, ["--merge"]);
    const bulkRows = results.rows.filter((row) => row.case.startsWith("1. Bulk"));
    assert.equal(bulkRows.filter((row) => /^CPU-s per GB/.test(row.figure)).length, 3);
    assert.deepEqual(bulk.phonehomeWss.buildFlags, ["--tls"]);
    assert.equal(bulk.phonehomeWss.bytesPerSecond.length, bulk.phonehome.bytesPerSecond.length);
    assert.ok(bulkRows.some((row) => /^MB\/s, wss/.test(row.figure)), "a row for wss");
    const startup = results.cases.startup;
    assert.equal(startup.certificates.length, startup.runs, "every certificate process reported");
    assert.ok(
      results.rows.some((row) => row.case === "6. Start-up" && /certificate/.test(row.figure)),
      "a start-up row for the per-build certificates",
    );
    assert.equal(bulk.phonehome.cpuSeconds.length, bulk.phonehome.bytesPerSecond.length);
    assert.ok(bulk.phonehome.cpuSeconds.every((cpu) => cpu.relay > 0), "the relay's CPU was read");
    assert.ok(bulkRows.some((row) => /the source in/.test(row.figure)), "a row for the source");
    assert.equal(
      results.rows.filter((row) => row.case === "4. Memory" && /the source in/.test(row.figure))
        .length,
      2,
      "memory rows for the relay and the receiver taking the source in",
    );
    const source = results.cases.source;
    assert.equal(source.bytesPerSecond.length, source.runs);
    assert.ok(source.tree.files > 1, "the source tree has files");
    assert.equal(bulk.phonehomeOnePipe.bytesPerSecond.length, bulk.phonehome.bytesPerSecond.length);
    const scale = results.cases.scale.many;
    assert.equal(scale.lostBytes, 0);
    assert.equal(scale.wholeBuilds, scale.builds);
    for (const latencyCase of results.cases.latency.cases) {
      for (const series of latencyCase.series) {
        assert.equal(series.samplesMs.length, latencyCase.lines, "every timed line arrived");
      }
    }

    const attacks = results.cases.attacks;
    assert.deepEqual(attacks.runs.map((run) => run.mode), [
      "huge",
      "flood",
      "pings",
      "owner-pings",
    ]);
    for (const run of [attacks.undisturbed, ...attacks.runs]) {
      assert.ok(run.receiverPeakRssBytes > 0, "the receiver's memory was sampled");
      if (run.build !== null) assert.ok(run.build.intact, "the build came through the attack");
    }
    for (const run of attacks.runs) {
      const rows = results.rows.filter((row) =>
        row.case === "7. Attacks" && row.figure.startsWith(run.name)
      );
      assert.equal(rows.length, 2, `a memory row and an outcome row for ${run.name}`);
    }

    const markdown = await Deno.readTextFile(`${dir.path}/results.md`);
    assert.match(markdown, /^\| Case \| Figure \| phonehome \|/m);
    for (const chart of ["latency.svg", "throughput.svg", "memory.svg", "attacks.svg"]) {
      const svg = await Deno.readTextFile(`${dir.path}/${chart}`);
      assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/, chart);
      assert.match(svg, /<\/svg>\n$/, chart);
      assert.ok(!/NaN|undefined/.test(svg), `${chart} has no NaN or undefined`);
    }
  },
}));
