// Helpers for the storage tests: data directories in mkdtemp, stored records as the core
// lays them out, and a whole recovery read back into plain objects.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { recover, type RecoverOptions } from '../../src/storage/recovery.ts';
import { lockDataDir, type DataDirLock } from '../../src/storage/lock.ts';
import type { Logger } from '../../src/engine/options.ts';

/** A fresh directory under the OS temp dir, removed at the end of the test. */
export function tempDir(t: Test, prefix = 'tmq-store-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Locks `dir` for the test (released at teardown unless released before). */
export async function lockFor(t: Test, dir: string): Promise<DataDirLock> {
  const lock = await lockDataDir(dir);
  t.teardown(() => lock.release());
  return lock;
}

export interface Message {
  id: number;
  meta: number;
  data: string;
}

/** Stored records ([u32 len][u32 meta][u64 id][data]) for messages. */
export function storedRecords(messages: { id: number; meta?: number; data: string | Uint8Array }[]): Buffer {
  const parts: Buffer[] = [];
  for (const m of messages) {
    const data = typeof m.data === 'string' ? Buffer.from(m.data) : Buffer.from(m.data);
    const header = Buffer.alloc(16);
    header.writeUInt32LE(data.length, 0);
    header.writeUInt32LE(m.meta ?? 0, 4);
    header.writeBigUInt64LE(BigInt(m.id), 8);
    parts.push(header, data);
  }
  return Buffer.concat(parts);
}

/** The messages in a chunk of stored records. */
export function parseRecords(chunk: Uint8Array): Message[] {
  const b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  const out: Message[] = [];
  for (let p = 0; p < b.length;) {
    const len = b.readUInt32LE(p);
    out.push({ id: Number(b.readBigUInt64LE(p + 8)), meta: b.readUInt32LE(p + 4), data: b.toString('utf8', p + 16, p + 16 + len) });
    p += 16 + len;
  }
  return out;
}

export interface RecoveredTopicData {
  ready: Message[];
  delayed: (Message & { dueAt: number })[];
  nextId: bigint;
  /** Open dedup windows: "id@expiresAt", in recovery's order. */
  dedupIds: string[];
}

export interface RecoveredData {
  /** By "queue/topic". */
  topics: Map<string, RecoveredTopicData>;
  settings: Map<string, string>;
  warnings: string[];
  damage: { file: string; offset: number; reason: string }[];
}

/** A logger that keeps warn/error lines. */
export function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const keep = (level: string) => (obj: object | string, msg?: string) => { lines.push(`${level} ${typeof obj === 'string' ? obj : msg ?? ''} ${typeof obj === 'string' ? '' : JSON.stringify(obj)}`); };
  return { lines, info() {}, debug() {}, warn: keep('warn'), error: keep('error') };
}

/** Runs recover() and reads every chunk back. */
export async function recoverAll(dir: string, options: RecoverOptions = {}): Promise<RecoveredData> {
  const logger = recordingLogger();
  const r = await recover(dir, { logger, ...options });
  const topics = new Map<string, RecoveredTopicData>();
  for (const t of r.topics) {
    const ready: Message[] = [];
    for (const chunk of t.readyChunks()) ready.push(...parseRecords(chunk));
    const delayed: (Message & { dueAt: number })[] = [];
    for (const chunk of t.delayedChunks()) parseRecords(chunk.records).forEach((m, i) => delayed.push({ ...m, dueAt: chunk.dueAt[i]! }));
    topics.set(`${Buffer.from(t.queue)}/${Buffer.from(t.topic)}`, { ready, delayed, nextId: t.nextId, dedupIds: t.dedupIds.map((d) => `${Buffer.from(d.id)}@${d.expiresAt}`) });
  }
  const settings = new Map(r.queues.map((q) => [Buffer.from(q.queue).toString(), q.settings]));
  return { topics, settings, warnings: logger.lines, damage: r.damage.map(({ file, offset, reason }) => ({ file, offset, reason })) };
}

/** Bytes of the segment files in `dir`. */
export function segmentBytes(dir: string): number {
  let total = 0;
  for (const name of fs.readdirSync(dir)) if (name.endsWith('.log')) total += fs.statSync(path.join(dir, name)).size;
  return total;
}

export function segmentFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.endsWith('.log')).sort();
}

export const Q = Buffer.from('q');
export const T = Buffer.from('t');
