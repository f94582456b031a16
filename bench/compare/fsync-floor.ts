// The disk's floor for `--fsync always` with one producer: how long one append + fdatasync
// takes on this file system, from Node, with nothing else around it — the least a single
// awaited durable push can cost (turbomq's log and Redis's `appendfsync always` both do
// write(2) then fdatasync(2) per group commit). Three ways, one file each in os.tmpdir():
// - sync: fs.writeSync + fs.fdatasyncSync on the calling thread (what Redis does in its loop);
// - async: fs.writeSync + fs.fdatasync (libuv's thread pool, a callback: what turbomq's LogWriter does);
// - sync / async, preallocated: the same on a file whose blocks were written (and synced)
//   beforehand, so an fdatasync has no size change / block allocation to journal.
// The modes take turns over ROUNDS rounds (the disk is shared); each figure is the median.
// `node bench/compare/fsync-floor.ts` (COUNT=2000, RECORD_BYTES=48: one 16 B message's PUSH record).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const COUNT = Number(process.env.COUNT ?? 1000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const RECORD = Buffer.alloc(Number(process.env.RECORD_BYTES ?? 48), 7);

export interface FloorResult { name: string; opsPerS: number; p50: number; p99: number }

function summarize(name: string, lat: number[], ms: number): FloorResult {
  const s = [...lat].sort((a, b) => a - b);
  return { name, opsPerS: lat.length * 1000 / ms, p50: s[Math.floor(s.length * 0.5)]!, p99: s[Math.floor(s.length * 0.99)]! };
}

const MODES = ['sync', 'async', 'sync, preallocated', 'async, preallocated'] as const;
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

export async function fsyncFloor(count = COUNT, rounds = ROUNDS): Promise<FloorResult[]> {
  const runs = new Map<string, FloorResult[]>(MODES.map((m) => [m, []]));
  for (let r = 0; r < rounds; r++) {
    for (const res of await oneRound(count)) runs.get(res.name)!.push(res);
  }
  return MODES.map((m) => {
    const rs = runs.get(m)!;
    return { name: m, opsPerS: med(rs.map((x) => x.opsPerS)), p50: med(rs.map((x) => x.p50)), p99: med(rs.map((x) => x.p99)) };
  });
}

async function oneRound(count: number): Promise<FloorResult[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbomq-bench-fsync-'));
  const out: FloorResult[] = [];
  try {
    for (const mode of MODES) {
      const file = path.join(dir, mode.replace(/\W+/g, '-'));
      const fd = fs.openSync(file, 'wx');
      if (mode.endsWith('preallocated')) {
        fs.writeSync(fd, Buffer.alloc(count * RECORD.length + 4096), 0, count * RECORD.length + 4096, 0);
        fs.fdatasyncSync(fd);
      }
      const lat: number[] = [];
      let pos = 0;
      const t0 = performance.now();
      for (let i = 0; i < count; i++) {
        const t = performance.now();
        fs.writeSync(fd, RECORD, 0, RECORD.length, pos);
        pos += RECORD.length;
        if (mode.startsWith('sync')) fs.fdatasyncSync(fd);
        else await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => err ? reject(err) : resolve()));
        lat.push(performance.now() - t);
      }
      out.push(summarize(mode, lat, performance.now() - t0));
      fs.closeSync(fd);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

if (process.argv[1] !== undefined && import.meta.filename === path.resolve(process.argv[1])) {
  for (const r of await fsyncFloor()) {
    console.log(`${r.name.padEnd(22)} ${r.opsPerS.toFixed(0).padStart(6)} write+fdatasync/s  p50 ${(r.p50 * 1000).toFixed(0)} µs  p99 ${(r.p99 * 1000).toFixed(0)} µs`);
  }
}
