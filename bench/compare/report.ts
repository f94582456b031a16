// Turns bench/compare results into a Markdown table and an SVG chart (no external service):
// one row per workload, one dot per system on a log scale of messages/s, turbomq drawn
// largest; below, end-to-end latency at a fixed rate.

export interface SystemInfo { key: string; label: string; color: string }

export interface Figure {
  workload: string;
  /** Median msgs/s per system key (undefined: not run / failed). */
  rates: Record<string, number | undefined>;
  /** Runs that lost or duplicated messages, per system key. */
  notExact: Record<string, number>;
}

export interface LatencyFigure {
  system: string;
  p50: number;
  p99: number;
  p999: number;
  rate: number;
  exact: boolean;
}

const fmtRate = (n: number | undefined) => n === undefined || !Number.isFinite(n) ? '–' : n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(n >= 1e5 ? 0 : 1)} k` : n.toFixed(0);
const fmtRatio = (a: number | undefined, b: number | undefined) => a === undefined || b === undefined || !(b > 0) ? '–' : `${(a / b).toFixed(2)}×`;
export const fmtMs = (ms: number) => !Number.isFinite(ms) ? '–' : ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : ms < 10 ? `${ms.toFixed(2)} ms` : ms < 100 ? `${ms.toFixed(1)} ms` : ms < 10_000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(0)} s`;
/** Axis ticks: round values, no trailing zeros. */
const tickRate = (n: number) => n >= 1e6 ? `${n / 1e6} M` : n >= 1e3 ? `${n / 1e3} k` : `${n}`;
const tickMs = (ms: number) => ms < 1 ? `${Math.round(ms * 1000)} µs` : ms < 1000 ? `${+ms.toPrecision(3)} ms` : `${+(ms / 1000).toPrecision(3)} s`;

export function markdownTable(systems: SystemInfo[], figures: Figure[], baseline: string, ratioTo: string[]): string {
  const head = ['workload', ...systems.map((s) => s.label), ...ratioTo.map((k) => `${systems.find((s) => s.key === baseline)!.label} / ${systems.find((s) => s.key === k)?.label ?? k}`)];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const f of figures) {
    const cells = systems.map((s) => `${fmtRate(f.rates[s.key])}${f.notExact[s.key] ? ' ⚠' : ''}`);
    const ratios = ratioTo.map((k) => fmtRatio(f.rates[baseline], f.rates[k]));
    lines.push(`| ${f.workload} | ${cells.join(' | ')} | ${ratios.join(' | ')} |`);
  }
  return lines.join('\n');
}

export function latencyTable(systems: SystemInfo[], lat: LatencyFigure[], baseline: string): string {
  const base = lat.find((l) => l.system === baseline);
  const lines = ['| system | achieved msgs/s | p50 | p99 | p99.9 | p50 vs turbomq | p99 vs turbomq |', '|---|---:|---:|---:|---:|---:|---:|'];
  for (const s of systems) {
    const l = lat.find((x) => x.system === s.key);
    if (l === undefined) continue;
    lines.push(`| ${s.label}${l.exact ? '' : ' ⚠'} | ${fmtRate(l.rate)} | ${fmtMs(l.p50)} | ${fmtMs(l.p99)} | ${fmtMs(l.p999)} | ${base ? `${(l.p50 / base.p50).toFixed(2)}×` : '–'} | ${base ? `${(l.p99 / base.p99).toFixed(2)}×` : '–'} |`);
  }
  return lines.join('\n');
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A dot plot: workloads down, log msgs/s across, one dot per system; then latency rows. */
export function svgChart(systems: SystemInfo[], figures: Figure[], lat: LatencyFigure[], title: string, subtitle: string, baseline: string): string {
  const W = 980, left = 250, right = 30, plotW = W - left - right;
  const rowH = 22, top = 92;
  const allRates = figures.flatMap((f) => Object.values(f.rates).filter((x): x is number => x !== undefined && x > 0));
  const lo = 10 ** Math.floor(Math.log10(Math.min(...allRates, 1e3)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...allRates, 1e4)));
  const x = (v: number) => left + (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) * plotW;
  const out: string[] = [];
  const plotH = figures.length * rowH;
  const latTop = top + plotH + 90;
  const latRows = ['p50', 'p99', 'p99.9'] as const;
  const H = latTop + latRows.length * rowH + 50;
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="20" y="28" font-size="18" font-weight="600">${esc(title)}</text>`);
  out.push(`<text x="20" y="48" fill="#555">${esc(subtitle)}</text>`);
  // legend
  let lx = 20;
  for (const s of systems) {
    const r = s.key === baseline ? 7 : 5;
    out.push(`<circle cx="${lx + 6}" cy="68" r="${r}" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 16}" y="72" ${s.key === baseline ? 'font-weight="600"' : ''}>${esc(s.label)}</text>`);
    lx += 26 + s.label.length * 7.2;
  }
  out.push(`<text x="${W - right}" y="72" text-anchor="end" fill="#555">messages/s, log scale — further right is better</text>`);
  // grid
  for (let v = lo; v <= hi; v *= 10) {
    for (const m of [1, 2, 5]) {
      const gv = v * m;
      if (gv > hi) break;
      const gx = x(gv);
      out.push(`<line x1="${gx.toFixed(1)}" y1="${top - 6}" x2="${gx.toFixed(1)}" y2="${top + plotH}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`);
      if (m === 1 || m === 5) out.push(`<text x="${gx.toFixed(1)}" y="${top + plotH + 16}" text-anchor="middle" fill="#666">${tickRate(gv)}</text>`);
    }
  }
  figures.forEach((f, i) => {
    const cy = top + i * rowH + rowH / 2;
    if (i % 2 === 0) out.push(`<rect x="${left - 240}" y="${cy - rowH / 2}" width="${plotW + 240}" height="${rowH}" fill="#f6f8fa" opacity="0.7"/>`);
    out.push(`<text x="${left - 10}" y="${cy + 4}" text-anchor="end">${esc(f.workload)}</text>`);
    const vals = systems.map((s) => f.rates[s.key]).filter((v): v is number => v !== undefined && v > 0);
    if (vals.length > 1) out.push(`<line x1="${x(Math.min(...vals)).toFixed(1)}" y1="${cy}" x2="${x(Math.max(...vals)).toFixed(1)}" y2="${cy}" stroke="#bbb" stroke-width="1.5"/>`);
    for (const s of [...systems].reverse()) {
      const v = f.rates[s.key];
      if (v === undefined || !(v > 0)) continue;
      const isBase = s.key === baseline;
      out.push(`<circle cx="${x(v).toFixed(1)}" cy="${cy}" r="${isBase ? 7 : 5}" fill="${s.color}" ${isBase ? 'stroke="#000" stroke-width="1"' : 'opacity="0.9"'}><title>${esc(`${s.label}: ${fmtRate(v)} msgs/s`)}</title></circle>`);
    }
  });
  // latency panel
  if (lat.length > 0) {
    const vals = lat.flatMap((l) => [l.p50, l.p99, l.p999]).filter((v) => v > 0);
    const llo = 10 ** Math.floor(Math.log10(Math.min(...vals)));
    const lhi = 10 ** Math.ceil(Math.log10(Math.max(...vals)));
    const lx2 = (v: number) => left + (Math.log10(v) - Math.log10(llo)) / (Math.log10(lhi) - Math.log10(llo)) * plotW;
    out.push(`<text x="20" y="${latTop - 36}" font-size="15" font-weight="600">End-to-end latency at a fixed 10,000 msgs/s (1 producer, 1 consumer, 16 B)</text>`);
    out.push(`<text x="${W - right}" y="${latTop - 14}" text-anchor="end" fill="#555">send to receive, log scale — further left is better</text>`);
    for (let v = llo; v <= lhi; v *= 10) {
      for (const m of [1, 2, 5]) {
        const gv = v * m;
        if (gv > lhi) break;
        const gx = lx2(gv);
        out.push(`<line x1="${gx.toFixed(1)}" y1="${latTop - 6}" x2="${gx.toFixed(1)}" y2="${latTop + latRows.length * rowH}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`);
        if (m === 1) out.push(`<text x="${gx.toFixed(1)}" y="${latTop + latRows.length * rowH + 16}" text-anchor="middle" fill="#666">${tickMs(gv)}</text>`);
      }
    }
    latRows.forEach((name, i) => {
      const cy = latTop + i * rowH + rowH / 2;
      if (i % 2 === 0) out.push(`<rect x="${left - 240}" y="${cy - rowH / 2}" width="${plotW + 240}" height="${rowH}" fill="#f6f8fa" opacity="0.7"/>`);
      out.push(`<text x="${left - 10}" y="${cy + 4}" text-anchor="end">${name}</text>`);
      for (const s of [...systems].reverse()) {
        const l = lat.find((q) => q.system === s.key);
        if (l === undefined) continue;
        const v = name === 'p50' ? l.p50 : name === 'p99' ? l.p99 : l.p999;
        if (!(v > 0)) continue;
        const isBase = s.key === baseline;
        out.push(`<circle cx="${lx2(v).toFixed(1)}" cy="${cy}" r="${isBase ? 7 : 5}" fill="${s.color}" ${isBase ? 'stroke="#000" stroke-width="1"' : 'opacity="0.9"'}><title>${esc(`${s.label} ${name}: ${fmtMs(v)}`)}</title></circle>`);
      }
    });
  }
  out.push('</svg>');
  return out.join('\n');
}
