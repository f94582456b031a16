// node bench/storage.bench.ts — the durable log on its own (no broker, no sockets):
//   - recovery (replay) of MESSAGES 16 B messages, pushed in batches of 64 and one by one,
//     against a plain sequential read of the same files (readFileSync) in the same run;
//   - compaction following the log (what the broker's main thread does every second under
//     load): one pass over MESSAGES messages pushed in batches of 64 - alone, each batch
//     removed in the same log, or removed in another thread's log - against a plain read;
//   - append + commit throughput of one writer per fsync policy, batched 64 and single.
// Figures are medians of REPEAT runs. MESSAGES=10000000 for the big recovery figure;
// PARTS=recovery,follow,append (the default: all three).
// The data directory is under os.tmpdir() (override with BENCH_DIR); it is deleted after.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { lockDataDir } from '../src/storage/lock.ts';
import { openLog, type FsyncPolicy } from '../src/storage/log.ts';
import { recover } from '../src/storage/recovery.ts';
import { Compactor } from '../src/storage/compaction.ts';

const REPEAT = Number(process.env.REPEAT ?? 3);
const MESSAGES = Number(process.env.MESSAGES ?? 1_000_000);
const APPEND_MESSAGES = Number(process.env.APPEND_MESSAGES ?? 200_000);
const SIZE = 16;
const PARTS = (process.env.PARTS ?? 'recovery,follow,append').split(',');
const base = process.env.BENCH_DIR ?? os.tmpdir();
const queue = Buffer.from('bench');
const topic = Buffer.from('t');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Bytes of every file in `dir`. */
function dirBytes(dir: string): number {
  return fs.readdirSync(dir).reduce((a, n) => a + fs.statSync(path.join(dir, n)).size, 0);
}

function fmt(rate: number): string {
  return rate >= 1e6 ? `${(rate / 1e6).toFixed(2)} M/s` : `${(rate / 1e3).toFixed(1)} k/s`;
}

/** `count` stored records of SIZE bytes with ids from `firstId`. */
function storedRecords(firstId: number, count: number): Buffer {
  const b = Buffer.alloc(count * (16 + SIZE));
  for (let i = 0; i < count; i++) {
    const o = i * (16 + SIZE);
    b.writeUInt32LE(SIZE, o);
    b.writeBigUInt64LE(BigInt(firstId + i), o + 8);
  }
  return b;
}

/**
 * `messages` pushes in batches to thread 2's log; removes: none, each batch removed right
 * after in the same log, or in thread 1's log (read first: a consumer on another worker
 * whose removal reaches the disk before the push it removes, as compaction sees it).
 */
async function fill(dir: string, messages: number, batch: number, removes: 'none' | 'same' | 'other' = 'none'): Promise<void> {
  const lock = await lockDataDir(dir);
  const log = await openLog(dir, { fsync: 'no', threadIndex: 2 });
  const other = removes === 'other' ? await openLog(dir, { fsync: 'no', threadIndex: 1 }) : log;
  const records = storedRecords(0, batch);
  for (let id = 0; id < messages; id += batch) {
    for (let i = 0; i < batch; i++) records.writeBigUInt64LE(BigInt(id + i), i * (16 + SIZE) + 8);
    log.appendPush(queue, topic, records);
    if (removes !== 'none') other.appendRemoveRecords(queue, topic, records);
    if ((id / batch) % 256 === 0) { log.commitSync(); other.commitSync(); }
  }
  await log.commit();
  await log.close();
  if (other !== log) { await other.commit(); await other.close(); }
  await lock.release();
}

async function replay(dir: string): Promise<{ ms: number; readMs: number; messages: number }> {
  // The plain read first, so both find the files in the page cache.
  let t0 = performance.now();
  let bytes = 0;
  for (const name of fs.readdirSync(dir)) if (name.endsWith('.log')) bytes += fs.readFileSync(path.join(dir, name)).length;
  const readMs = performance.now() - t0;
  const lock = await lockDataDir(dir);
  t0 = performance.now();
  const r = await recover(dir);
  let messages = 0;
  for (const t of r.topics) for (const chunk of t.readyChunks()) messages += chunk.length / (16 + SIZE);
  const ms = performance.now() - t0;
  await lock.release();
  if (bytes === 0) throw new Error('nothing written');
  return { ms, readMs, messages };
}

/** One compaction pass that only follows (nothing is dead enough to rewrite): ms, and a plain read's ms. */
async function follow(dir: string): Promise<{ ms: number; readMs: number }> {
  // The plain read: the same files in pieces of 4 MiB into one buffer, as the compactor reads.
  let t0 = performance.now();
  const piece = Buffer.allocUnsafe(4 << 20);
  for (const name of fs.readdirSync(dir)) {
    if (!name.endsWith('.log')) continue;
    const fd = fs.openSync(path.join(dir, name), 'r');
    try { while (fs.readSync(fd, piece, 0, piece.length, null) > 0); } finally { fs.closeSync(fd); }
  }
  const readMs = performance.now() - t0;
  const lock = await lockDataDir(dir);
  // minDeadRatio above 1: no segment is ever chosen, so the pass is the follow alone.
  const compactor = new Compactor(dir, lock.boot, { minDeadRatio: 2, smallSegmentBytes: 0 });
  t0 = performance.now();
  const pass = await compactor.runOnce();
  const ms = performance.now() - t0;
  await compactor.stop();
  await lock.release();
  if (pass.scannedBytes === 0) throw new Error('compaction read nothing');
  return { ms, readMs };
}

async function appendRate(policy: FsyncPolicy, batch: number): Promise<number> {
  const dir = fs.mkdtempSync(path.join(base, 'tmq-bench-'));
  try {
    const lock = await lockDataDir(dir);
    const log = await openLog(dir, { fsync: policy, threadIndex: 1 });
    const messages = policy === 'always' && batch === 1 ? Math.min(APPEND_MESSAGES, 5_000) : APPEND_MESSAGES;
    const records = storedRecords(0, batch);
    const t0 = performance.now();
    // 64 operations in flight, as 64 connections of one worker would have them.
    const inFlight = new Set<Promise<void>>();
    for (let id = 0; id < messages; id += batch) {
      log.appendPush(queue, topic, records);
      const p = log.commit().then(() => { inFlight.delete(p); });
      inFlight.add(p);
      if (inFlight.size >= 64) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    const rate = messages / ((performance.now() - t0) / 1000);
    await log.close();
    await lock.release();
    return rate;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`turbomq storage bench: ${MESSAGES.toLocaleString('en-US')} messages of ${SIZE} B, median of ${REPEAT}, data in ${base}, load average ${os.loadavg()[0]!.toFixed(1)} on ${os.availableParallelism()} cores`);
for (const batch of PARTS.includes('recovery') ? [64, 1] : []) {
  const dir = fs.mkdtempSync(path.join(base, 'tmq-bench-'));
  try {
    await fill(dir, MESSAGES, batch);
    const size = dirBytes(dir);
    const runs = [];
    for (let i = 0; i < REPEAT; i++) runs.push(await replay(dir));
    const ms = median(runs.map((r) => r.ms));
    const readMs = median(runs.map((r) => r.readMs));
    if (runs[0]!.messages !== MESSAGES) throw new Error(`recovered ${runs[0]!.messages} of ${MESSAGES}`);
    console.log(`recovery, pushed in batches of ${String(batch).padStart(2)}: ${fmt(MESSAGES / (ms / 1000)).padStart(10)} messages, ${(size / 1e6 / (ms / 1000)).toFixed(0)} MB/s (${ms.toFixed(0)} ms for ${(size / 1e6).toFixed(0)} MB); plain read of the same files ${(size / 1e6 / (readMs / 1000)).toFixed(0)} MB/s: replay at ${(readMs / ms).toFixed(2)}x the read rate`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
const FOLLOWED = { none: '', same: ', each removed in the same log', other: ", each removed in another thread's log read first" } as const;
for (const removes of PARTS.includes('follow') ? ['none', 'same', 'other'] as const : []) {
  const dir = fs.mkdtempSync(path.join(base, 'tmq-bench-'));
  try {
    await fill(dir, MESSAGES, 64, removes);
    const size = dirBytes(dir);
    const runs = [];
    for (let i = 0; i < REPEAT; i++) runs.push(await follow(dir));
    const ms = median(runs.map((r) => r.ms));
    const readMs = median(runs.map((r) => r.readMs));
    console.log(`compaction follow, batches of 64${FOLLOWED[removes]}: ${fmt(MESSAGES / (ms / 1000)).padStart(10)} messages, ${(ms * 1e6 / MESSAGES).toFixed(0)} ns per message (${ms.toFixed(0)} ms for ${(size / 1e6).toFixed(0)} MB); a plain read of the same files: ${(readMs * 1e6 / MESSAGES).toFixed(0)} ns per message`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
for (const policy of PARTS.includes('append') ? ['no', 'everysec', 'always'] as const : []) {
  for (const batch of [64, 1]) {
    const rates = [];
    for (let i = 0; i < REPEAT; i++) rates.push(await appendRate(policy, batch));
    console.log(`append + commit, fsync ${policy.padEnd(8)}, batch ${String(batch).padStart(2)}: ${fmt(median(rates)).padStart(10)} messages`);
  }
}
