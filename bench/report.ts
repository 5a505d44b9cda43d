/**
 * The benchmark's outputs: one table on stdout, and under the results
 * directory the same as JSON (with every run's figures) and Markdown, plus
 * SVG charts of the latency distribution, throughput per case and memory.
 *
 * @module
 */

import type { AttacksData } from "./attacks.ts";
import type { BenchContext, Row } from "./context.ts";
import type { LatencyCaseResult } from "./latency.ts";
import type { ScaleRound } from "./scale.ts";
import { BYTES_PER_MB, fixed, median } from "./stats.ts";
import { type Bar, barChart, type BarGroup, COLOURS, latencyChart } from "./svg.ts";
import { pairedRatio, type ThroughputSeries } from "./throughput.ts";

/** The machine a run measured. */
export interface Machine {
  cpu: string;
  cores: number;
  memoryBytes: number;
  kernel: string;
  os: string;
  deno: string;
  v8: string;
  socat: string;
}

function firstMatch(text: string, pattern: RegExp): string | undefined {
  return pattern.exec(text)?.[1]?.trim();
}

function readOr(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/** Reads what matters about this machine from /proc, /etc and the tools. */
export async function describeMachine(): Promise<Machine> {
  let socat = "not found";
  try {
    const output = await new Deno.Command("socat", { args: ["-V"], stderr: "null" }).output();
    socat = firstMatch(new TextDecoder().decode(output.stdout), /socat version (\S+)/) ?? socat;
  } catch {
    // Reported as not found.
  }
  return {
    cpu: firstMatch(readOr("/proc/cpuinfo"), /^model name\s*:\s*(.+)$/m) ?? "unknown",
    cores: navigator.hardwareConcurrency,
    memoryBytes: Number(firstMatch(readOr("/proc/meminfo"), /^MemTotal:\s+(\d+) kB$/m) ?? 0) *
      1024,
    kernel: `${Deno.build.os} ${Deno.osRelease()}`,
    os: firstMatch(readOr("/etc/os-release"), /^PRETTY_NAME="?([^"\n]+)"?$/m) ?? "unknown",
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    socat,
  };
}

/** A one-line description of the machine. */
export function machineLine(machine: Machine): string {
  return `${machine.cores} cores (${machine.cpu}), ${
    fixed(machine.memoryBytes / 1024 ** 3, 0)
  } GiB RAM, ${machine.os}, ${machine.kernel}; Deno ${machine.deno} (V8 ${machine.v8}), ` +
    `socat ${machine.socat}`;
}

const COLUMNS = ["Case", "Figure", "phonehome", "Baseline", "Ratio", "Target", "Met"] as const;

function cells(row: Row): string[] {
  const met = row.met === null ? "" : row.met ? "yes" : "NO";
  return [row.case, row.figure, row.phonehome, row.baseline, row.ratio, row.target, met];
}

/** The number a row's case starts with ("7. Attacks": 7). */
function caseNumber(row: Row): number {
  return Number(/^(\d+)\./.exec(row.case)?.[1] ?? Number.MAX_SAFE_INTEGER);
}

/**
 * Rows by case number, each case's in the order they were added: a case may
 * add a row under another's number (the source transfer's MB/s beside the
 * bulk output's), whenever it runs.
 */
export function inCaseOrder(rows: readonly Row[]): Row[] {
  return [...rows].sort((a, b) => caseNumber(a) - caseNumber(b));
}

/** The table as aligned text, with how each figure was measured as numbered notes below. */
export function textTable(unordered: readonly Row[]): string {
  const rows = inCaseOrder(unordered);
  const body = rows.map((row, i) => {
    const c = cells(row);
    c[1] = `${c[1]} [${i + 1}]`;
    return c;
  });
  const widths = COLUMNS.map((title, i) => Math.max(title.length, ...body.map((c) => c[i].length)));
  const line = (c: readonly string[]): string =>
    c.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd();
  return [
    line(COLUMNS),
    line(widths.map((w) => "-".repeat(w))),
    ...body.map(line),
    "",
    ...rows.map((row, i) => `[${i + 1}] ${row.how}`),
  ].join("\n");
}

function markdownCell(text: string): string {
  return text.replace(/\|/g, "\\|");
}

/** The table as Markdown, with a column saying how each figure was measured. */
export function markdownTable(rows: readonly Row[]): string {
  const header = [...COLUMNS, "How measured"];
  return [
    `| ${header.join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
    ...inCaseOrder(rows).map((row) =>
      `| ${[...cells(row), row.how].map(markdownCell).join(" | ")} |`
    ),
  ].join("\n");
}

function latencySvg(context: BenchContext): string | undefined {
  const latency = context.data.latency as { cases: LatencyCaseResult[] } | undefined;
  if (latency === undefined) return undefined;
  const palette = {
    phonehome: [COLOURS.phonehome, "#8250df"],
    socat: [COLOURS.baseline, "#57606a"],
  } as const;
  const lines = latency.cases.flatMap((result, index) =>
    result.series.map((series) => ({
      name: `${series.route === "socat" ? "socat baseline" : "phonehome"}, ${result.name} ` +
        `(p99 ${fixed(series.summary.p99Ms, 2)} ms)`,
      samplesMs: series.samplesMs,
      colour: palette[series.route][index % 2],
      dashed: series.route === "socat",
    }))
  );
  return latencyChart({
    title: "Latency: build's write to the reader (cumulative share of lines)",
    lines,
    pollTickMs: 100,
    batchingMs: [250, 3000],
  });
}

function pair(
  heading: string,
  phonehome: { name: string; value: number; text: string },
  baseline: { name: string; value: number; text: string },
): BarGroup {
  const bars: Bar[] = [
    { ...phonehome, colour: COLOURS.phonehome },
    { ...baseline, colour: COLOURS.baseline },
  ];
  return { heading, bars };
}

/** The bulk case's lanes as report.ts reads them; older results lack the extra lanes. */
type BulkData = Record<"phonehome" | "socat", ThroughputSeries> & {
  phonehomeOnePipe?: ThroughputSeries;
  phonehomeWss?: ThroughputSeries;
};

/** Colours of the bulk case's extra phonehome lanes, apart from the two routes'. */
const EXTRA_LANE_COLOURS = { onePipe: "#8250df", wss: "#1a7f37" } as const;

const mbps = (value: number): string => `${fixed(value / BYTES_PER_MB, 1)} MB/s`;

/**
 * The bulk case's bars: phonehome over ws with two pipes, then each extra
 * lane the run had (one pipe, wss), then socat; the heading gives each
 * one's paired ratio (the one pipe's over socat, wss's over ws).
 */
function bulkGroup(bulk: BulkData): BarGroup {
  const p = median(bulk.phonehome.bytesPerSecond);
  const s = median(bulk.socat.bytesPerSecond);
  const bars: Bar[] = [{
    name: "phonehome, two pipes",
    value: p,
    text: mbps(p),
    colour: COLOURS.phonehome,
  }];
  let heading = `1. Bulk: ratio ${fixed(pairedRatio(bulk), 2)} (median of paired runs)`;
  const onePipe = bulk.phonehomeOnePipe;
  if (onePipe !== undefined) {
    const o = median(onePipe.bytesPerSecond);
    heading += `; one pipe: ${fixed(pairedRatio(bulk, { over: onePipe }), 2)}`;
    bars.push({
      name: "phonehome, one pipe (--merge)",
      value: o,
      text: mbps(o),
      colour: EXTRA_LANE_COLOURS.onePipe,
    });
  }
  const wss = bulk.phonehomeWss;
  if (wss !== undefined) {
    const w = median(wss.bytesPerSecond);
    heading += `; wss over ws: ${
      fixed(pairedRatio(bulk, { over: wss, under: bulk.phonehome }), 2)
    }`;
    bars.push({
      name: "phonehome, wss (--tls)",
      value: w,
      text: mbps(w),
      colour: EXTRA_LANE_COLOURS.wss,
    });
  }
  bars.push({ name: "socat (plain TCP relay)", value: s, text: mbps(s), colour: COLOURS.baseline });
  return { heading, bars };
}

function throughputSvg(context: BenchContext): string | undefined {
  const groups: BarGroup[] = [];
  const bulk = context.data.bulk as BulkData | undefined;
  if (bulk !== undefined) groups.push(bulkGroup(bulk));
  const small = context.data.smallWrites as
    | (Record<"phonehome" | "socat", ThroughputSeries> & { lineBytes: number })
    | undefined;
  if (small !== undefined) {
    const p = median(small.phonehome.bytesPerSecond) / small.lineBytes;
    const s = median(small.socat.bytesPerSecond) / small.lineBytes;
    const text = (v: number): string => `${Math.round(v).toLocaleString("en-US")} lines/s`;
    groups.push(
      pair(
        `2. Small writes: ratio ${fixed(pairedRatio(small), 2)} (median of paired runs)`,
        { name: "phonehome", value: p, text: text(p) },
        { name: "socat (plain TCP relay)", value: s, text: text(s) },
      ),
    );
  }
  const scale = context.data.scale as { alone: ScaleRound[]; many: ScaleRound } | undefined;
  if (scale !== undefined) {
    const p = scale.many.totalBytesPerSecond;
    const s = median(scale.alone.map((round) => round.totalBytesPerSecond));
    groups.push(
      pair(
        `5. Scale: ratio ${fixed(p / s, 2)}`,
        { name: `${scale.many.builds} builds at once`, value: p, text: mbps(p) },
        { name: "one build alone", value: s, text: mbps(s) },
      ),
    );
  }
  if (groups.length === 0) return undefined;
  return barChart({
    title: "Throughput per case (each case on its own scale)",
    groups,
    scalePerGroup: true,
  });
}

interface MemoryRunData {
  label: string;
  relay: number;
  receiver: number;
  relayAnonymous: number;
  receiverAnonymous: number;
}

interface MemoryData {
  idleDenoBytes: number;
  fullSpeed: MemoryRunData[];
  throttled: MemoryRunData[];
}

function memorySvg(context: BenchContext): string | undefined {
  const memory = context.data.memory as MemoryData | undefined;
  if (memory === undefined) return undefined;
  const megabytes = (value: number): string => `${fixed(value / BYTES_PER_MB, 1)} MB`;
  const groups: BarGroup[] = [
    ...memory.fullSpeed.map((run) => ({ title: `full speed, ${run.label}`, run })),
    ...memory.throttled.map((run) => ({ title: `throttled reader, ${run.label}`, run })),
  ].map(({ title, run }) => ({
    heading: title,
    bars: [
      {
        name: "relay",
        value: run.relay,
        text: `${megabytes(run.relay)} (private ${megabytes(run.relayAnonymous)})`,
        colour: COLOURS.phonehome,
      },
      {
        name: "receiver",
        value: run.receiver,
        text: `${megabytes(run.receiver)} (private ${megabytes(run.receiverAnonymous)})`,
        colour: "#8250df",
      },
    ],
  }));
  return barChart({
    title: "Peak RSS of relay and receiver (private: less the deno executable's shared pages)",
    groups,
    scalePerGroup: false,
    marks: [
      { value: 80 * BYTES_PER_MB, text: "target 80 MB", colour: COLOURS.target },
      {
        value: memory.idleDenoBytes,
        text: `Deno alone ${megabytes(memory.idleDenoBytes)}`,
        colour: COLOURS.text,
      },
    ],
  });
}

function attacksSvg(context: BenchContext): string | undefined {
  const attacks = context.data.attacks as AttacksData | undefined;
  if (attacks === undefined) return undefined;
  const megabytes = (value: number): string => `${fixed(value / BYTES_PER_MB, 1)} MB`;
  const runs = [{ ...attacks.undisturbed, name: "the build undisturbed" }, ...attacks.runs];
  return barChart({
    title: `Receiver memory under ${attacks.attackSeconds} s attacks by a holder of the secret`,
    groups: runs.map((run) => ({
      heading: run.name,
      bars: [
        {
          name: "peak RSS (VmHWM)",
          value: run.receiverPeakRssBytes,
          text: megabytes(run.receiverPeakRssBytes),
          colour: COLOURS.phonehome,
        },
        {
          name: "private (largest RssAnon)",
          value: run.receiverPeakAnonymousRssBytes,
          text: megabytes(run.receiverPeakAnonymousRssBytes),
          colour: "#8250df",
        },
      ],
    })),
    scalePerGroup: false,
    marks: [{
      value: attacks.targetBytes,
      text: `target ${megabytes(attacks.targetBytes)}`,
      colour: COLOURS.target,
    }],
  });
}

/** Chart files written, by file name. */
export function charts(context: BenchContext): Record<string, string> {
  const out: Record<string, string> = {};
  const latency = latencySvg(context);
  if (latency !== undefined) out["latency.svg"] = latency;
  const throughput = throughputSvg(context);
  if (throughput !== undefined) out["throughput.svg"] = throughput;
  const memory = memorySvg(context);
  if (memory !== undefined) out["memory.svg"] = memory;
  const attacks = attacksSvg(context);
  if (attacks !== undefined) out["attacks.svg"] = attacks;
  return out;
}

/** The Markdown report: machine, command, table, charts, failures. */
export function markdownReport(
  context: BenchContext,
  options: { machine: Machine; command: string; date: string; chartFiles: readonly string[] },
): string {
  return [
    "# phonehome benchmark results",
    "",
    `Measured ${options.date} on ${machineLine(options.machine)}.`,
    "",
    `Reproduce with \`${options.command}\`. Ratios compare phonehome with a baseline measured ` +
    "in the same run; absolute figures depend on the machine and its neighbours. MB = 10^6 bytes.",
    "",
    markdownTable(context.rows),
    "",
    ...options.chartFiles.map((file) => `![${file.replace(/\.svg$/, "")}](${file})`),
    "",
    context.failures.length === 0
      ? "No byte was lost and every process exited 0."
      : `Failures:\n\n${context.failures.map((f) => `- ${f}`).join("\n")}`,
    "",
  ].join("\n");
}
