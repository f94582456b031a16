// The durable log's bytes: the segment file header and the log records, with the one
// encoder (RecordEncoder) and the one decoder (decodeRecord) that the writer, recovery and
// compaction share. Pure byte work: no I/O, no state beyond the encoder's buffer.
//
// Everything is little endian. A u64 (message id) is written as two u32 (low, high);
// JavaScript code reads it as a number, exact below 2^53 (see MAX_SAFE_ID).
//
// Segment file header, 16 bytes, at offset 0 of every segment file:
//
//   0        4        6    7    8        12       16
//   ├────────┼────────┼────┼────┼────────┼────────┤
//   │ magic  │ version│kind│thrd│ boot   │ crc32  │
//   │ 'TMQ1' │ u16 =1 │ u8 │ u8 │ u32    │ of 0..12│
//
//   kind: 1 = written by a broker thread's log writer (thrd = its thread index),
//         2 = written by compaction (thrd = 0). boot: see src/storage/files.ts.
//
// Log record, back to back after the header:
//
//   0        4        8    9    10   11   12
//   ├────────┼────────┼────┼────┼────┼────┼──────────┬─────────┬──────────────┐
//   │ length │ crc32  │type│flag│qlen│tlen│ queue    │ topic   │ body         │
//   │ u32    │ u32    │ u8 │ u8 │ u8 │ u8 │ qlen B   │ tlen B  │ (per type)   │
//
//   length: the whole record, these 12 bytes included (12 <= length <= MAX_RECORD_BYTES).
//   crc32:  zlib.crc32 of bytes [8, length): type, flags, names and body. A wrong length
//           makes the checksum cover the wrong bytes, so it fails too.
//   qlen:   1..255 (the queue name); tlen: 1..255 (the topic name), 0 for SETTINGS.
//
//   type 1 PUSH      flags bit 0 = has dueAt.  body: [f64 dueAt] stored records (1..n)
//   type 2 REMOVE    body: n × (u64 firstId, u32 count): ids firstId .. firstId+count-1
//   type 3 META      flags bit 0 = has dueAt.  body: u64 id, u32 meta, [f64 dueAt]
//   type 4 SETTINGS  body: u32 boot, f64 stamp (ms since the epoch), JSON text (UTF-8)
//   type 5 NEXT_ID   body: u64 nextId (every id of the topic is below it)
//   type 6 SEAL      qlen = tlen = 0, no body: the writer closed this segment; nothing follows
//
// Stored record (the core's layout, kept byte for byte inside PUSH bodies):
//
//   0        4        8                 16
//   ├────────┼────────┼─────────────────┼───────────┐
//   │ len    │ meta   │ id u64          │ len bytes │
//   │ u32    │ u32    │                 │           │
//
//   meta: deliveries in the low 24 bits, flags in the high 8.

import zlib from 'node:zlib';

export const SEGMENT_MAGIC = 0x31514d54; // the bytes 'T' 'M' 'Q' '1'
export const SEGMENT_VERSION = 1;
export const SEGMENT_HEADER_BYTES = 16;
export const SEGMENT_KIND_WRITER = 1;
export const SEGMENT_KIND_COMPACTED = 2;

export const RECORD_HEADER_BYTES = 12;
/** Largest log record: a PUSH of one whole frame (MAX_FRAME_BYTES_LIMIT) fits. */
export const MAX_RECORD_BYTES = 1 << 30;

export const RECORD_PUSH = 1;
export const RECORD_REMOVE = 2;
export const RECORD_META = 3;
export const RECORD_SETTINGS = 4;
export const RECORD_NEXT_ID = 5;
export const RECORD_SEAL = 6;
export const RECORD_DEDUP = 7;
export const RECORD_DELIVERED = 8;
/** DELIVERED: bytes per entry (u64 id, u32 meta), the size of a REMOVE range. */
export const DELIVERED_ENTRY_BYTES = 12;
/** Longest dedupId (the core keys them with a u8 length). */
export const MAX_DEDUP_ID_BYTES = 255;

export const FLAG_DUE = 1 << 0;
/** PUSH: the body starts with [f64 expiresAt][u8 length][dedupId] (a push with a dedupId; assembly/journal.ts). */
export const FLAG_DEDUP = 1 << 1;

export const STORED_HEADER_BYTES = 16;
export const REMOVE_RANGE_BYTES = 12;
/** Ids are handled as numbers in JavaScript: exact up to here (a counter at 1e6/s takes 285 years). */
export const MAX_SAFE_ID = Number.MAX_SAFE_INTEGER;
export const DELIVERIES_MASK = 0xffffff;

const TWO_32 = 0x1_0000_0000;

// ── Little-endian helpers (plain byte arithmetic: no DataView per call) ────────────────

export function readU32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

export function writeU32(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = (v >>> 16) & 0xff;
  b[at + 3] = (v >>> 24) & 0xff;
}

/** A u64 as a number; ids at or above 2^53 lose precision (see MAX_SAFE_ID). */
export function readU64(b: Uint8Array, at: number): number {
  return readU32(b, at) + readU32(b, at + 4) * TWO_32;
}

export function writeU64(b: Uint8Array, at: number, v: number): void {
  writeU32(b, at, v % TWO_32);
  writeU32(b, at + 4, Math.floor(v / TWO_32));
}

const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);

export function readF64(b: Uint8Array, at: number): number {
  for (let i = 0; i < 8; i++) f64Bytes[i] = b[at + i]!;
  return f64[0]!;
}

export function writeF64(b: Uint8Array, at: number, v: number): void {
  f64[0] = v;
  for (let i = 0; i < 8; i++) b[at + i] = f64Bytes[i]!;
}

/** zlib.crc32 of `b[start, end)` without copying. */
export function crc32Of(b: Uint8Array, start: number, end: number): number {
  return zlib.crc32(b.subarray(start, end));
}

// ── Segment header ────────────────────────────────────────────────────────────────────

export interface SegmentHeader {
  kind: number;
  threadIndex: number;
  boot: number;
}

export function encodeSegmentHeader(header: SegmentHeader): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER_BYTES);
  writeU32(b, 0, SEGMENT_MAGIC);
  b[4] = SEGMENT_VERSION & 0xff;
  b[5] = SEGMENT_VERSION >>> 8;
  b[6] = header.kind;
  b[7] = header.threadIndex;
  writeU32(b, 8, header.boot);
  writeU32(b, 12, crc32Of(b, 0, 12));
  return b;
}

/** The header, or a reason it is not one. */
export function decodeSegmentHeader(b: Uint8Array): SegmentHeader | string {
  if (b.length < SEGMENT_HEADER_BYTES) return `segment header cut short (${b.length} of ${SEGMENT_HEADER_BYTES} bytes)`;
  if (readU32(b, 0) !== SEGMENT_MAGIC) return 'not a turbomq segment (bad magic)';
  if (readU32(b, 12) !== crc32Of(b, 0, 12)) return 'segment header checksum mismatch';
  const version = b[4]! | (b[5]! << 8);
  if (version !== SEGMENT_VERSION) return `unsupported segment format version ${version}`;
  const kind = b[6]!;
  if (kind !== SEGMENT_KIND_WRITER && kind !== SEGMENT_KIND_COMPACTED) return `unknown segment kind ${kind}`;
  return { kind, threadIndex: b[7]!, boot: readU32(b, 8) };
}

// ── Encoder ───────────────────────────────────────────────────────────────────────────

/**
 * Appends encoded records to one growable buffer (the writer's staging area, compaction's
 * output). Inputs are copied at once, so they may be views into memory that is reused
 * right after the call (the Wasm shared memory).
 */
export class RecordEncoder {
  #buf: Buffer;
  #length = 0;
  readonly #initialBytes: number;

  constructor(initialBytes = 64 * 1024) {
    this.#initialBytes = initialBytes;
    this.#buf = Buffer.allocUnsafe(initialBytes);
  }

  /** Bytes encoded so far. */
  get length(): number {
    return this.#length;
  }

  /** The encoded bytes (a view, valid until the next append or reset). */
  bytes(): Buffer {
    return this.#buf.subarray(0, this.#length);
  }

  /** The underlying buffer (for writes at an offset); valid until the next append or reset. */
  get buffer(): Buffer {
    return this.#buf;
  }

  /** Forgets everything; gives a buffer that grew large back. */
  reset(): void {
    this.#length = 0;
    if (this.#buf.length > 16 * this.#initialBytes) this.#buf = Buffer.allocUnsafe(this.#initialBytes);
  }

  /** Drops the first `n` encoded bytes (they were written), keeping the rest in order. */
  consume(n: number): void {
    if (n >= this.#length) {
      this.reset();
      return;
    }
    this.#buf.copy(this.#buf, 0, n, this.#length);
    this.#length -= n;
  }

  /** PUSH of stored records (one or many, back to back) with an optional due time and dedupId. */
  push(queue: Uint8Array, topic: Uint8Array, records: Uint8Array, dueAt?: number, dedup?: { id: Uint8Array; expiresAt: number }): void {
    const due = dueAt !== undefined;
    const dedupBytes = dedup === undefined ? 0 : 9 + dedup.id.length;
    const at = this.#begin(RECORD_PUSH, (due ? FLAG_DUE : 0) | (dedup === undefined ? 0 : FLAG_DEDUP), queue, topic, dedupBytes + (due ? 8 : 0) + records.length);
    let p = at + RECORD_HEADER_BYTES + queue.length + topic.length;
    if (dedup !== undefined) {
      writeF64(this.#buf, p, dedup.expiresAt);
      this.#buf[p + 8] = dedup.id.length;
      this.#buf.set(dedup.id, p + 9);
      p += dedupBytes;
    }
    if (due) { writeF64(this.#buf, p, dueAt); p += 8; }
    this.#buf.set(records, p);
    this.#end(at, p + records.length);
  }

  /** REMOVE of id ranges: `firsts[i]`, `counts[i]` for i < n. */
  removeRanges(queue: Uint8Array, topic: Uint8Array, firsts: ArrayLike<number>, counts: ArrayLike<number>, n: number): void {
    this.#entries(RECORD_REMOVE, queue, topic, firsts, counts, n);
  }

  /** A record whose body is n x (u64 a[i], u32 b[i]): REMOVE ranges, DELIVERED entries (both 12 bytes each). */
  #entries(type: number, queue: Uint8Array, topic: Uint8Array, a: ArrayLike<number>, b: ArrayLike<number>, n: number): void {
    const at = this.#begin(type, 0, queue, topic, n * REMOVE_RANGE_BYTES);
    let p = at + RECORD_HEADER_BYTES + queue.length + topic.length;
    for (let i = 0; i < n; i++) {
      writeU64(this.#buf, p, a[i]!);
      writeU32(this.#buf, p + 8, b[i]! >>> 0);
      p += REMOVE_RANGE_BYTES;
    }
    this.#end(at, p);
  }

  /** META: the message's new meta word, and its due time (none: it is ready). */
  meta(queue: Uint8Array, topic: Uint8Array, id: number, meta: number, dueAt?: number): void {
    const due = dueAt !== undefined;
    const at = this.#begin(RECORD_META, due ? FLAG_DUE : 0, queue, topic, 12 + (due ? 8 : 0));
    let p = at + RECORD_HEADER_BYTES + queue.length + topic.length;
    writeU64(this.#buf, p, id);
    writeU32(this.#buf, p + 8, meta >>> 0);
    p += 12;
    if (due) { writeF64(this.#buf, p, dueAt); p += 8; }
    this.#end(at, p);
  }

  /** DELIVERED: messages `ids[i]` were delivered under a lease; `metas[i]` holds the new deliveries count (i < n). */
  delivered(queue: Uint8Array, topic: Uint8Array, ids: ArrayLike<number>, metas: ArrayLike<number>, n: number): void {
    this.#entries(RECORD_DELIVERED, queue, topic, ids, metas, n);
  }

  /** SETTINGS: a queue's full settings as JSON; the latest (boot, stamp) wins. */
  settings(queue: Uint8Array, boot: number, stamp: number, json: Uint8Array): void {
    const at = this.#begin(RECORD_SETTINGS, 0, queue, EMPTY, 12 + json.length);
    let p = at + RECORD_HEADER_BYTES + queue.length;
    writeU32(this.#buf, p, boot);
    writeF64(this.#buf, p + 4, stamp);
    p += 12;
    this.#buf.set(json, p);
    this.#end(at, p + json.length);
  }

  /** NEXT_ID: every id of the topic is below `nextId` (kept by compaction when the records go). */
  nextId(queue: Uint8Array, topic: Uint8Array, nextId: number): void {
    const at = this.#begin(RECORD_NEXT_ID, 0, queue, topic, 8);
    const p = at + RECORD_HEADER_BYTES + queue.length + topic.length;
    writeU64(this.#buf, p, nextId);
    this.#end(at, p + 8);
  }

  /** DEDUP: a dedupId window still open after its push is gone (compaction): a retry until `expiresAt` (ms since the epoch) stores nothing. */
  dedup(queue: Uint8Array, topic: Uint8Array, dedupId: Uint8Array, expiresAt: number): void {
    const at = this.#begin(RECORD_DEDUP, 0, queue, topic, 8 + dedupId.length);
    const p = at + RECORD_HEADER_BYTES + queue.length + topic.length;
    writeF64(this.#buf, p, expiresAt);
    this.#buf.set(dedupId, p + 8);
    this.#end(at, p + 8 + dedupId.length);
  }

  /** SEAL: the last record of a segment its writer closed. */
  seal(): void {
    const at = this.#begin(RECORD_SEAL, 0, EMPTY, EMPTY, 0);
    this.#end(at, at + RECORD_HEADER_BYTES);
  }

  /**
   * Appends records the core journaled (assembly/journal.ts): whole log records with their
   * crc32 word left 0, back to back; each is checked for a sane length and type and gets
   * its checksum here. Returns the number of records. Throws (appending nothing) when the
   * bytes are not whole records, which would be a core bug: never write what recovery
   * would cut off as damage.
   */
  journal(bytes: Uint8Array): number {
    let n = 0;
    for (let p = 0; p < bytes.length; n++) {
      const len = p + 4 <= bytes.length ? readU32(bytes, p) : 0;
      const type = bytes[p + 8];
      if (len < RECORD_HEADER_BYTES || p + len > bytes.length || (type !== RECORD_PUSH && type !== RECORD_REMOVE && type !== RECORD_META && type !== RECORD_DELIVERED)) {
        throw new RangeError(`turbomq log: malformed journal record at offset ${p} of ${bytes.length}`);
      }
      p += len;
    }
    this.#reserve(bytes.length);
    const start = this.#length;
    const b = this.#buf;
    b.set(bytes, start);
    for (let p = start, end = start + bytes.length; p < end;) {
      const len = readU32(b, p);
      writeU32(b, p + 4, crc32Of(b, p + 8, p + len));
      p += len;
    }
    this.#length = start + bytes.length;
    return n;
  }

  /** Appends raw bytes (a segment header). */
  raw(bytes: Uint8Array): void {
    this.#reserve(bytes.length);
    this.#buf.set(bytes, this.#length);
    this.#length += bytes.length;
  }

  #begin(type: number, flags: number, queue: Uint8Array, topic: Uint8Array, bodyBytes: number): number {
    const total = RECORD_HEADER_BYTES + queue.length + topic.length + bodyBytes;
    if (total > MAX_RECORD_BYTES) throw new RangeError(`log record of ${total} bytes is over ${MAX_RECORD_BYTES}`);
    this.#reserve(total);
    const at = this.#length;
    const b = this.#buf;
    writeU32(b, at, total);
    b[at + 8] = type;
    b[at + 9] = flags;
    b[at + 10] = queue.length;
    b[at + 11] = topic.length;
    b.set(queue, at + RECORD_HEADER_BYTES);
    b.set(topic, at + RECORD_HEADER_BYTES + queue.length);
    return at;
  }

  #end(at: number, end: number): void {
    writeU32(this.#buf, at + 4, crc32Of(this.#buf, at + 8, end));
    this.#length = end;
  }

  #reserve(n: number): void {
    const need = this.#length + n;
    if (need <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < need) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.#buf.copy(grown, 0, 0, this.#length);
    this.#buf = grown;
  }
}

const EMPTY = new Uint8Array(0);

/** The bytes of a SEAL record (always the same). */
export const SEAL_RECORD: Buffer = (() => {
  const e = new RecordEncoder(16);
  e.seal();
  return Buffer.from(e.bytes());
})();

// ── Decoder ───────────────────────────────────────────────────────────────────────────

export const DECODE_OK = 0;
/** Not enough bytes for a whole record (a torn tail, or a record still being written). */
export const DECODE_INCOMPLETE = 1;
/** The bytes are not a valid record (checksum, length or body). */
export const DECODE_CORRUPT = 2;

/** One decoded record: offsets into the buffer it was decoded from. Reused between calls. */
export class DecodedRecord {
  type = 0;
  flags = 0;
  /** Offset of the record, and of the byte after it. */
  start = 0;
  end = 0;
  queueStart = 0;
  queueLength = 0;
  topicStart = 0;
  topicLength = 0;
  /** The body (after the names). */
  bodyStart = 0;
  /** PUSH: the due time or NaN; first stored record's offset. META: id, meta, dueAt (NaN: none). DEDUP: dueAt is the expiry. */
  dueAt = NaN;
  recordsStart = 0;
  /** PUSH with FLAG_DEDUP, and DEDUP: the dedupId at [dedupStart, dedupStart + dedupLength) and its window's end; dedupLength 0 (a PUSH): none. */
  dedupStart = 0;
  dedupLength = 0;
  dedupExpires = 0;
  id = 0;
  meta = 0;
  /** Why the record is corrupt or incomplete. */
  reason = '';
}

/**
 * Decodes the record at `at` in `b[at, end)` into `out`. Never throws: a record that does
 * not fit, has a bad checksum, or a body that does not parse is reported, with a reason.
 * `verify` false skips the checksum and the walk over a PUSH's stored records (that they
 * fill the body exactly): only for bytes this process checked before and that cannot have
 * changed since (compaction rewriting what it followed). The walk is the costly part of a
 * decode: a batch of 64 small messages is 64 reads of a length.
 */
export function decodeRecord(b: Uint8Array, at: number, end: number, out: DecodedRecord, verify = true): number {
  out.start = at;
  const available = end - at;
  if (available < RECORD_HEADER_BYTES) {
    out.reason = `record header cut short (${available} of ${RECORD_HEADER_BYTES} bytes)`;
    return DECODE_INCOMPLETE;
  }
  const length = readU32(b, at);
  if (length < RECORD_HEADER_BYTES || length > MAX_RECORD_BYTES) {
    out.reason = `bad record length ${length}`;
    return DECODE_CORRUPT;
  }
  if (length > available) {
    out.reason = `record of ${length} bytes cut short (${available} bytes left)`;
    return DECODE_INCOMPLETE;
  }
  const recordEnd = at + length;
  if (verify && readU32(b, at + 4) !== crc32Of(b, at + 8, recordEnd)) {
    out.reason = 'checksum mismatch';
    return DECODE_CORRUPT;
  }
  const type = b[at + 8]!;
  const flags = b[at + 9]!;
  const queueLength = b[at + 10]!;
  const topicLength = b[at + 11]!;
  const bodyStart = at + RECORD_HEADER_BYTES + queueLength + topicLength;
  out.type = type;
  out.flags = flags;
  out.end = recordEnd;
  out.queueStart = at + RECORD_HEADER_BYTES;
  out.queueLength = queueLength;
  out.topicStart = out.queueStart + queueLength;
  out.topicLength = topicLength;
  out.bodyStart = bodyStart;
  const bodyBytes = recordEnd - bodyStart;
  if (type === RECORD_SEAL) {
    if (queueLength !== 0 || topicLength !== 0 || bodyBytes !== 0) {
      out.reason = 'malformed seal record';
      return DECODE_CORRUPT;
    }
    return DECODE_OK;
  }
  if (queueLength === 0 || bodyBytes < 0 || (topicLength === 0) !== (type === RECORD_SETTINGS)) {
    out.reason = 'bad queue or topic name length';
    return DECODE_CORRUPT;
  }
  const due = (flags & FLAG_DUE) !== 0;
  switch (type) {
    case RECORD_PUSH: {
      let p = bodyStart;
      out.dueAt = NaN;
      out.dedupLength = 0;
      if ((flags & FLAG_DEDUP) !== 0) {
        if (bodyBytes < 9) break;
        const dl = b[p + 8]!;
        if (dl === 0 || p + 9 + dl > recordEnd) break;
        out.dedupExpires = readF64(b, p);
        out.dedupStart = p + 9;
        out.dedupLength = dl;
        p += 9 + dl;
      }
      if (due) {
        if (recordEnd - p < 8) break;
        out.dueAt = readF64(b, p);
        p += 8;
      }
      out.recordsStart = p;
      if (p === recordEnd) break; // a push of no records is malformed
      if (!verify) return DECODE_OK;
      while (p < recordEnd) {
        if (recordEnd - p < STORED_HEADER_BYTES) break;
        p += STORED_HEADER_BYTES + readU32(b, p);
      }
      if (p !== recordEnd) break;
      return DECODE_OK;
    }
    case RECORD_REMOVE:
    case RECORD_DELIVERED:
      if (bodyBytes === 0 || bodyBytes % REMOVE_RANGE_BYTES !== 0) break;
      return DECODE_OK;
    case RECORD_META:
      if (bodyBytes !== (due ? 20 : 12)) break;
      out.id = readU64(b, bodyStart);
      out.meta = readU32(b, bodyStart + 8);
      out.dueAt = due ? readF64(b, bodyStart + 12) : NaN;
      return DECODE_OK;
    case RECORD_SETTINGS:
      if (bodyBytes < 12) break;
      return DECODE_OK;
    case RECORD_NEXT_ID:
      if (bodyBytes !== 8) break;
      out.id = readU64(b, bodyStart);
      return DECODE_OK;
    case RECORD_DEDUP:
      if (bodyBytes < 9 || bodyBytes > 8 + MAX_DEDUP_ID_BYTES) break;
      // Described as a PUSH's dedupId is (so that readers treat both alike), the expiry in dueAt too.
      out.dueAt = out.dedupExpires = readF64(b, bodyStart);
      out.dedupStart = bodyStart + 8;
      out.dedupLength = bodyBytes - 8;
      return DECODE_OK;
    default:
      out.reason = `unknown record type ${type}`;
      return DECODE_CORRUPT;
  }
  out.reason = `malformed body of a type ${type} record`;
  return DECODE_CORRUPT;
}

const ZEROS = new Uint8Array(64 * 1024);

/**
 * True when `b[at, end)` is all zero bytes: the preallocated, never written tail of a segment
 * (log.ts writes zeros ahead of its data), which ends the segment's records cleanly.
 */
export function isZeroTail(b: Uint8Array, at: number, end: number): boolean {
  for (let p = at; p < end; p += ZEROS.length) {
    const n = Math.min(ZEROS.length, end - p);
    if (Buffer.compare(b.subarray(p, p + n), ZEROS.subarray(0, n)) !== 0) return false;
  }
  return true;
}

/** Checks that `records` is 1..n whole stored records back to back; returns how many. */
export function countStoredRecords(records: Uint8Array): number {
  let p = 0, n = 0;
  while (p < records.length) {
    if (records.length - p < STORED_HEADER_BYTES) return -1;
    p += STORED_HEADER_BYTES + readU32(records, p);
    n++;
  }
  return p === records.length && n > 0 ? n : -1;
}

/** The deliveries count in a meta word. */
export function deliveriesOf(meta: number): number {
  return meta & DELIVERIES_MASK;
}

/** What a META or DELIVERED record says of a message: its meta word, due time (NaN: ready), and which kind. */
export interface MetaRecord {
  meta: number;
  dueAt: number;
  /** A leased delivery (DELIVERED), not the end of a lease (META). */
  delivered: boolean;
}

/**
 * Which of two records about one message's meta holds (recovery and compaction): the most
 * deliveries; on a tie the end of a lease (META) over the delivery that began it (DELIVERED
 * with the same count: the lease end came later, whichever file either is in); else the
 * later one, `meta`.
 */
export function newerMeta(old: MetaRecord | undefined, meta: number, dueAt: number, delivered: boolean): MetaRecord {
  if (old !== undefined) {
    const d = deliveriesOf(meta), od = deliveriesOf(old.meta);
    if (d < od || (d === od && delivered && !old.delivered)) return old;
  }
  return { meta, dueAt, delivered };
}

/**
 * Whether record `m` decides the meta and due time of a push whose own stored meta is
 * `pushMeta`: a lease end with at least as many deliveries, a delivery with more (a push
 * with as many was written later, by compaction merging the lease end in).
 */
export function metaOverrides(m: MetaRecord, pushMeta: number): boolean {
  const d = deliveriesOf(m.meta), pd = deliveriesOf(pushMeta);
  return m.delivered ? d > pd : d >= pd;
}
