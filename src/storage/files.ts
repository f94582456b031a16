// The data directory's file names and the small files beside the segments. Shared by the
// log writer, recovery, compaction and the lock; nothing here keeps state.
//
//   DIR/
//     boot                       the boot counter: bumped by every lockDataDir(), read by
//                                every writer; orders SETTINGS records across restarts
//     w001-0000000042.log        segment 42 of the writer with thread index 1
//     c-0000000007.log           compaction output 7
//     c-0000000008.log.tmp       a compaction output being written (deleted at start)
//
// A writer's segments are numbered per thread index and the numbers keep growing across
// restarts, so for one thread index a higher number is always newer; only the highest one
// of a live writer can still be written to.

import fs from 'node:fs';
import path from 'node:path';

export const BOOT_FILE = 'boot';
export const SEGMENT_SUFFIX = '.log';
export const TMP_SUFFIX = '.tmp';

export interface SegmentName {
  name: string;
  /** 'w': a writer's segment; 'c': compaction output. */
  kind: 'w' | 'c';
  /** Writer thread index ('w' only; 0 for 'c'). */
  threadIndex: number;
  seq: number;
}

const WRITER_RE = /^w(\d{3})-(\d{10})\.log$/;
const COMPACTED_RE = /^c-(\d{10})\.log$/;

export function writerSegmentName(threadIndex: number, seq: number): string {
  return `w${String(threadIndex).padStart(3, '0')}-${String(seq).padStart(10, '0')}${SEGMENT_SUFFIX}`;
}

export function compactedSegmentName(seq: number): string {
  return `c-${String(seq).padStart(10, '0')}${SEGMENT_SUFFIX}`;
}

export function parseSegmentName(name: string): SegmentName | undefined {
  let m = WRITER_RE.exec(name);
  if (m) return { name, kind: 'w', threadIndex: Number(m[1]), seq: Number(m[2]) };
  m = COMPACTED_RE.exec(name);
  if (m) return { name, kind: 'c', threadIndex: 0, seq: Number(m[1]) };
  return undefined;
}

/** Compaction outputs first (by number), then writer segments by thread index and number. */
export function compareSegments(a: SegmentName, b: SegmentName): number {
  if (a.kind !== b.kind) return a.kind === 'c' ? -1 : 1;
  if (a.threadIndex !== b.threadIndex) return a.threadIndex - b.threadIndex;
  return a.seq - b.seq;
}

/** The segments in `dir`, in recovery order. */
export function listSegments(dir: string): SegmentName[] {
  const out: SegmentName[] = [];
  for (const name of fs.readdirSync(dir)) {
    const parsed = parseSegmentName(name);
    if (parsed) out.push(parsed);
  }
  return out.sort(compareSegments);
}

/** Leftover compaction outputs that were never finished (safe to delete: never renamed). */
export function listTmpFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((name) => name.endsWith(SEGMENT_SUFFIX + TMP_SUFFIX));
}

/** The highest segment number in use for `threadIndex` ('w') or for compaction ('c'), or 0. */
export function highestSeq(dir: string, kind: 'w' | 'c', threadIndex = 0): number {
  let max = 0;
  for (const s of listSegments(dir)) if (s.kind === kind && s.threadIndex === threadIndex && s.seq > max) max = s.seq;
  return max;
}

/** The current boot number (0 when the directory was never locked). */
export function readBoot(dir: string): number {
  try {
    const n = Number(fs.readFileSync(path.join(dir, BOOT_FILE), 'utf8').trim());
    return Number.isInteger(n) && n >= 0 ? n : 0;
  } catch {
    return 0;
  }
}

/** Writes the boot number durably (temp file, fsync, rename, fsync of the directory). */
export function writeBoot(dir: string, boot: number): void {
  const tmp = path.join(dir, BOOT_FILE + TMP_SUFFIX);
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, `${boot}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, path.join(dir, BOOT_FILE));
  fsyncDir(dir);
}

/** Makes the directory's entries (created, renamed, deleted files) durable. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** `ENOSPC (no space left on device)` style text for an fs error. */
export function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const known: Record<string, string> = {
    ENOSPC: 'no space left on device',
    EDQUOT: 'disk quota exceeded',
    EROFS: 'read-only file system',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EIO: 'input/output error',
    ENOENT: 'no such file or directory',
    ENOTDIR: 'not a directory',
    EEXIST: 'file exists',
    EMFILE: 'too many open files',
    EFBIG: 'file too large',
  };
  if (code) return known[code] ? `${code} (${known[code]})` : code;
  return e?.message ?? String(err);
}
