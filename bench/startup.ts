/**
 * Case 6: from `phonehome build` starting to the build's first byte arriving
 * at the reader, against Deno's own floor (a script that prints one byte),
 * since phonehome starts two Deno processes one after the other; the same
 * over wss (`build --tls`); and what making the per-build certificates of
 * `--tls` costs, in a fresh process per sample.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { V8_FLAGS_ARGUMENT } from "../src/v8_flags.ts";
import type { CertificateCost } from "./certificate_cost.ts";
import type { BenchContext } from "./context.ts";
import { readOutput } from "./reader.ts";
import { cleanEnvironment, CONFIG, DENO, phonehomeBuildArgs } from "./routes.ts";
import { fixed, median } from "./stats.ts";

const FIRST_BYTE = fileURLToPath(new URL("./first_byte.ts", import.meta.url));
const CERTIFICATE_COST = fileURLToPath(new URL("./certificate_cost.ts", import.meta.url));

/** The bound on what making a build's CA and certificate may add to its start. */
const CERTIFICATE_TARGET_MS = 50;

/** Milliseconds from spawning `args` to the first byte on its stdout. */
async function timeToFirstByte(
  context: BenchContext,
  args: string[],
  what: string,
): Promise<number> {
  const startedAt = performance.now();
  const child = new Deno.Command(DENO, {
    args,
    env: cleanEnvironment(),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const read = await readOutput(child.stdout);
  const status = await child.status;
  if (!status.success || read.bytes !== 1) {
    context.failures.push(
      `start-up, ${what}: status ${status.code}, ${read.bytes} bytes; ${(await stderr).trim()}`,
    );
  }
  await stderr;
  return read.firstByteAt - startedAt;
}

/**
 * One fresh Deno process's certificate timings, run with phonehome's own V8
 * flags and config so that it starts like `phonehome build` does; undefined
 * (and a failure recorded) if it did not report them.
 */
async function certificateCostOnce(context: BenchContext): Promise<CertificateCost | undefined> {
  const output = await new Deno.Command(DENO, {
    args: ["run", "--quiet", V8_FLAGS_ARGUMENT, `--config=${CONFIG}`, CERTIFICATE_COST],
    env: cleanEnvironment(),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  try {
    if (output.success) return JSON.parse(text) as CertificateCost;
  } catch {
    // Reported below with what it printed.
  }
  const stderr = new TextDecoder().decode(output.stderr).trim();
  context.failures.push(
    `start-up, certificates: status ${output.code}; ${text.trim()} ${stderr}`.trim(),
  );
  return undefined;
}

/** `runs` fresh processes' certificate timings. */
async function certificateCosts(context: BenchContext, runs: number): Promise<CertificateCost[]> {
  const costs: CertificateCost[] = [];
  for (let i = 0; i < runs; i++) {
    const cost = await certificateCostOnce(context);
    if (cost !== undefined) costs.push(cost);
  }
  return costs;
}

/** Launch to first byte of Deno alone, `phonehome build` and `phonehome build --tls`, per round. */
interface LaunchTimes {
  denoAloneMs: number[];
  phonehomeMs: number[];
  phonehomeTlsMs: number[];
}

async function launchTimes(context: BenchContext, runs: number): Promise<LaunchTimes> {
  const times: LaunchTimes = { denoAloneMs: [], phonehomeMs: [], phonehomeTlsMs: [] };
  const command = ["printf", "x"];
  // Rounds alternate the three, so that a neighbour's load weighs on each alike.
  for (let i = 0; i < runs; i++) {
    times.denoAloneMs.push(
      await timeToFirstByte(context, ["run", "-A", "--quiet", FIRST_BYTE], "Deno alone"),
    );
    times.phonehomeMs.push(
      await timeToFirstByte(context, phonehomeBuildArgs(command), "phonehome build"),
    );
    times.phonehomeTlsMs.push(
      await timeToFirstByte(
        context,
        phonehomeBuildArgs(command, ["--tls"]),
        "phonehome build --tls",
      ),
    );
  }
  return times;
}

/** The row of plain `phonehome build` against Deno alone. */
function launchRow(context: BenchContext, times: LaunchTimes, runs: number): void {
  const phonehomeMs = median(times.phonehomeMs);
  const denoMs = median(times.denoAloneMs);
  context.rows.push({
    case: "6. Start-up",
    figure: "launch to first output byte, ms",
    phonehome: fixed(phonehomeMs, 0),
    baseline: `${fixed(denoMs, 0)} (one Deno process printing a byte)`,
    ratio: `${fixed(phonehomeMs / denoMs, 1)}x`,
    target: "",
    met: null,
    how: `median of ${runs} runs of \`phonehome build -- printf x\`; ` +
      `it starts two Deno processes in turn (builder, then relay)`,
  });
}

/** The row of `phonehome build --tls` against the same without `--tls`. */
function tlsLaunchRow(context: BenchContext, times: LaunchTimes, runs: number): number {
  const tlsMs = median(times.phonehomeTlsMs);
  const plainMs = median(times.phonehomeMs);
  // Paired by round, like the bulk ratios: each difference sees one moment's load.
  const extraMs = median(times.phonehomeTlsMs.map((ms, i) => ms - times.phonehomeMs[i]));
  context.rows.push({
    case: "6. Start-up",
    figure: "launch to first output byte over wss (build --tls), ms",
    phonehome: fixed(tlsMs, 0),
    baseline: `${fixed(plainMs, 0)} (phonehome build without --tls)`,
    ratio: `${extraMs >= 0 ? "+" : ""}${fixed(extraMs, 0)} ms`,
    target: "",
    met: null,
    how: `median of ${runs} runs of \`phonehome build --tls -- printf x\`, in the same rounds ` +
      "as the row above; it adds the per-build certificates, the relay reading the CA, and a " +
      "TLS handshake; ratio: median of the rounds' differences",
  });
  return extraMs;
}

/** The row of the certificates' cost, the first call in a fresh process. */
function certificateRow(context: BenchContext, costs: CertificateCost[], runs: number): void {
  const first = costs.map((cost) => cost.firstMs);
  const firstMs = median(first);
  const maxMs = first.length === 0 ? Number.NaN : Math.max(...first);
  const secondMs = median(costs.map((cost) => cost.secondMs));
  context.rows.push({
    case: "6. Start-up",
    figure: "per-build CA and certificate (build --tls), ms: median / max",
    phonehome: `${fixed(firstMs, 1)} / ${fixed(maxMs, 1)}`,
    baseline: `${fixed(secondMs, 1)} (a second call in the same process)`,
    ratio: "",
    target: `< ${CERTIFICATE_TARGET_MS} ms`,
    met: Number.isFinite(firstMs) ? firstMs < CERTIFICATE_TARGET_MS : null,
    how: `the first call of makeBuildCertificates (an ECDSA P-256 CA and leaf, Web Crypto) in ` +
      `each of ${runs} fresh Deno processes (bench/certificate_cost.ts, with phonehome's V8 ` +
      "flags), timed around the call; met by the median; baseline: the median of a second " +
      "call right after it in each process",
  });
}

/** Case 6. */
export async function startupCase(context: BenchContext): Promise<void> {
  const runs = context.options.startupRuns;
  const times = await launchTimes(context, runs);
  const certificates = await certificateCosts(context, runs);
  context.progress(
    `start-up: phonehome ${fixed(median(times.phonehomeMs), 0)} ms, with --tls ${
      fixed(median(times.phonehomeTlsMs), 0)
    } ms, Deno alone ${fixed(median(times.denoAloneMs), 0)} ms; certificates ${
      fixed(median(certificates.map((cost) => cost.firstMs)), 1)
    } ms`,
  );
  launchRow(context, times, runs);
  const tlsExtraMs = tlsLaunchRow(context, times, runs);
  certificateRow(context, certificates, runs);
  context.data.startup = { runs, ...times, tlsExtraMs, certificates };
}
