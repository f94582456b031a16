// Recovery: damaged files (cut at every offset, any byte flipped) keep every record before
// the damage, with a warning naming the file and offset, and never throw; copies, order
// across files, delivery changes, due times, settings across boots and next ids.

import t from 'tap';
import type * as Tap from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { recover } from '../../src/storage/recovery.ts';
import { openLog } from '../../src/storage/log.ts';
import {
  RecordEncoder, encodeSegmentHeader, decodeRecord, DecodedRecord, DECODE_OK, SEGMENT_HEADER_BYTES,
  SEGMENT_KIND_WRITER, SEGMENT_KIND_COMPACTED, RECORD_PUSH, RECORD_REMOVE, RECORD_META, readU32, readU64,
} from '../../src/storage/format.ts';
import { writerSegmentName, compactedSegmentName } from '../../src/storage/files.ts';
import { tempDir, lockFor, storedRecords, recoverAll, parseRecords, Q, T, type Message } from './support.ts';

/** A segment file written by hand. */
function writeSegment(dir: string, name: string, boot: number, build: (enc: RecordEncoder) => void, kind = SEGMENT_KIND_WRITER): Buffer {
  const enc = new RecordEncoder();
  enc.raw(encodeSegmentHeader({ kind, threadIndex: kind === SEGMENT_KIND_WRITER ? 1 : 0, boot }));
  build(enc);
  const bytes = Buffer.from(enc.bytes());
  fs.writeFileSync(path.join(dir, name), bytes);
  return bytes;
}

/** What the records of a file say, replayed by a plain model: ready messages in id order. */
function model(file: Buffer, upTo: number): Message[] {
  const pushed = new Map<number, Message>();
  const removed = new Set<number>();
  const rec = new DecodedRecord();
  for (let at = SEGMENT_HEADER_BYTES; at < upTo; at = rec.end) {
    if (decodeRecord(file, at, file.length, rec) !== DECODE_OK || rec.end > upTo) break;
    if (rec.type === RECORD_PUSH) for (const m of parseRecords(file.subarray(rec.recordsStart, rec.end))) if (!pushed.has(m.id)) pushed.set(m.id, m);
    if (rec.type === RECORD_REMOVE) for (let p = rec.bodyStart; p < rec.end; p += 12) for (let i = 0; i < readU32(file, p + 8); i++) removed.add(readU64(file, p) + i);
    if (rec.type === RECORD_META) { const m = pushed.get(rec.id); if (m) pushed.set(rec.id, { ...m, meta: rec.meta }); }
  }
  return [...pushed.values()].filter((m) => !removed.has(m.id)).sort((a, b) => a.id - b.id);
}

/** The offsets where records end in a file. */
function recordEnds(file: Buffer): number[] {
  const ends: number[] = [];
  const rec = new DecodedRecord();
  for (let at = SEGMENT_HEADER_BYTES; at < file.length; at = rec.end) {
    if (decodeRecord(file, at, file.length, rec) !== DECODE_OK) throw new Error('bad fixture');
    ends.push(rec.end);
  }
  return ends;
}

/** A small log of pushes (single and batched), removals and delivery changes. */
async function smallLog(t: Tap.Test): Promise<{ dir: string; name: string; bytes: Buffer }> {
  const dir = tempDir(t);
  await lockFor(t, dir);
  const log = await openLog(dir, { fsync: 'no', threadIndex: 1 });
  log.appendPush(Q, T, storedRecords([{ id: 0, data: 'zero' }]));
  log.appendPush(Q, T, storedRecords([{ id: 1, data: 'one' }, { id: 2, data: 'two' }, { id: 3, data: 'three' }]));
  log.appendRemove(Q, T, [0]);
  log.appendMeta(Q, T, 2, 1);
  log.appendPush(Q, T, storedRecords([{ id: 4, data: 'four' }]));
  log.appendRemove(Q, T, [1, 3]);
  log.appendPush(Q, T, storedRecords([{ id: 5, data: 'five' }, { id: 6, data: 'six' }]));
  log.appendMeta(Q, T, 5, 2);
  await log.commit();
  await log.close();
  const name = fs.readdirSync(dir).find((n) => n.endsWith('.log'))!;
  return { dir, name, bytes: fs.readFileSync(path.join(dir, name)) };
}


t.test('a log cut at every offset keeps every record before the cut, warns with file and offset, never throws', async (t) => {
  const { dir, name, bytes } = await smallLog(t);
  const ends = recordEnds(bytes);
  const work = tempDir(t);
  let warned = 0;
  for (let cut = 0; cut <= bytes.length; cut++) {
    fs.writeFileSync(path.join(work, name), bytes.subarray(0, cut));
    const r = await recoverAll(work);
    const got = r.topics.get('q/t')?.ready ?? [];
    const expected = model(bytes, cut);
    if (JSON.stringify(got) !== JSON.stringify(expected)) t.fail(`cut at ${cut}: got ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
    const atBoundary = cut === 0 || cut === SEGMENT_HEADER_BYTES || ends.includes(cut);
    if (atBoundary) {
      if (r.damage.length !== 0) t.fail(`cut at record boundary ${cut} reported damage`);
    } else {
      const start = cut < SEGMENT_HEADER_BYTES ? 0 : [SEGMENT_HEADER_BYTES, ...ends].filter((e) => e <= cut).pop()!;
      if (r.damage.length !== 1 || r.damage[0]!.file !== name || r.damage[0]!.offset !== start) t.fail(`cut at ${cut}: damage ${JSON.stringify(r.damage)}`);
      if (!r.warnings.some((w) => w.includes(name) && w.includes(`"offset":${start}`))) t.fail(`cut at ${cut}: no warning naming ${name} and offset ${start}`);
      warned++;
    }
  }
  t.ok(warned > bytes.length / 2, `${warned} cuts warned`);
  t.pass(`${bytes.length + 1} cuts recovered as the model says`);
  void dir;
});

t.test('a flipped byte anywhere drops that record and the rest of its file, and nothing before it', async (t) => {
  const { name, bytes } = await smallLog(t);
  const ends = recordEnds(bytes);
  const work = tempDir(t);
  for (let i = 0; i < bytes.length; i++) {
    const damaged = Buffer.from(bytes);
    damaged[i]! ^= 0x10;
    fs.writeFileSync(path.join(work, name), damaged);
    let r;
    try {
      r = await recoverAll(work);
    } catch (err) {
      t.fail(`byte ${i}: recovery threw ${(err as Error).message}`);
      continue;
    }
    // The record holding byte i starts at the last record end at or before i.
    const start = i < SEGMENT_HEADER_BYTES ? 0 : [SEGMENT_HEADER_BYTES, ...ends].filter((e) => e <= i).pop()!;
    const expected = i < SEGMENT_HEADER_BYTES ? [] : model(bytes, start);
    const got = r.topics.get('q/t')?.ready ?? [];
    if (JSON.stringify(got) !== JSON.stringify(expected)) t.fail(`byte ${i}: got ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
    if (r.damage.length !== 1 || r.damage[0]!.offset !== start || r.damage[0]!.file !== name) t.fail(`byte ${i}: damage ${JSON.stringify(r.damage)}`);
  }
  t.pass(`${bytes.length} flipped bytes`);
});

t.test('damage in one file does not touch the others', async (t) => {
  const dir = tempDir(t);
  writeSegment(dir, writerSegmentName(1, 1), 1, (e) => e.push(Q, T, storedRecords([{ id: 0, data: 'a' }])));
  const b = writeSegment(dir, writerSegmentName(2, 1), 1, (e) => { e.push(Q, T, storedRecords([{ id: 1, data: 'b' }])); e.push(Q, T, storedRecords([{ id: 2, data: 'c' }])); });
  fs.writeFileSync(path.join(dir, writerSegmentName(2, 1)), b.subarray(0, b.length - 3));
  writeSegment(dir, writerSegmentName(3, 1), 1, (e) => e.push(Q, T, storedRecords([{ id: 3, data: 'd' }])));
  const r = await recoverAll(dir);
  t.same(r.topics.get('q/t')!.ready.map((m) => m.data), ['a', 'b', 'd']);
  t.same(r.damage.map((d) => d.file), [writerSegmentName(2, 1)]);
});

t.test('empty files are ignored quietly, bad headers with a warning, unfinished compaction outputs deleted', async (t) => {
  const dir = tempDir(t);
  fs.writeFileSync(path.join(dir, writerSegmentName(1, 1)), '');
  fs.writeFileSync(path.join(dir, writerSegmentName(2, 1)), 'definitely not a segment');
  fs.writeFileSync(path.join(dir, compactedSegmentName(1) + '.tmp'), 'half written');
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'unrelated');
  writeSegment(dir, writerSegmentName(3, 1), 1, (e) => e.push(Q, T, storedRecords([{ id: 0, data: 'kept' }])));
  const r = await recoverAll(dir);
  t.same(r.topics.get('q/t')!.ready.map((m) => m.data), ['kept']);
  t.same(r.damage.map((d) => [d.file, d.offset]), [[writerSegmentName(2, 1), 0]]);
  t.notOk(fs.existsSync(path.join(dir, compactedSegmentName(1) + '.tmp')));
  t.ok(fs.existsSync(path.join(dir, 'notes.txt')), 'other files are left alone');
});

t.test('order and liveness do not depend on which file a record is in', async (t) => {
  const dir = tempDir(t);
  // Writer 1 pushes even ids, writer 2 odd ids; writer 2 removes 4 before writer 1's push of it
  // is even read (another thread's consumer), and writer 1 removes 3.
  writeSegment(dir, writerSegmentName(2, 1), 1, (e) => {
    e.push(Q, T, storedRecords([{ id: 1, data: '1' }]));
    e.removeRanges(Q, T, [4], [1], 1);
    e.push(Q, T, storedRecords([{ id: 3, data: '3' }, { id: 5, data: '5' }]));
  });
  writeSegment(dir, writerSegmentName(1, 1), 1, (e) => {
    e.push(Q, T, storedRecords([{ id: 0, data: '0' }, { id: 2, data: '2' }]));
    e.removeRanges(Q, T, [3], [1], 1);
    e.push(Q, T, storedRecords([{ id: 4, data: '4' }, { id: 6, data: '6' }]));
  });
  // A compaction output holding copies of 0 and 6 (its inputs were not deleted yet), 6 with a delivery more.
  writeSegment(dir, compactedSegmentName(1), 1, (e) => {
    e.push(Q, T, storedRecords([{ id: 0, data: '0' }, { id: 6, meta: 1, data: '6' }]));
  }, SEGMENT_KIND_COMPACTED);
  const r = await recoverAll(dir);
  t.same(r.topics.get('q/t')!.ready.map((m) => [m.id, m.meta]), [[0, 0], [1, 0], [2, 0], [5, 0], [6, 1]], 'each id once, in id order, the copy with most deliveries');
});

t.test('the record with the most deliveries decides meta and due time', async (t) => {
  const dir = tempDir(t);
  const now = Date.now();
  writeSegment(dir, writerSegmentName(1, 1), 1, (e) => {
    e.push(Q, T, storedRecords([{ id: 0, data: 'a' }, { id: 1, data: 'b' }, { id: 2, data: 'c' }]), now + 100_000);
    e.meta(Q, T, 0, 2);                   // delivered twice: ready now
    e.meta(Q, T, 1, 2, now + 50_000);     // nacked with a delay
  });
  writeSegment(dir, writerSegmentName(2, 1), 1, (e) => {
    e.meta(Q, T, 0, 1, now + 999_999);    // an older delivery change, read later: loses
    e.meta(Q, T, 1, 3, now + 10_000);     // a newer one: wins
  });
  const r = await recoverAll(dir, { nowMs: now });
  const topic = r.topics.get('q/t')!;
  t.same(topic.ready.map((m) => [m.id, m.meta]), [[0, 2]]);
  t.same(topic.delayed.map((m) => [m.id, m.meta, m.dueAt - now]), [[1, 3, 10_000], [2, 0, 100_000]]);
});

t.test('leased deliveries (DELIVERED) count, but never undo the due time of the lease end that followed them', async (t) => {
  const dir = tempDir(t);
  const now = Date.now();
  // Thread 1: the pushes; 10..14 as a compaction output had merged a lease end (1 delivery, due) into them.
  writeSegment(dir, compactedSegmentName(1), 1, (e) => {
    e.push(Q, T, storedRecords([{ id: 14, meta: 1, data: 'merged' }]), now + 40_000);
  }, SEGMENT_KIND_COMPACTED);
  writeSegment(dir, writerSegmentName(1, 1), 1, (e) => {
    e.push(Q, T, storedRecords([10, 11, 12, 13].map((id) => ({ id, data: `m${id}` }))), now + 100_000);
  });
  // Thread 2 (read after thread 1): the leases' ends; thread 3 (read last): the deliveries that began them.
  writeSegment(dir, writerSegmentName(2, 1), 1, (e) => {
    e.meta(Q, T, 11, 1, now + 20_000);    // nacked with a delay after its first delivery
    e.meta(Q, T, 12, 1, now + 30_000);    // the same, then delivered again (below: 2)
  });
  writeSegment(dir, writerSegmentName(3, 1), 1, (e) => {
    e.delivered(Q, T, [10, 11, 12, 12, 14], [1, 1, 1, 2, 1], 5);
  });
  const r = await recoverAll(dir, { nowMs: now });
  const topic = r.topics.get('q/t')!;
  t.same(topic.ready.map((m) => [m.id, m.meta]), [[10, 1], [12, 2]],
    '10: in flight at the crash, its delivery counted, ready; 12: delivered again after its delay, ready with 2');
  t.same(topic.delayed.map((m) => [m.id, m.meta, m.dueAt - now]), [[11, 1, 20_000], [14, 1, 40_000], [13, 0, 100_000]],
    '11: its lease end wins the tie with the delivery read after it; 14: a push holding as many deliveries wins the tie; 13: never delivered');
  // A DELIVERED record is checked like any other.
  const bad = new RecordEncoder();
  bad.delivered(Q, T, [], [], 0);
  t.not(decodeRecord(bad.bytes(), 0, bad.length, new DecodedRecord()), DECODE_OK, 'a DELIVERED with no entry is malformed');
});

t.test('delayed messages come back in due-time order (ties by id), due ones ready in id order', async (t) => {
  const dir = tempDir(t);
  const now = 1_000_000;
  let seed = 7;
  const rand = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed; };
  const dues: number[] = [];
  writeSegment(dir, writerSegmentName(1, 1), 1, (e) => {
    for (let id = 0; id < 5000; id++) {
      const due = now - 500 + (rand() % 2000);
      dues.push(due);
      e.push(Q, T, storedRecords([{ id, data: String(id) }]), due);
    }
  });
  const r = await recover(dir, { nowMs: now, chunkBytes: 4096 });
  const topic = r.topics[0]!;
  const delayed: [number, number][] = [];
  for (const chunk of topic.delayedChunks()) {
    t.ok(chunk.records.length <= 4096);
    parseRecords(chunk.records).forEach((m, i) => delayed.push([chunk.dueAt[i]!, m.id]));
  }
  const expected = dues.map((d, id) => [d, id] as [number, number]).filter(([d]) => d > now).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  t.same(delayed, expected);
  const ready = [...topic.readyChunks()].flatMap((c) => parseRecords(c).map((m) => m.id));
  t.same(ready, dues.map((d, id) => [d, id]).filter(([d]) => d! <= now).map(([, id]) => id));
  t.equal(topic.ready + topic.delayed, 5000);
});

t.test('settings: the latest boot wins even if its clock was behind; then the latest stamp', async (t) => {
  const dir = tempDir(t);
  writeSegment(dir, writerSegmentName(1, 1), 1, (e) => {
    e.settings(Q, 1, 5000, Buffer.from('{"v":"boot 1, late clock"}'));
    e.settings(Buffer.from('other'), 1, 1, Buffer.from('{"v":"other"}'));
  });
  writeSegment(dir, writerSegmentName(1, 2), 2, (e) => {
    e.settings(Q, 2, 20, Buffer.from('{"v":"boot 2, second"}'));
    e.settings(Q, 2, 10, Buffer.from('{"v":"boot 2, first"}'));
  });
  const r = await recoverAll(dir);
  t.equal(r.settings.get('q'), '{"v":"boot 2, second"}');
  t.equal(r.settings.get('other'), '{"v":"other"}');
});

t.test('dedup windows: the latest expiry of a dedupId wins, closed windows are dropped, by expiry then id', async (t) => {
  const dir = tempDir(t);
  const now = 1_000_000;
  writeSegment(dir, writerSegmentName(1, 1), 1, (e) => {
    e.push(Q, T, storedRecords([{ id: 1, data: 'x' }]));
    e.push(Q, T, storedRecords([{ id: 2, data: 'y' }]), now + 50, { id: Buffer.from('b'), expiresAt: now + 500 }); // as the core journals it
    e.push(Q, T, storedRecords([{ id: 3, data: 'z' }]), undefined, { id: Buffer.from('gone'), expiresAt: now - 5 });
    e.dedup(Q, T, Buffer.from('a'), now + 900);
    e.dedup(Q, T, Buffer.from('closed'), now - 1);
    e.dedup(Q, Buffer.from('only dedup'), Buffer.from('a'), now + 100);
  });
  writeSegment(dir, writerSegmentName(2, 1), 1, (e) => {
    e.dedup(Q, T, Buffer.from('b'), now + 1000); // pushed again after its window (another thread's file)
    e.dedup(Q, T, Buffer.from('a'), now + 200);  // an older record of 'a': the later expiry stays
    e.dedup(Q, T, Buffer.from('c'), now + 900);
  });
  const r = await recoverAll(dir, { nowMs: now });
  t.same(r.topics.get('q/t')!.dedupIds, [`a@${now + 900}`, `c@${now + 900}`, `b@${now + 1000}`]);
  t.same(r.topics.get('q/t')!.ready.map((m) => m.data), ['x', 'z'], 'a push with a dedupId is a push like any other');
  t.same(r.topics.get('q/t')!.delayed.map((m) => [m.data, m.dueAt]), [['y', now + 50]], 'with its due time after the dedupId');
  t.same(r.topics.get('q/only dedup')!.dedupIds, [`a@${now + 100}`], 'a topic with only a dedup window is reported');
  t.same(r.warnings, []);
  const later = await recoverAll(dir, { nowMs: now + 950 });
  t.same(later.topics.get('q/t')!.dedupIds, [`b@${now + 1000}`], 'windows closed by nowMs are not restored');
  // A DEDUP record's body is checked like every other: no id, or an id over 255 bytes, is damage.
  const bad = new RecordEncoder();
  bad.dedup(Q, T, Buffer.alloc(0), now);
  const rec = new DecodedRecord();
  t.not(decodeRecord(bad.bytes(), 0, bad.length, rec), DECODE_OK, 'an empty dedupId is malformed');
  const long = new RecordEncoder();
  long.dedup(Q, T, Buffer.alloc(256, 1), now);
  t.not(decodeRecord(long.bytes(), 0, long.length, rec), DECODE_OK, 'a 256-byte dedupId is malformed');
  const ok = new RecordEncoder();
  ok.dedup(Q, T, Buffer.alloc(255, 1), now + 5);
  t.equal(decodeRecord(ok.bytes(), 0, ok.length, rec), DECODE_OK);
  t.equal(rec.dueAt, now + 5, 'the expiry is read into dueAt');
  const push = new RecordEncoder();
  push.push(Q, T, storedRecords([{ id: 9, data: 'p' }]), now + 7, { id: Buffer.from('key'), expiresAt: now + 9 });
  t.equal(decodeRecord(push.bytes(), 0, push.length, rec), DECODE_OK);
  t.same([rec.dueAt, rec.dedupExpires, push.bytes().toString('latin1', rec.dedupStart, rec.dedupStart + rec.dedupLength)], [now + 7, now + 9, 'key'], 'a PUSH carries its dedupId and due time');
  // A dedupId length of 0, or one running into the records, is malformed.
  for (const [at, value] of [[rec.dedupStart - 1, 0], [rec.dedupStart - 1, 250]] as const) {
    const broken = Buffer.from(push.bytes());
    broken[at] = value;
    broken.writeUInt32LE(zlib.crc32(broken.subarray(8)), 4);
    t.not(decodeRecord(broken, 0, broken.length, rec), DECODE_OK, `dedupId length ${value} is malformed`);
  }
});

t.test('every topic a record names is reported with its next id, also with nothing live', async (t) => {
  const dir = tempDir(t);
  writeSegment(dir, compactedSegmentName(1), 1, (e) => e.nextId(Q, Buffer.from('drained'), 1000), SEGMENT_KIND_COMPACTED);
  writeSegment(dir, writerSegmentName(1, 1), 1, (e) => {
    e.push(Q, T, storedRecords([{ id: 7, data: 'x' }]));
    e.removeRanges(Q, T, [7, 20], [1, 5], 2);
  });
  const r = await recoverAll(dir);
  t.equal(r.topics.get('q/drained')!.nextId, 1000n);
  t.equal(r.topics.get('q/t')!.nextId, 25n, 'ids seen only in a removal count too');
  t.same(r.topics.get('q/t')!.ready, []);
});

t.test('progress is reported and chunks stay within chunkBytes (a larger record gets its own)', async (t) => {
  const dir = tempDir(t);
  await lockFor(t, dir);
  const log = await openLog(dir, { fsync: 'no', threadIndex: 1, maxSegmentBytes: 64 * 1024 });
  for (let id = 0; id < 3000; id++) log.appendPush(Q, T, storedRecords([{ id, data: id === 1500 ? 'y'.repeat(10_000) : 'x'.repeat(50) }]));
  await log.commit();
  await log.close();
  const seen: number[] = [];
  const r = await recover(dir, { chunkBytes: 4096, onProgress: (p) => seen.push(p.filesDone) });
  t.ok(seen.length >= r.stats.files, 'called for every file');
  t.equal(r.stats.messages, 3000);
  let n = 0, big = 0;
  for (const chunk of r.topics[0]!.readyChunks()) {
    const msgs = parseRecords(chunk);
    if (msgs.length === 1 && msgs[0]!.data.length === 10_000) big++;
    else t.ok(chunk.length <= 4096);
    for (const m of msgs) t.equal(m.id, n++);
  }
  t.equal(n, 3000);
  t.equal(big, 1);
});

t.test('a preallocated tail of zeros ends a segment cleanly; a torn record before it is still damage', async (t) => {
  const dir = tempDir(t);
  const bytes = writeSegment(dir, writerSegmentName(1, 1), 1, (enc) => {
    enc.push(Q, T, storedRecords([{ id: 0, data: 'a' }, { id: 1, data: 'b' }]));
  });
  fs.appendFileSync(path.join(dir, writerSegmentName(1, 1)), Buffer.alloc(100_000));
  const clean = await recover(dir);
  t.same(clean.damage, [], 'zeros after the last record are not damage');
  t.same([...clean.topics[0]!.readyChunks()].flatMap((c) => parseRecords(c).map((m) => m.data)), ['a', 'b']);
  // A record cut short by the crash, then zeros: damage at the record, the rest kept.
  const torn = Buffer.concat([bytes, Buffer.from(new RecordEncoder().bytes())]);
  const enc = new RecordEncoder();
  enc.push(Q, T, storedRecords([{ id: 2, data: 'c'.repeat(50) }]));
  const record = Buffer.from(enc.bytes());
  fs.writeFileSync(path.join(dir, writerSegmentName(1, 1)), Buffer.concat([torn, record.subarray(0, 30), Buffer.alloc(50_000)]));
  const damaged = await recover(dir);
  t.equal(damaged.damage.length, 1);
  t.equal(damaged.damage[0]!.offset, bytes.length, 'named at the torn record');
  t.same([...damaged.topics[0]!.readyChunks()].flatMap((c) => parseRecords(c).map((m) => m.data)), ['a', 'b']);
});

t.test('under every fsync policy a segment is preallocated with zeros and truncated to its data when it closes', async (t) => {
  for (const fsync of ['always', 'everysec', 'no'] as const) {
    const dir = tempDir(t);
    const lock = await lockFor(t, dir);
    const log = await openLog(lock.dir, { fsync, threadIndex: 1 });
    log.appendPush(Q, T, storedRecords([{ id: 0, data: 'x' }]));
    await log.commit();
    const file = path.join(dir, writerSegmentName(1, 1));
    const written = log.stats().writtenBytes;
    t.ok(fs.statSync(file).size >= 1024 * 1024, `${fsync}: zeros ahead of the data (writes and fdatasyncs then touch only data)`);
    await log.close();
    t.ok(fs.statSync(file).size <= written + 64, `${fsync}: closed, truncated to its data and seal (${fs.statSync(file).size} bytes)`);
    const r = await recover(dir);
    t.same(r.damage, []);
    t.equal(r.topics[0]!.ready, 1);
  }
});
