// The log's byte format: every record type round-trips through the one encoder and the one
// decoder, every damaged byte is caught, and RangeSet agrees with a plain Set.

import t from 'tap';
import type * as Tap from 'tap';
import {
  RecordEncoder, DecodedRecord, decodeRecord, decodeSegmentHeader, encodeSegmentHeader, readU64, readF64, readU32,
  DECODE_OK, DECODE_INCOMPLETE, DECODE_CORRUPT, RECORD_PUSH, RECORD_REMOVE, RECORD_META, RECORD_SETTINGS, RECORD_NEXT_ID, RECORD_SEAL,
  SEGMENT_KIND_WRITER, countStoredRecords, REMOVE_RANGE_BYTES,
} from '../../src/storage/format.ts';
import { RangeSet } from '../../src/storage/ranges.ts';
import { storedRecords, parseRecords, Q, T } from './support.ts';

function decodeAll(t: Tap.Test, bytes: Uint8Array): DecodedRecord[] {
  const out: DecodedRecord[] = [];
  for (let at = 0; at < bytes.length;) {
    const rec = new DecodedRecord();
    t.equal(decodeRecord(bytes, at, bytes.length, rec), DECODE_OK, `record at ${at} decodes`);
    out.push(rec);
    at = rec.end;
  }
  return out;
}

t.test('every record type round-trips through RecordEncoder and decodeRecord', async (t) => {
  const enc = new RecordEncoder(16); // tiny: it must grow
  const records = storedRecords([{ id: 7, meta: 2, data: 'seven' }, { id: 8, data: '' }, { id: 2 ** 40 + 3, meta: 0x01000005, data: 'x'.repeat(300) }]);
  enc.push(Q, T, records);
  enc.push(Q, T, storedRecords([{ id: 9, data: 'later' }]), 1_700_000_000_123.5);
  enc.removeRanges(Q, T, [1, 2 ** 50], [3, 1], 2);
  enc.meta(Q, T, 7, 3);
  enc.meta(Q, T, 8, 4, 42.25);
  enc.settings(Q, 5, 1234.5, Buffer.from('{"leaseMs":1000}'));
  enc.nextId(Q, T, 2 ** 52);
  enc.seal();
  const b = enc.bytes();
  const [push, delayed, remove, meta, metaDue, settings, next, seal] = decodeAll(t, b);
  t.equal(push!.type, RECORD_PUSH);
  t.ok(Number.isNaN(push!.dueAt));
  t.same(parseRecords(b.subarray(push!.recordsStart, push!.end)), [
    { id: 7, meta: 2, data: 'seven' }, { id: 8, meta: 0, data: '' }, { id: 2 ** 40 + 3, meta: 0x01000005, data: 'x'.repeat(300) },
  ]);
  t.equal(Buffer.from(b.subarray(push!.queueStart, push!.queueStart + push!.queueLength)).toString(), 'q');
  t.equal(Buffer.from(b.subarray(push!.topicStart, push!.topicStart + push!.topicLength)).toString(), 't');
  t.equal(delayed!.dueAt, 1_700_000_000_123.5);
  t.equal(remove!.type, RECORD_REMOVE);
  t.equal((remove!.end - remove!.bodyStart) / REMOVE_RANGE_BYTES, 2);
  t.equal(readU64(b, remove!.bodyStart), 1);
  t.equal(readU32(b, remove!.bodyStart + 8), 3);
  t.equal(readU64(b, remove!.bodyStart + 12), 2 ** 50);
  t.equal(meta!.type, RECORD_META);
  t.same([meta!.id, meta!.meta, Number.isNaN(meta!.dueAt)], [7, 3, true]);
  t.same([metaDue!.id, metaDue!.meta, metaDue!.dueAt], [8, 4, 42.25]);
  t.equal(settings!.type, RECORD_SETTINGS);
  t.equal(settings!.topicLength, 0);
  t.equal(readU32(b, settings!.bodyStart), 5);
  t.equal(readF64(b, settings!.bodyStart + 4), 1234.5);
  t.equal(Buffer.from(b.subarray(settings!.bodyStart + 12, settings!.end)).toString(), '{"leaseMs":1000}');
  t.same([next!.type, next!.id], [RECORD_NEXT_ID, 2 ** 52]);
  t.equal(seal!.type, RECORD_SEAL);
});

t.test('a flipped bit anywhere in a record is reported as corrupt or incomplete, never as a valid record', async (t) => {
  const enc = new RecordEncoder();
  enc.push(Q, T, storedRecords([{ id: 1, data: 'hello' }, { id: 2, data: 'world' }]), 99);
  const good = Buffer.from(enc.bytes());
  const rec = new DecodedRecord();
  for (let i = 0; i < good.length; i++) {
    for (const bit of [0, 7]) {
      const bad = Buffer.from(good);
      bad[i]! ^= 1 << bit;
      const status = decodeRecord(bad, 0, bad.length, rec);
      t.not(status, DECODE_OK, `byte ${i} bit ${bit}`);
      t.ok(rec.reason.length > 0);
    }
  }
});

t.test('a record cut short is incomplete at every length', async (t) => {
  const enc = new RecordEncoder();
  enc.meta(Q, T, 5, 1, 12);
  const b = enc.bytes();
  const rec = new DecodedRecord();
  for (let n = 0; n < b.length; n++) t.equal(decodeRecord(b, 0, n, rec), DECODE_INCOMPLETE, `${n} bytes`);
  t.equal(decodeRecord(b, 0, b.length, rec), DECODE_OK);
});

t.test('a length field that points anywhere is caught', async (t) => {
  const enc = new RecordEncoder();
  enc.nextId(Q, T, 10);
  enc.nextId(Q, T, 11);
  const b = Buffer.from(enc.bytes());
  const rec = new DecodedRecord();
  for (const length of [0, 11, 12, 30, b.length, 2 ** 31]) {
    b.writeUInt32LE(length, 0);
    t.not(decodeRecord(b, 0, b.length, rec), DECODE_OK, `length ${length}`);
  }
  b.writeUInt32LE(2 ** 31, 0);
  t.equal(decodeRecord(b, 0, b.length, rec), DECODE_CORRUPT);
});

t.test('segment headers: round trip, and every kind of damage named', async (t) => {
  const h = encodeSegmentHeader({ kind: SEGMENT_KIND_WRITER, threadIndex: 3, boot: 77 });
  t.same(decodeSegmentHeader(h), { kind: SEGMENT_KIND_WRITER, threadIndex: 3, boot: 77 });
  t.match(decodeSegmentHeader(h.subarray(0, 9)), /cut short/);
  const bad = Buffer.from(h); bad[0] = 0;
  t.match(decodeSegmentHeader(bad), /magic/);
  const flipped = Buffer.from(h); flipped[8]! ^= 1;
  t.match(decodeSegmentHeader(flipped), /checksum/);
});

t.test('countStoredRecords accepts whole records only', async (t) => {
  t.equal(countStoredRecords(storedRecords([{ id: 1, data: 'a' }, { id: 2, data: 'bc' }])), 2);
  t.equal(countStoredRecords(new Uint8Array(0)), -1);
  t.equal(countStoredRecords(new Uint8Array(15)), -1);
  t.equal(countStoredRecords(storedRecords([{ id: 1, data: 'abc' }]).subarray(0, 18)), -1);
});

t.test('RangeSet agrees with a plain Set under random adds and deletes (seeded)', async (t) => {
  let seed = 12345;
  const rand = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  for (let round = 0; round < 20; round++) {
    const set = new RangeSet();
    const model = new Set<number>();
    for (let op = 0; op < 400; op++) {
      const a = rand(200), b = a + 1 + rand(round % 2 === 0 ? 3 : 40);
      if (rand(3) === 0) {
        let expected = 0;
        for (let x = a; x < b; x++) if (model.delete(x)) expected++;
        t.equal(set.deleteRange(a, b), expected, `seed round ${round} op ${op}: delete [${a},${b})`);
      } else {
        set.addRange(a, b);
        for (let x = a; x < b; x++) model.add(x);
      }
      if (set.size !== model.size) t.fail(`size ${set.size} != ${model.size} at round ${round} op ${op}`);
    }
    const fromRanges: number[] = [];
    for (let i = 0; i < set.rangeCount; i++) {
      t.ok(set.startAt(i) < set.endAt(i));
      if (i > 0) t.ok(set.endAt(i - 1) < set.startAt(i), 'ranges are disjoint and not touching');
      for (let x = set.startAt(i); x < set.endAt(i); x++) fromRanges.push(x);
    }
    t.same(fromRanges, [...model].sort((x, y) => x - y));
    for (let x = 0; x < 250; x++) if (set.has(x) !== model.has(x)) t.fail(`has(${x})`);
    const gaps: number[] = [];
    set.forEachGap(10, 120, (s, e) => { for (let x = s; x < e; x++) gaps.push(x); });
    t.same(gaps, Array.from({ length: 110 }, (_, i) => i + 10).filter((x) => !model.has(x)));
    let inside = 0;
    set.forEachIn(10, 120, (s, e) => { inside += e - s; });
    t.equal(inside, set.countIn(10, 120));
    const other = new RangeSet();
    other.addRange(50, 150);
    t.equal(set.intersectionSize(other), [...model].filter((x) => x >= 50 && x < 150).length);
  }
});

t.test('RangeSet keeps consecutive ids as one range (FIFO: append at the end, delete at the front)', async (t) => {
  const s = new RangeSet();
  for (let id = 0; id < 100_000; id++) s.add(id);
  t.equal(s.rangeCount, 1);
  for (let id = 0; id < 99_990; id += 10) s.deleteRange(id, id + 10);
  t.equal(s.rangeCount, 1);
  t.equal(s.size, 10);
  t.equal(s.first(), 99_990);
  t.equal(s.last(), 99_999);
});
