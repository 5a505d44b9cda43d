/**
 * `deno task bench`: runs phonehome's benchmarks end to end with the real
 * processes, each side by side with a baseline measured in the same run, and
 * prints one table; the table, every run's figures and the charts also go to
 * the results directory. Exits 1 if any byte was lost or any process failed
 * (never because of a timing).
 *
 * @module
 */

import { attacksCase } from "./attacks.ts";
import { BenchContext } from "./context.ts";
import { latencyCase } from "./latency.ts";
import { memoryCase } from "./memory.ts";
import { type BenchOptions, type CaseName, parseOptions, usage } from "./options.ts";
import {
  charts,
  describeMachine,
  inCaseOrder,
  machineLine,
  markdownReport,
  markdownTable,
  textTable,
} from "./report.ts";
import { scaleCase } from "./scale.ts";
import { sourceCase } from "./source.ts";
import { startupCase } from "./startup.ts";
import { bulkCase, smallWritesCase } from "./throughput.ts";

const CASES: Record<CaseName, (context: BenchContext) => Promise<void>> = {
  bulk: bulkCase,
  small: smallWritesCase,
  latency: latencyCase,
  memory: memoryCase,
  scale: scaleCase,
  startup: startupCase,
  source: sourceCase,
  attacks: attacksCase,
};

/** JSON with arrays of numbers on one line each: thousands of latencies stay readable. */
export function compactJson(value: unknown): string {
  return JSON.stringify(value, rounded, 1).replace(
    /\[\s*(-?[\d.e+-]+(?:,\s*-?[\d.e+-]+)*)\s*\]/g,
    (_match, numbers: string) => `[${numbers.split(/,\s*/).join(",")}]`,
  );
}

/** JSON replacer: latencies to the microsecond, which is all they are worth. */
function rounded(_key: string, value: unknown): unknown {
  return typeof value === "number" && !Number.isInteger(value)
    ? Math.round(value * 1000) / 1000
    : value;
}

async function preflight(): Promise<string | undefined> {
  try {
    const output = await new Deno.Command("socat", { args: ["-V"], stdout: "null", stderr: "null" })
      .output();
    if (!output.success) return "socat -V failed";
  } catch {
    return "socat is not installed (apt-get install socat); it is the baseline";
  }
  return undefined;
}

/** Runs the bench; resolves with the exit status. */
export async function runBench(options: BenchOptions, args: readonly string[]): Promise<number> {
  const missing = await preflight();
  if (missing !== undefined) {
    console.error(`bench: cannot run: ${missing}.`);
    return 69;
  }
  const workDir = await Deno.makeTempDir({ prefix: "phonehome-bench-" });
  const context = new BenchContext(options, workDir);
  const machine = await describeMachine();
  const date = new Date().toISOString();
  const command = ["deno task bench", ...args].join(" ");
  context.progress(`on ${machineLine(machine)}`);
  try {
    for (const name of options.cases) await CASES[name](context);
  } finally {
    await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }

  const table = textTable(context.rows);
  console.log(`phonehome benchmark, ${date}\n${machineLine(machine)}\n\n${table}\n`);
  if (context.failures.length > 0) {
    console.log(`FAILURES:\n${context.failures.map((f) => `- ${f}`).join("\n")}`);
  } else {
    console.log("No byte was lost and every process exited 0.");
  }

  await Deno.mkdir(options.outDir, { recursive: true });
  const chartFiles = charts(context);
  for (const [file, text] of Object.entries(chartFiles)) {
    await Deno.writeTextFile(`${options.outDir}/${file}`, text);
  }
  await Deno.writeTextFile(
    `${options.outDir}/results.json`,
    compactJson({
      date,
      command,
      machine,
      options,
      rows: inCaseOrder(context.rows),
      failures: context.failures,
      cases: context.data,
    }) + "\n",
  );
  await Deno.writeTextFile(
    `${options.outDir}/results.md`,
    markdownReport(context, { machine, command, date, chartFiles: Object.keys(chartFiles) }),
  );
  await Deno.writeTextFile(`${options.outDir}/table.md`, markdownTable(context.rows) + "\n");
  console.error(`bench: results in ${options.outDir}`);
  return context.failures.length === 0 ? 0 : 1;
}

if (import.meta.main) {
  let parsed: BenchOptions | "help";
  try {
    parsed = parseOptions(Deno.args);
  } catch (error) {
    console.error(`bench: ${(error as Error).message}`);
    Deno.exit(64);
  }
  if (parsed === "help") {
    console.log(usage());
    Deno.exit(0);
  }
  Deno.exit(await runBench(parsed, Deno.args));
}
