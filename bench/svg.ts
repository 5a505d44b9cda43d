/**
 * The benchmark's charts as plain SVG, drawn by hand: a latency distribution
 * (cumulative, on a log scale, with the old design's and the batching peers'
 * delays marked) and horizontal bar charts for throughput and memory. No
 * chart library: a few rectangles, lines and labels.
 *
 * @module
 */

/** Colours of the two routes, and of marks. */
export const COLOURS = {
  phonehome: "#1f6feb",
  baseline: "#8b949e",
  target: "#d1242f",
  band: "#f2cc60",
  grid: "#e5e7eb",
  text: "#24292f",
} as const;

const FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif"';

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function label(
  x: number,
  y: number,
  text: string,
  options: { size?: number; anchor?: string; weight?: string; colour?: string } = {},
): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${FONT} font-size="${
    options.size ?? 12
  }" text-anchor="${options.anchor ?? "start"}" font-weight="${options.weight ?? "normal"}" fill="${
    options.colour ?? COLOURS.text
  }">${escape(text)}</text>`;
}

function svg(width: number, height: number, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    ...body,
    "</svg>",
    "",
  ].join("\n");
}

/** One line of the latency chart. */
export interface LatencyLine {
  /** Legend text. */
  name: string;
  /** Latencies in milliseconds. */
  samplesMs: readonly number[];
  colour: string;
  /** Dashed (for the baseline). */
  dashed: boolean;
}

/**
 * The cumulative distribution of each set of latencies on a log-scaled time
 * axis, with a vertical mark at `pollTickMs` and a band over `batchingMs`.
 */
export function latencyChart(options: {
  title: string;
  lines: readonly LatencyLine[];
  pollTickMs: number;
  batchingMs: readonly [number, number];
}): string {
  const width = 820;
  const height = 440;
  const left = 60;
  const right = 20;
  const top = 50;
  const bottom = 110;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const minLog = -2; // 0.01 ms
  const maxLog = 4; // 10 s
  const x = (ms: number): number => {
    const clamped = Math.min(Math.max(Math.log10(Math.max(ms, 1e-3)), minLog), maxLog);
    return left + ((clamped - minLog) / (maxLog - minLog)) * plotWidth;
  };
  const y = (fraction: number): number => top + (1 - fraction) * plotHeight;
  const body: string[] = [label(left, 28, options.title, { size: 16, weight: "bold" })];
  // The batching peers' band and the old poll tick.
  body.push(
    `<rect x="${x(options.batchingMs[0]).toFixed(1)}" y="${top}" width="${
      (x(options.batchingMs[1]) - x(options.batchingMs[0])).toFixed(1)
    }" height="${plotHeight}" fill="${COLOURS.band}" fill-opacity="0.35"/>`,
    label((x(options.batchingMs[0]) + x(options.batchingMs[1])) / 2, top + 16, "batching peers", {
      anchor: "middle",
      size: 11,
    }),
    label((x(options.batchingMs[0]) + x(options.batchingMs[1])) / 2, top + 30, "250 ms - 3 s", {
      anchor: "middle",
      size: 11,
    }),
    `<line x1="${x(options.pollTickMs)}" y1="${top}" x2="${x(options.pollTickMs)}" y2="${
      top + plotHeight
    }" stroke="${COLOURS.target}" stroke-width="1.5"/>`,
    label(x(options.pollTickMs) - 4, top + 16, "old design: 100 ms poll tick", {
      anchor: "end",
      size: 11,
      colour: COLOURS.target,
    }),
  );
  // Grid and axes.
  for (let power = minLog; power <= maxLog; power++) {
    const ms = 10 ** power;
    const gx = x(ms);
    body.push(
      `<line x1="${gx}" y1="${top}" x2="${gx}" y2="${top + plotHeight}" stroke="${COLOURS.grid}"/>`,
      label(gx, top + plotHeight + 16, ms >= 1000 ? `${ms / 1000} s` : `${ms} ms`, {
        anchor: "middle",
        size: 11,
      }),
    );
  }
  for (const fraction of [0, 0.25, 0.5, 0.75, 0.9, 1]) {
    body.push(
      `<line x1="${left}" y1="${y(fraction)}" x2="${left + plotWidth}" y2="${
        y(fraction)
      }" stroke="${COLOURS.grid}"/>`,
      label(left - 6, y(fraction) + 4, `${Math.round(fraction * 100)}%`, {
        anchor: "end",
        size: 11,
      }),
    );
  }
  body.push(
    label(
      left + plotWidth / 2,
      top + plotHeight + 34,
      "time from the build's write to the reader",
      {
        anchor: "middle",
      },
    ),
  );
  // The distributions.
  options.lines.forEach((line, index) => {
    const sorted = [...line.samplesMs].sort((a, b) => a - b);
    if (sorted.length > 0) {
      // At most a few hundred points: enough for a smooth curve, small enough for a file.
      const step = Math.max(1, Math.floor(sorted.length / 400));
      const points: string[] = [`${x(sorted[0]).toFixed(1)},${y(0).toFixed(1)}`];
      for (let i = 0; i < sorted.length; i += step) {
        points.push(`${x(sorted[i]).toFixed(1)},${y((i + 1) / sorted.length).toFixed(1)}`);
      }
      points.push(`${x(sorted[sorted.length - 1]).toFixed(1)},${y(1).toFixed(1)}`);
      body.push(
        `<polyline points="${points.join(" ")}" fill="none" stroke="${line.colour}" ` +
          `stroke-width="2"${line.dashed ? ' stroke-dasharray="6 4"' : ""}/>`,
      );
    }
    const legendX = left + (index % 2) * (plotWidth / 2);
    const legendY = height - 46 + Math.floor(index / 2) * 18;
    body.push(
      `<line x1="${legendX}" y1="${legendY - 4}" x2="${legendX + 24}" y2="${legendY - 4}" ` +
        `stroke="${line.colour}" stroke-width="2"${line.dashed ? ' stroke-dasharray="6 4"' : ""}/>`,
      label(legendX + 30, legendY, line.name, { size: 11 }),
    );
  });
  return svg(width, height, body);
}

/** One bar. */
export interface Bar {
  /** Text left of the bar. */
  name: string;
  value: number;
  /** Text right of the bar. */
  text: string;
  colour: string;
}

/** A group of bars sharing a heading (and, with `scalePerGroup`, a scale). */
export interface BarGroup {
  heading: string;
  bars: readonly Bar[];
}

/**
 * Horizontal bars in groups. With `scalePerGroup`, each group is scaled to
 * its own largest bar (for figures in different units); otherwise all share
 * one scale, on which `marks` (such as a target) are drawn.
 */
export function barChart(options: {
  title: string;
  groups: readonly BarGroup[];
  scalePerGroup: boolean;
  marks?: ReadonlyArray<{ value: number; text: string; colour: string }>;
}): string {
  const width = 820;
  const left = 250;
  const right = 190;
  const barHeight = 18;
  const gap = 6;
  const headingHeight = 26;
  const top = 50;
  const plotWidth = width - left - right;
  const rows = options.groups.reduce(
    (sum, group) => sum + headingHeight + group.bars.length * (barHeight + gap) + 8,
    0,
  );
  const height = top + rows + 30;
  const allValues = options.groups.flatMap((group) => group.bars.map((bar) => bar.value));
  const globalMax = Math.max(...allValues, ...(options.marks ?? []).map((mark) => mark.value), 1);
  const body: string[] = [label(20, 28, options.title, { size: 16, weight: "bold" })];
  let cursor = top;
  for (const group of options.groups) {
    const groupMax = options.scalePerGroup
      ? Math.max(...group.bars.map((bar) => bar.value), 1)
      : globalMax;
    body.push(label(20, cursor + 17, group.heading, { weight: "bold" }));
    cursor += headingHeight;
    for (const bar of group.bars) {
      const length = Number.isFinite(bar.value) ? (bar.value / groupMax) * plotWidth : 0;
      body.push(
        label(left - 8, cursor + 13, bar.name, { anchor: "end", size: 12 }),
        `<rect x="${left}" y="${cursor}" width="${
          Math.max(0, length).toFixed(1)
        }" height="${barHeight}" fill="${bar.colour}" rx="2"/>`,
        label(left + Math.max(0, length) + 6, cursor + 13, bar.text, { size: 12 }),
      );
      cursor += barHeight + gap;
    }
    cursor += 8;
  }
  if (!options.scalePerGroup) {
    for (const mark of options.marks ?? []) {
      const mx = left + (mark.value / globalMax) * plotWidth;
      body.push(
        `<line x1="${mx.toFixed(1)}" y1="${top}" x2="${
          mx.toFixed(1)
        }" y2="${cursor}" stroke="${mark.colour}" stroke-width="1.5" stroke-dasharray="4 3"/>`,
        label(mx, cursor + 16, mark.text, { anchor: "middle", size: 11, colour: mark.colour }),
      );
    }
  }
  return svg(width, height, body);
}
