// Test support: thin JS wrappers over the Wasm frame codec (assembly/codec.ts) for tests
// that build and read frames by hand. Not a second codec: every byte is encoded and
// decoded by the core's exports, as the session (src/engine/session.ts) and the client
// (src/client/connection.ts) call them directly on their hot paths.
//
// Hot path rules: FrameDecoder's accessors read one descriptor field each (no object per
// frame; `read(i, out)` fills a caller-owned object). Names are passed pre-encoded
// (encodeName) so a client encodes each queue/topic name once.

import type { Core, CoreExports, MemoryView } from '../../src/core/wasm.ts';
import { TurboError } from '../../src/errors.ts';
import type { SettingsBlock } from './raw.ts';
import {
  DESC_SIZE, DESC_OP, DESC_REQUEST_ID, DESC_QUEUE_PTR, DESC_QUEUE_LEN, DESC_TOPIC_PTR,
  DESC_TOPIC_LEN, DESC_DATA_PTR, DESC_DATA_LEN, DESC_ARG0, DESC_ARG1, DESC_ARG2, DESC_ARG3, ErrorCode, MAX_NAME_BYTES,
  MAX_ERROR_TEXT_BYTES, Op, PROTOCOL_VERSION, HEADER_BYTES, FLAGS, RECORD_HEADER_BYTES, LEASED_RECORD_HEADER_BYTES,
  SETTLE_ENTRY_BYTES, SETTINGS_FIXED_BYTES,
} from '../../src/protocol.ts';

/** A stored record to write (MESSAGES, DELIVER, RETURN): its data and header fields. */
export interface StoredRecord {
  data: Uint8Array;
  /** deliveries | flags << 24 (default 0). */
  meta?: number;
  /** Default: the record's index in its frame. */
  id?: bigint;
  /** Leased frames only (FLAGS.LEASED). */
  lease?: bigint;
}

/** One SETTLE entry. */
export interface SettleEntry {
  lease: bigint;
  kind: number;
  arg: number;
}

/** The settings block of CONFIGURE and SETTINGS, as numbers (docs/protocol.md): the raw-frame builder's. */
export type Settings = SettingsBlock;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: false });

/** UTF-8 bytes of a queue or topic name; throws ERR_INVALID_ARGUMENT unless 1..255 bytes. */
export function encodeName(name: string): Uint8Array {
  const bytes = textEncoder.encode(name);
  if (bytes.length === 0 || bytes.length > MAX_NAME_BYTES) {
    throw new TurboError('ERR_INVALID_ARGUMENT', `a name must be 1 to ${MAX_NAME_BYTES} bytes of UTF-8, got ${bytes.length}`);
  }
  return bytes;
}

/** One descriptor's fields, filled by FrameDecoder.read (reuse one object). */
export interface FrameFields {
  op: number;
  flags: number;
  requestId: number;
  queuePtr: number;
  queueLen: number;
  topicPtr: number;
  topicLen: number;
  dataPtr: number;
  dataLen: number;
  arg0: number;
  arg1: number;
  arg2: number;
  arg3: number;
}

export function newFrameFields(): FrameFields {
  return { op: 0, flags: 0, requestId: 0, queuePtr: 0, queueLen: 0, topicPtr: 0, topicLen: 0, dataPtr: 0, dataLen: 0, arg0: 0, arg1: 0, arg2: 0, arg3: 0 };
}

/**
 * Bytes in, frames out. Usage: `feed(chunk)`, then `for (;;) { const n = next(); read
 * descriptors 0..n-1; if (n < DESC_CAPACITY) break; }`. Pointers and views from a
 * descriptor stay valid until the next feed() or free().
 */
export class FrameDecoder {
  readonly #e: CoreExports;
  readonly #view: MemoryView;
  readonly #shared: boolean;
  #dec: number;
  readonly #base: number;

  constructor(core: Core, maxFrameBytes: number, maxMessageBytes: number) {
    this.#e = core.exports;
    this.#view = core.view;
    this.#shared = core.shared;
    this.#dec = this.#e.decoderNew(maxFrameBytes, maxMessageBytes);
    if (this.#dec === 0) throw new TurboError('ERR_NO_MEMORY', 'out of memory for a frame decoder');
    this.#base = this.#e.decoderDescriptors(this.#dec);
  }

  /** The decoder's address in the core (for direct export calls). */
  get handle(): number {
    return this.#dec;
  }

  /** Buffers `chunk` (after the bytes not decoded yet). Throws ERR_NO_MEMORY. */
  feed(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    const at = this.#e.decoderReserve(this.#dec, chunk.length);
    if (at === 0) throw new TurboError('ERR_NO_MEMORY', 'out of memory for the frame decoder buffer');
    this.#view.write(at, chunk);
    this.#e.decoderCommit(this.#dec, chunk.length);
  }

  /**
   * Decodes buffered frames: returns how many descriptors are ready (0: need more bytes;
   * DESC_CAPACITY: call again after reading them). Throws ERR_PROTOCOL / ERR_NO_MEMORY when
   * the stream is broken (and again on every later call).
   */
  next(): number {
    const n = this.#e.decoderNext(this.#dec);
    if (n < 0) {
      const code = ErrorCode.nameOf(-n);
      throw new TurboError(code, code === 'ERR_PROTOCOL' ? 'malformed frame: the stream cannot be decoded' : 'frame decoder failed');
    }
    return n;
  }

  /** Address of descriptor i. */
  descriptor(i: number): number {
    return this.#base + i * DESC_SIZE;
  }

  op(i: number): number { return this.#view.u32(this.#base + i * DESC_SIZE + DESC_OP) & 0xff; }
  flags(i: number): number { return this.#view.u32(this.#base + i * DESC_SIZE + DESC_OP) >>> 16; }
  requestId(i: number): number { return this.#view.u32(this.#base + i * DESC_SIZE + DESC_REQUEST_ID); }
  queuePtr(i: number): number { return this.#view.u32(this.#base + i * DESC_SIZE + DESC_QUEUE_PTR); }
  queueLen(i: number): number { return this.#view.u32(this.#base + i * DESC_SIZE + DESC_QUEUE_LEN); }
  topicPtr(i: number): number { return this.#view.u32(this.#base + i * DESC_SIZE + DESC_TOPIC_PTR); }
  topicLen(i: number): number { return this.#view.u32(this.#base + i * DESC_SIZE + DESC_TOPIC_LEN); }
  dataPtr(i: number): number { return this.#view.u32(this.#base + i * DESC_SIZE + DESC_DATA_PTR); }
  dataLen(i: number): number { return this.#view.u32(this.#base + i * DESC_SIZE + DESC_DATA_LEN); }
  arg0(i: number): number { return this.#view.u32(this.#base + i * DESC_SIZE + DESC_ARG0); }
  arg1(i: number): number { return this.#view.u32(this.#base + i * DESC_SIZE + DESC_ARG1); }
  arg2(i: number): number { return this.#view.u32(this.#base + i * DESC_SIZE + DESC_ARG2); }
  arg3(i: number): number { return this.#view.u32(this.#base + i * DESC_SIZE + DESC_ARG3); }

  /** Fills `out` with descriptor i's fields and returns it. */
  read(i: number, out: FrameFields): FrameFields {
    const v = this.#view;
    const d = this.#base + i * DESC_SIZE;
    const opFlags = v.u32(d + DESC_OP);
    out.op = opFlags & 0xff;
    out.flags = opFlags >>> 16;
    out.requestId = v.u32(d + DESC_REQUEST_ID);
    out.queuePtr = v.u32(d + DESC_QUEUE_PTR);
    out.queueLen = v.u32(d + DESC_QUEUE_LEN);
    out.topicPtr = v.u32(d + DESC_TOPIC_PTR);
    out.topicLen = v.u32(d + DESC_TOPIC_LEN);
    out.dataPtr = v.u32(d + DESC_DATA_PTR);
    out.dataLen = v.u32(d + DESC_DATA_LEN);
    out.arg0 = v.u32(d + DESC_ARG0);
    out.arg1 = v.u32(d + DESC_ARG1);
    out.arg2 = v.u32(d + DESC_ARG2);
    out.arg3 = v.u32(d + DESC_ARG3);
    return out;
  }

  /** Descriptor i's data as a view into the decoder buffer (valid until the next feed). */
  data(i: number): Uint8Array {
    return this.#view.bytes(this.dataPtr(i), this.dataLen(i));
  }

  /** A copy of descriptor i's data. */
  dataCopy(i: number): Uint8Array {
    return this.#view.copy(this.dataPtr(i), this.dataLen(i));
  }

  /** Descriptor i's queue name (requests with names). */
  queue(i: number): string {
    return this.#text(this.queuePtr(i), this.queueLen(i));
  }

  /** Descriptor i's topic name (requests with names). */
  topic(i: number): string {
    return this.#text(this.topicPtr(i), this.topicLen(i));
  }

  /** Descriptor i's data as UTF-8 text (ERROR text, HELLO_OK server version). */
  text(i: number): string {
    return this.#text(this.dataPtr(i), this.dataLen(i));
  }

  /** Copies of the data of the records of a MESSAGES / DELIVER / PUSH_MANY / RETURN descriptor, in order. */
  records(i: number): Uint8Array[] {
    const count = this.arg0(i);
    const out = new Array<Uint8Array>(count);
    const v = this.#view;
    const op = this.op(i);
    const header = op === Op.PUSH_MANY || op === Op.PUSH_MANY_EX ? 4
      : this.#leased(i) ? LEASED_RECORD_HEADER_BYTES : RECORD_HEADER_BYTES;
    let p = this.dataPtr(i);
    for (let k = 0; k < count; k++) {
      const len = v.u32(p);
      out[k] = v.copy(p + header, len);
      p += header + len;
    }
    return out;
  }

  /** The (meta, id, lease) of each stored record of a MESSAGES / DELIVER / RETURN descriptor (lease 0 unless leased). */
  recordHeaders(i: number): { meta: number; id: bigint; lease: bigint }[] {
    const count = this.arg0(i);
    const v = this.#view;
    const leased = this.#leased(i);
    const header = leased ? LEASED_RECORD_HEADER_BYTES : RECORD_HEADER_BYTES;
    const out: { meta: number; id: bigint; lease: bigint }[] = [];
    let p = this.dataPtr(i);
    for (let k = 0; k < count; k++) {
      const id = BigInt(v.u32(p + 8)) | (BigInt(v.u32(p + 12)) << 32n);
      const lease = leased ? BigInt(v.u32(p + 16)) | (BigInt(v.u32(p + 20)) << 32n) : 0n;
      out.push({ meta: v.u32(p + 4), id, lease });
      p += header + v.u32(p);
    }
    return out;
  }

  /** The entries of a SETTLE descriptor. */
  settleEntries(i: number): SettleEntry[] {
    const v = this.#view;
    const out: SettleEntry[] = [];
    for (let k = 0, p = this.dataPtr(i); k < this.arg0(i); k++, p += SETTLE_ENTRY_BYTES) {
      out.push({ lease: BigInt(v.u32(p)) | (BigInt(v.u32(p + 4)) << 32n), kind: v.u32(p + 8), arg: v.u32(p + 12) });
    }
    return out;
  }

  /** The settings block of a CONFIGURE or SETTINGS descriptor. */
  settings(i: number): Settings {
    const v = this.#view;
    const p = this.dataPtr(i);
    return {
      leaseMs: v.f64(p), maxDeliveries: v.f64(p + 8), maxLength: v.f64(p + 16), dedupWindowMs: v.f64(p + 24),
      overflow: v.u8(p + 32), durable: v.u8(p + 33), deadLetterTopic: this.#text(p + SETTINGS_FIXED_BYTES, v.u8(p + 34)),
    };
  }

  /** A PUSH_EX descriptor's dedupId (arg2 = its address, arg3 = its length; empty when none). */
  dedupId(i: number): Uint8Array {
    return this.#view.copy(this.arg2(i), this.arg3(i));
  }

  /** Bytes buffered and not decoded yet. */
  get buffered(): number {
    return this.#e.decoderBuffered(this.#dec);
  }

  /** Current buffer capacity. */
  get capacity(): number {
    return this.#e.decoderCapacity(this.#dec);
  }

  free(): void {
    if (this.#dec === 0) return;
    this.#e.decoderFree(this.#dec);
    this.#dec = 0;
  }

  /** MESSAGES/DELIVER with FLAGS.LEASED carry leased records (the flag means nothing on other ops). */
  #leased(i: number): boolean {
    const op = this.op(i);
    return (op === Op.MESSAGES || op === Op.DELIVER) && (this.flags(i) & FLAGS.LEASED) !== 0;
  }

  #text(ptr: number, len: number): string {
    if (len === 0) return '';
    // TextDecoder refuses views of a SharedArrayBuffer in some engines: copy those.
    return textDecoder.decode(this.#shared ? this.#view.copy(ptr, len) : this.#view.bytes(ptr, len));
  }
}

/**
 * Frames out: each method appends one frame to the core writer; take() hands the bytes
 * over. Throws ERR_NO_MEMORY when the core is out of memory (nothing of that frame is
 * kept) and ERR_INVALID_ARGUMENT for a bad name.
 */
export class FrameWriter {
  readonly #e: CoreExports;
  readonly #view: MemoryView;
  #w: number;
  /** Core memory for names and texts passed to the encoders. */
  #scratch = 0;
  #scratchCap = 0;

  constructor(core: Core, initialCap = 16 * 1024) {
    this.#e = core.exports;
    this.#view = core.view;
    this.#w = this.#e.writerNew(initialCap);
    if (this.#w === 0) throw new TurboError('ERR_NO_MEMORY', 'out of memory for a frame writer');
  }

  /** The writer's address in the core (for direct export calls such as opPop). */
  get handle(): number {
    return this.#w;
  }

  /** Bytes written and not taken yet. */
  get byteLength(): number {
    return this.#e.writerLength(this.#w);
  }

  /** A copy of the bytes written so far; the writer is reset. */
  take(): Uint8Array {
    const e = this.#e;
    const bytes = this.#view.copy(e.writerData(this.#w), e.writerLength(this.#w));
    e.writerReset(this.#w);
    return bytes;
  }

  /** The bytes written so far as a view (valid until the next write); does not reset. */
  peek(): Uint8Array {
    const e = this.#e;
    return this.#view.bytes(e.writerData(this.#w), e.writerLength(this.#w));
  }

  reset(): void {
    this.#e.writerReset(this.#w);
  }

  free(): void {
    if (this.#w === 0) return;
    this.#e.writerFree(this.#w);
    this.#e.free(this.#scratch);
    this.#w = 0;
    this.#scratch = 0;
    this.#scratchCap = 0;
  }

  // ── Replies ──

  ok(requestId: number): void { this.#check(this.#e.encodeOk(this.#w, requestId)); }
  pong(requestId: number): void { this.#check(this.#e.encodePong(this.#w, requestId)); }
  empty(requestId: number): void { this.#check(this.#e.encodeEmpty(this.#w, requestId)); }
  lengthOk(requestId: number, length: number): void { this.#check(this.#e.encodeLengthOk(this.#w, requestId, length)); }

  /** ERROR with a wire code (ErrorCode.ERR_*) and text (cut at 65535 bytes). */
  error(requestId: number, code: number, text: string): void {
    let bytes = textEncoder.encode(text);
    if (bytes.length > MAX_ERROR_TEXT_BYTES) bytes = bytes.subarray(0, MAX_ERROR_TEXT_BYTES);
    const p = this.#put(bytes, 0);
    this.#check(this.#e.encodeError(this.#w, requestId, code, p, bytes.length));
  }

  helloOk(requestId: number, maxMessageBytes: number, maxFrameBytes: number, serverVersion: string): void {
    const ver = encodeName(serverVersion);
    const p = this.#put(ver, 0);
    this.#check(this.#e.encodeHelloOk(this.#w, requestId, maxMessageBytes, maxFrameBytes, p, ver.length));
  }

  /** MESSAGES with these records (stored records; leased ones with `flags` FLAGS.LEASED). */
  messages(requestId: number, records: readonly (Uint8Array | StoredRecord)[], flags = 0): void {
    this.#records(Op.MESSAGES, requestId, records, flags);
  }

  /** DELIVER with these records (as messages). */
  deliver(requestId: number, records: readonly (Uint8Array | StoredRecord)[], flags = 0): void {
    this.#records(Op.DELIVER, requestId, records, flags);
  }

  /** SETTLED: one status byte per entry (0 done, else a wire error code). */
  settled(requestId: number, statuses: readonly number[]): void {
    const p = this.#e.encodeSettledBegin(this.#w, requestId, statuses.length);
    if (p === 0) this.#oom();
    if (statuses.length > 0) this.#view.write(p, Uint8Array.from(statuses));
  }

  /** SETTINGS: a queue's settings block. */
  settingsReply(requestId: number, settings: Settings): void {
    const block = settingsBytes(settings);
    const p = this.#put(block, 0);
    this.#check(this.#e.encodeSettings(this.#w, requestId, p, block.length));
  }

  /** STATS_OK: ready, delayed, inFlight. */
  statsOk(requestId: number, ready: number, delayed: number, inFlight: number): void {
    const b = new Uint8Array(12);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, ready, true);
    dv.setUint32(4, delayed, true);
    dv.setUint32(8, inFlight, true);
    const p = this.#put(b, 0);
    this.#check(this.#e.encodeStatsOk(this.#w, requestId, p));
  }

  // ── Requests ──

  hello(requestId: number, minVersion = PROTOCOL_VERSION, maxVersion = PROTOCOL_VERSION): void {
    this.#check(this.#e.encodeHello(this.#w, requestId, minVersion, maxVersion));
  }

  ping(requestId: number): void { this.#check(this.#e.encodePing(this.#w, requestId)); }
  serverStats(requestId: number): void { this.#check(this.#e.encodeServerStats(this.#w, requestId)); }
  shutdown(requestId: number): void { this.#check(this.#e.encodeShutdown(this.#w, requestId)); }

  /** STATS_JSON carrying `json`. */
  statsJson(requestId: number, json: string): void {
    const bytes = textEncoder.encode(json);
    const p = this.#e.encodeStatsJson(this.#w, requestId, bytes.length);
    if (p === 0) this.#oom();
    this.#view.write(p, bytes);
  }

  /** PUSH; `queue` and `topic` from encodeName. */
  push(requestId: number, queue: Uint8Array, topic: Uint8Array, data: Uint8Array): void {
    const q = this.#names(queue, topic);
    const p = this.#e.encodePush(this.#w, requestId, q, queue.length, q + queue.length, topic.length, data.length);
    if (p === 0) this.#oom();
    if (data.length > 0) this.#view.write(p, data);
  }

  /** PUSH_MANY of records[start..end) as one frame (the caller keeps it under maxFrameBytes). */
  pushMany(requestId: number, queue: Uint8Array, topic: Uint8Array, records: readonly Uint8Array[], start = 0, end = records.length): void {
    const e = this.#e;
    const q = this.#names(queue, topic);
    const mark = e.encodePushManyBegin(this.#w, requestId, q, queue.length, q + queue.length, topic.length);
    if (mark < 0) this.#oom();
    this.#fill(mark, records, start, end);
  }

  /** RETURN of records[start..end) (stored records): messages received but not consumed, back to the front. */
  returnRecords(requestId: number, queue: Uint8Array, topic: Uint8Array, records: readonly (Uint8Array | StoredRecord)[], start = 0, end = records.length): void {
    const e = this.#e;
    const q = this.#names(queue, topic);
    const mark = e.encodeReturnBegin(this.#w, requestId, q, queue.length, q + queue.length, topic.length);
    if (mark < 0) this.#oom();
    this.#fillStored(mark, records, start, end, false);
  }

  /** PUSH_EX: a push with a delay (0 = none) and a dedupId (empty = none). */
  pushEx(requestId: number, queue: Uint8Array, topic: Uint8Array, delayMs: number, dedupId: Uint8Array, data: Uint8Array): void {
    const e = this.#e;
    const q = this.#names(queue, topic, dedupId.length);
    const d = q + queue.length + topic.length;
    this.#view.write(d, dedupId);
    const p = e.encodePushEx(this.#w, requestId, q, queue.length, q + queue.length, topic.length, delayMs, d, dedupId.length, data.length);
    if (p === 0) this.#oom();
    if (data.length > 0) this.#view.write(p, data);
  }

  /** PUSH_MANY_EX: PUSH_MANY with a delay. */
  pushManyEx(requestId: number, queue: Uint8Array, topic: Uint8Array, delayMs: number, records: readonly Uint8Array[]): void {
    const e = this.#e;
    const q = this.#names(queue, topic);
    const mark = e.encodePushManyExBegin(this.#w, requestId, q, queue.length, q + queue.length, topic.length, delayMs);
    if (mark < 0) this.#oom();
    this.#fill(mark, records, 0, records.length);
  }

  popLeased(requestId: number, queue: Uint8Array, topic: Uint8Array, max: number, timeoutMs: number, leaseMs: number): void {
    const q = this.#names(queue, topic);
    this.#check(this.#e.encodePopLeased(this.#w, requestId, q, queue.length, q + queue.length, topic.length, max, timeoutMs, leaseMs));
  }

  /** SETTLE of these entries (at least one). */
  settle(requestId: number, entries: readonly SettleEntry[]): void {
    const p = this.#e.encodeSettle(this.#w, requestId, entries.length);
    if (p === 0) this.#oom();
    const b = new Uint8Array(entries.length * SETTLE_ENTRY_BYTES);
    const dv = new DataView(b.buffer);
    entries.forEach((entry, k) => {
      dv.setBigUint64(k * SETTLE_ENTRY_BYTES, entry.lease, true);
      dv.setUint32(k * SETTLE_ENTRY_BYTES + 8, entry.kind, true);
      dv.setUint32(k * SETTLE_ENTRY_BYTES + 12, entry.arg, true);
    });
    this.#view.write(p, b);
  }

  /** CONFIGURE queue with `mask` (SettingsMask bits) and the settings block. */
  configure(requestId: number, queue: Uint8Array, mask: number, settings: Settings): void {
    checkName(queue);
    const block = settingsBytes(settings);
    const q = this.#put(queue, 0);
    const p = this.#e.encodeConfigure(this.#w, requestId, q, queue.length, mask, block.length);
    if (p === 0) this.#oom();
    this.#view.write(p, block);
  }

  stats(requestId: number, queue: Uint8Array, topic: Uint8Array): void {
    const q = this.#names(queue, topic);
    this.#check(this.#e.encodeStats(this.#w, requestId, q, queue.length, q + queue.length, topic.length));
  }

  pop(requestId: number, queue: Uint8Array, topic: Uint8Array, timeoutMs: number): void {
    const q = this.#names(queue, topic);
    this.#check(this.#e.encodePop(this.#w, requestId, q, queue.length, q + queue.length, topic.length, timeoutMs));
  }

  popMany(requestId: number, queue: Uint8Array, topic: Uint8Array, max: number, timeoutMs: number): void {
    const q = this.#names(queue, topic);
    this.#check(this.#e.encodePopMany(this.#w, requestId, q, queue.length, q + queue.length, topic.length, max, timeoutMs));
  }

  length(requestId: number, queue: Uint8Array, topic: Uint8Array): void {
    const q = this.#names(queue, topic);
    this.#check(this.#e.encodeLength(this.#w, requestId, q, queue.length, q + queue.length, topic.length));
  }

  /** SUBSCRIBE (`leaseMs` 0 = the queue's; the encoder always writes the 12-byte body). */
  subscribe(requestId: number, queue: Uint8Array, topic: Uint8Array, prefetch: number, options: number, leaseMs = 0): void {
    const q = this.#names(queue, topic);
    this.#check(this.#e.encodeSubscribe(this.#w, requestId, q, queue.length, q + queue.length, topic.length, prefetch, options, leaseMs));
  }

  unsubscribe(requestId: number, subscriptionId: number): void {
    this.#check(this.#e.encodeUnsubscribe(this.#w, requestId, subscriptionId));
  }

  credit(requestId: number, subscriptionId: number, credit: number): void {
    this.#check(this.#e.encodeCredit(this.#w, requestId, subscriptionId, credit));
  }

  cancel(requestId: number, targetRequestId: number): void {
    this.#check(this.#e.encodeCancel(this.#w, requestId, targetRequestId));
  }

  /** Bytes one frame of these records adds: for splitting a pushMany under maxFrameBytes. */
  static recordsFrameBytes(nameBytes: number, records: readonly Uint8Array[], start = 0, end = records.length): number {
    let n = HEADER_BYTES + nameBytes + 4;
    for (let i = start; i < end; i++) n += 4 + records[i]!.length;
    return n;
  }

  /** A MESSAGES/DELIVER frame of stored records (or leased records with FLAGS.LEASED). */
  #records(op: number, requestId: number, records: readonly (Uint8Array | StoredRecord)[], flags: number): void {
    const e = this.#e;
    const mark = e.encodeRecordsBegin(this.#w, op, requestId, flags);
    if (mark < 0) this.#oom();
    this.#fillStored(mark, records, 0, records.length, (flags & FLAGS.LEASED) !== 0);
  }

  /**
   * Stored records through encodeStoredRecord; leased records are written straight into
   * the writer (writerReserve), as the core's leased pops do. Defaults: meta 0, id = index.
   */
  #fillStored(mark: number, records: readonly (Uint8Array | StoredRecord)[], start: number, end: number, leased: boolean): void {
    const e = this.#e;
    const v = this.#view;
    for (let i = start; i < end; i++) {
      const item = records[i]!;
      const r: StoredRecord = item instanceof Uint8Array ? { data: item } : item;
      const meta = r.meta ?? 0, id = r.id ?? BigInt(i);
      const idLo = Number(id & 0xFFFFFFFFn), idHi = Number(id >> 32n);
      let p: number;
      if (leased) {
        p = e.writerReserve(this.#w, LEASED_RECORD_HEADER_BYTES + r.data.length);
        if (p !== 0) {
          const lease = r.lease ?? 0n;
          v.setU32(p, r.data.length);
          v.setU32(p + 4, meta);
          v.setU32(p + 8, idLo);
          v.setU32(p + 12, idHi);
          v.setU32(p + 16, Number(lease & 0xFFFFFFFFn));
          v.setU32(p + 20, Number(lease >> 32n));
          p += LEASED_RECORD_HEADER_BYTES;
        }
      } else {
        p = e.encodeStoredRecord(this.#w, r.data.length, meta, idLo, idHi);
      }
      if (p === 0) {
        e.writerTruncate(this.#w, mark);
        this.#oom();
      }
      v.write(p, r.data);
    }
    e.encodeRecordsEnd(this.#w, mark, end - start);
  }

  #fill(mark: number, records: readonly Uint8Array[], start: number, end: number): void {
    const e = this.#e;
    for (let i = start; i < end; i++) {
      const r = records[i]!;
      const p = e.encodeRecord(this.#w, r.length);
      if (p === 0) {
        e.writerTruncate(this.#w, mark);
        this.#oom();
      }
      if (r.length > 0) this.#view.write(p, r);
    }
    e.encodeRecordsEnd(this.#w, mark, end - start);
  }

  /** Copies both names into scratch memory (queue then topic, `extra` bytes of room after); returns the queue's address. */
  #names(queue: Uint8Array, topic: Uint8Array, extra = 0): number {
    checkName(queue);
    checkName(topic);
    const p = this.#put(queue, topic.length + extra);
    this.#view.write(p + queue.length, topic);
    return p;
  }

  /** Copies `bytes` to scratch memory with `extra` bytes of room after them. */
  #put(bytes: Uint8Array, extra: number): number {
    const need = bytes.length + extra;
    if (need > this.#scratchCap) {
      const cap = Math.max(need, 512);
      const p = this.#e.alloc(cap);
      if (p === 0) this.#oom();
      this.#e.free(this.#scratch);
      this.#scratch = p;
      this.#scratchCap = cap;
    }
    if (bytes.length > 0) this.#view.write(this.#scratch, bytes);
    return this.#scratch;
  }

  #check(status: number): void {
    if (status !== 1) this.#oom();
  }

  #oom(): never {
    throw new TurboError('ERR_NO_MEMORY', 'out of memory in the frame writer');
  }
}

/** The settings block bytes: 4 × f64, u8 overflow, u8 durable, u8 dlqLen, dlq. */
function settingsBytes(s: Settings): Uint8Array {
  const dlq = textEncoder.encode(s.deadLetterTopic);
  const b = new Uint8Array(SETTINGS_FIXED_BYTES + dlq.length);
  const dv = new DataView(b.buffer);
  dv.setFloat64(0, s.leaseMs, true);
  dv.setFloat64(8, s.maxDeliveries, true);
  dv.setFloat64(16, s.maxLength, true);
  dv.setFloat64(24, s.dedupWindowMs, true);
  b[32] = s.overflow;
  b[33] = s.durable;
  b[34] = dlq.length;
  b.set(dlq, SETTINGS_FIXED_BYTES);
  return b;
}

function checkName(name: Uint8Array): void {
  if (name.length === 0 || name.length > MAX_NAME_BYTES) {
    throw new TurboError('ERR_INVALID_ARGUMENT', `a name must be 1 to ${MAX_NAME_BYTES} bytes, got ${name.length}`);
  }
}
