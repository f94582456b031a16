// Turns bench/compare results into Markdown tables and one SVG chart (no external service):
// panels of dot plots, one row per workload, one dot per system on a log scale, turbomq drawn
// largest — throughput, broker CPU per message, consume-and-ack, the wire floor, and end-to-end
// latency at a fixed rate.

export interface SystemInfo {
  key: string;
  label: string;
  color: string;
  /** Name in ratio headers, when `label` is long. */
  short?: string;
}

export interface Figure {
  workload: string;
  /** Median msgs/s per system key (undefined: not run / failed). */
  rates: Record<string, number | undefined>;
  /** Median broker CPU (user + system) per message received, µs, per system key. */
  cpuUsPerMsg: Record<string, number | undefined>;
  /** Runs that lost or duplicated messages, per system key. */
  notExact: Record<string, number>;
  /** Why a system has no figure (e.g. "n/a (needs issue 10)"), per system key. */
  notAvailable?: Record<string, string>;
}

export interface LatencyFigure {
  system: string;
  p50: number;
  p99: number;
  p999: number;
  rate: number;
  exact: boolean;
}

export interface WireFigure {
  workload: string;
  clientRate: number | undefined;
  floorRate: number | undefined;
  clientCpuUs: number | undefined;
  floorCpuUs: number | undefined;
  /**
   * Median over the repetitions of client rate / floor rate, each repetition's two runs back
   * to back: steadier than the ratio of the medians when the machine's speed drifts between
   * repetitions (the floor alone moved 2-3x from run to run on the shared VM).
   */
  pairedRatio?: number | undefined;
}

const fmtRate = (n: number | undefined) => n === undefined || !Number.isFinite(n) ? '–' : n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(n >= 1e5 ? 0 : 1)} k` : n.toFixed(0);
const fmtRatio = (a: number | undefined, b: number | undefined) => a === undefined || b === undefined || !(b > 0) || !Number.isFinite(a) ? '–' : `${(a / b).toFixed(2)}×`;
export const fmtUs = (us: number | undefined) => us === undefined || !Number.isFinite(us) ? '–' : us < 10 ? `${us.toFixed(2)} µs` : us < 100 ? `${us.toFixed(1)} µs` : `${us.toFixed(0)} µs`;
export const fmtMs = (ms: number) => !Number.isFinite(ms) ? '–' : ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : ms < 10 ? `${ms.toFixed(2)} ms` : ms < 100 ? `${ms.toFixed(1)} ms` : ms < 10_000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(0)} s`;
/** Axis ticks: round values, no trailing zeros. */
const tickRate = (n: number) => n >= 1e6 ? `${n / 1e6} M` : n >= 1e3 ? `${n / 1e3} k` : `${n}`;
const tickMs = (ms: number) => ms < 1 ? `${+(ms * 1000).toPrecision(3)} µs` : ms < 1000 ? `${+ms.toPrecision(3)} ms` : `${+(ms / 1000).toPrecision(3)} s`;
const tickUs = (us: number) => tickMs(us / 1000);

const label = (systems: SystemInfo[], key: string) => { const s = systems.find((x) => x.key === key); return s?.short ?? s?.label ?? key; };

function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** Messages/s per workload and system, then baseline / each of `ratioTo`. */
export function markdownTable(systems: SystemInfo[], figures: Figure[], baseline: string, ratioTo: string[]): string {
  const head = ['workload', ...systems.map((s) => s.label), ...ratioTo.map((k) => `${label(systems, baseline)} / ${label(systems, k)}`)];
  return table(head, figures.map((f) => [
    f.workload,
    ...systems.map((s) => f.notAvailable?.[s.key] ?? `${fmtRate(f.rates[s.key])}${f.notExact[s.key] ? ' ⚠' : ''}`),
    ...ratioTo.map((k) => fmtRatio(f.rates[baseline], f.rates[k])),
  ]));
}

/** Broker CPU µs per message per workload and system, then baseline / each of `ratioTo` (below 1: the baseline uses less). */
export function cpuTable(systems: SystemInfo[], figures: Figure[], baseline: string, ratioTo: string[]): string {
  const head = ['workload', ...systems.map((s) => s.label), ...ratioTo.map((k) => `${label(systems, baseline)} / ${label(systems, k)}`)];
  return table(head, figures.map((f) => [
    f.workload,
    ...systems.map((s) => f.notAvailable?.[s.key] ?? fmtUs(f.cpuUsPerMsg[s.key])),
    ...ratioTo.map((k) => fmtRatio(f.cpuUsPerMsg[baseline], f.cpuUsPerMsg[k])),
  ]));
}

export function latencyTable(systems: SystemInfo[], lat: LatencyFigure[], baseline: string): string {
  const base = lat.find((l) => l.system === baseline);
  const rows: string[][] = [];
  for (const s of systems) {
    const l = lat.find((x) => x.system === s.key);
    if (l === undefined) continue;
    rows.push([`${s.label}${l.exact ? '' : ' ⚠'}`, fmtRate(l.rate), fmtMs(l.p50), fmtMs(l.p99), fmtMs(l.p999), base ? `${(l.p50 / base.p50).toFixed(2)}×` : '–', base ? `${(l.p99 / base.p99).toFixed(2)}×` : '–']);
  }
  return table(['system', 'achieved msgs/s', 'p50', 'p99', 'p99.9', 'p50 vs turbomq', 'p99 vs turbomq'], rows);
}

export function wireTable(figures: WireFigure[]): string {
  return table(
    ['workload', 'turbomq client', 'wire floor', 'client / floor', 'broker CPU, client', 'broker CPU, floor'],
    figures.map((f) => [f.workload, fmtRate(f.clientRate), fmtRate(f.floorRate), f.pairedRatio === undefined ? fmtRatio(f.clientRate, f.floorRate) : fmtRatio(f.pairedRatio, 1), fmtUs(f.clientCpuUs), fmtUs(f.floorCpuUs)]),
  );
}

// ── the chart ──────────────────────────────────────────────────────────────────────────

export interface Panel {
  title: string;
  /** Right-aligned caption above the plot, e.g. "further right is better". */
  caption: string;
  systems: SystemInfo[];
  rows: { label: string; values: Record<string, number | undefined> }[];
  /** Unit of the values: msgs/s, µs or ms (sets the tick labels). */
  unit: 'rate' | 'us' | 'ms';
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Dot-plot panels stacked in one SVG: workloads down, a log scale across. */
export function svgChart(title: string, subtitle: string, baseline: string, panels: Panel[]): string {
  const longest = Math.max(0, ...panels.flatMap((p) => p.rows.map((r) => r.label.length)));
  const W = 980, left = Math.max(250, Math.ceil(30 + longest * 6.4)), right = 30, plotW = W - left - right, rowH = 22;
  const out: string[] = [];
  let y = 60;
  const body: string[] = [];
  for (const panel of panels) {
    const vals = panel.rows.flatMap((r) => Object.values(r.values)).filter((v): v is number => v !== undefined && Number.isFinite(v) && v > 0);
    if (vals.length === 0) continue;
    const lo = 10 ** Math.floor(Math.log10(Math.min(...vals)));
    const hi = 10 ** Math.ceil(Math.log10(Math.max(...vals) * 1.0001));
    const x = (v: number) => left + (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) * plotW;
    const tick = panel.unit === 'rate' ? tickRate : panel.unit === 'us' ? tickUs : tickMs;
    y += 24;
    body.push(`<text x="20" y="${y}" font-size="15" font-weight="600">${esc(panel.title)}</text>`);
    body.push(`<text x="${W - right}" y="${y}" text-anchor="end" fill="#555">${esc(panel.caption)}</text>`);
    y += 22;
    let lx = 20;
    for (const s of panel.systems) {
      const r = s.key === baseline ? 7 : 5;
      body.push(`<circle cx="${lx + 6}" cy="${y - 4}" r="${r}" fill="${s.color}"/>`);
      body.push(`<text x="${lx + 16}" y="${y}" ${s.key === baseline ? 'font-weight="600"' : ''}>${esc(s.label)}</text>`);
      lx += 26 + s.label.length * (s.key === baseline ? 7.8 : 7.2);
    }
    const top = y + 16, plotH = panel.rows.length * rowH;
    for (let v = lo; v <= hi * 1.0001; v *= 10) {
      for (const m of [1, 2, 5]) {
        const gv = v * m;
        if (gv > hi * 1.0001) break;
        const gx = x(gv);
        body.push(`<line x1="${gx.toFixed(1)}" y1="${top - 6}" x2="${gx.toFixed(1)}" y2="${top + plotH}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`);
        if (m === 1 || (m === 5 && hi / lo <= 1e4)) body.push(`<text x="${gx.toFixed(1)}" y="${top + plotH + 16}" text-anchor="middle" fill="#666">${tick(gv)}</text>`);
      }
    }
    panel.rows.forEach((row, i) => {
      const cy = top + i * rowH + rowH / 2;
      if (i % 2 === 0) body.push(`<rect x="10" y="${cy - rowH / 2}" width="${W - right - 10}" height="${rowH}" fill="#f6f8fa" opacity="0.7"/>`);
      body.push(`<text x="${left - 10}" y="${cy + 4}" text-anchor="end">${esc(row.label)}</text>`);
      const present = panel.systems.map((s) => row.values[s.key]).filter((v): v is number => v !== undefined && Number.isFinite(v) && v > 0);
      if (present.length > 1) body.push(`<line x1="${x(Math.min(...present)).toFixed(1)}" y1="${cy}" x2="${x(Math.max(...present)).toFixed(1)}" y2="${cy}" stroke="#bbb" stroke-width="1.5"/>`);
      for (const s of [...panel.systems].reverse()) {
        const v = row.values[s.key];
        if (v === undefined || !Number.isFinite(v) || !(v > 0)) continue;
        const isBase = s.key === baseline;
        const text = panel.unit === 'rate' ? `${fmtRate(v)} msgs/s` : panel.unit === 'us' ? fmtUs(v) : fmtMs(v);
        body.push(`<circle cx="${x(v).toFixed(1)}" cy="${cy}" r="${isBase ? 7 : 5}" fill="${s.color}" ${isBase ? 'stroke="#000" stroke-width="1"' : 'opacity="0.9"'}><title>${esc(`${s.label}, ${row.label}: ${text}`)}</title></circle>`);
      }
    });
    y = top + plotH + 40;
  }
  const H = y + 10;
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="20" y="28" font-size="18" font-weight="600">${esc(title)}</text>`);
  out.push(`<text x="20" y="48" fill="#555">${esc(subtitle)}</text>`);
  out.push(...body, '</svg>');
  return out.join('\n');
}
