// Summarises V8 .cpuprofile files (node --cpu-prof): self time per function, the share of
// Wasm, GC, native and idle time, and inclusive time of a few functions of interest.
//
//   node bench/lib/cpuprofile-top.ts FILE.cpuprofile [TOP=30] [--match name,name]

import fs from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

const [file, topArg, ...rest] = process.argv.slice(2);
if (file === undefined) {
  console.error('usage: node bench/lib/cpuprofile-top.ts FILE.cpuprofile [TOP] [--match a,b]');
  process.exit(2);
}
const top = Number(topArg ?? 30);
const matchIdx = rest.indexOf('--match');
const matches = matchIdx >= 0 ? rest[matchIdx + 1]!.split(',') : [];
const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Self time per node from samples and their time deltas.
const selfUs = new Map<number, number>();
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i]!;
  const dt = profile.timeDeltas[i + 1] ?? 0;
  selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
}
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);

const label = (n: Node) => {
  const f = n.callFrame;
  const file = f.url.replace(/^.*\/(src|bench|node_modules)\//, '$1/').replace(/^file:\/\//, '');
  return `${f.functionName || '(anonymous)'}${file ? ` ${file}:${f.lineNumber + 1}` : ''}`;
};
const kind = (n: Node) => {
  const f = n.callFrame;
  if (f.functionName === '(idle)') return 'idle';
  if (f.functionName === '(garbage collector)') return 'gc';
  if (f.functionName === '(program)') return 'program (native, outside JS)';
  if (f.url.startsWith('wasm://') || /^\$?\w+$/.test(f.functionName) && f.url === '' && /wasm/i.test(f.functionName)) return 'wasm';
  if (f.url.startsWith('wasm://')) return 'wasm';
  if (f.url.startsWith('node:')) return 'node internals (JS)';
  if (f.url === '') return 'native / builtin';
  if (f.url.includes('node_modules')) return 'dependencies (JS)';
  return 'own code (JS)';
};

const perLabel = new Map<string, number>();
const perKind = new Map<string, number>();
for (const [id, us] of selfUs) {
  const n = byId.get(id)!;
  const l = label(n);
  perLabel.set(l, (perLabel.get(l) ?? 0) + us);
  const k = kind(n);
  perKind.set(k, (perKind.get(k) ?? 0) + us);
}
const pct = (us: number) => `${(100 * us / total).toFixed(1).padStart(5)} %`;
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled`);
console.log('\nby kind (self time):');
for (const [k, us] of [...perKind].sort((a, b) => b[1] - a[1])) console.log(`  ${pct(us)}  ${k}`);
const busy = total - (perKind.get('idle') ?? 0);
console.log(`  busy (not idle): ${(busy / 1e6).toFixed(2)} s`);
console.log(`\ntop ${top} by self time (% of all samples):`);
for (const [l, us] of [...perLabel].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(us)}  ${l}`);

if (matches.length > 0) {
  // Inclusive time: a sample counts for a function if it is anywhere on the sample's stack.
  console.log('\ninclusive time (% of all samples):');
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const name = byId.get(cur)!.callFrame.functionName;
      for (const m of matches) if (name === m && !seen.has(m)) { seen.add(m); inclusive.set(m, (inclusive.get(m) ?? 0) + us); }
    }
  }
  for (const m of matches) console.log(`  ${pct(inclusive.get(m) ?? 0)}  ${m}`);
}
