// Thin JS wrappers over the Wasm frame codec (assembly/codec.ts), used by clients and
// tests; the broker's session calls the same exports directly. The codec does the work:
// these classes move bytes in and out through the core's MemoryView and read descriptors.
//
// Hot path rules: FrameDecoder's accessors read one descriptor field each (no object per
// frame; `read(i, out)` fills a caller-owned object). Names are passed pre-encoded
// (encodeName) so a client encodes each queue/topic name once.

import type { Core, CoreExports, MemoryView } from '../../src/core/wasm.ts';
import { TurboError } from '../../src/errors.ts';
import {
  DESC_SIZE, DESC_OP, DESC_REQUEST_ID, DESC_QUEUE_PTR, DESC_QUEUE_LEN, DESC_TOPIC_PTR,
  DESC_TOPIC_LEN, DESC_DATA_PTR, DESC_DATA_LEN, DESC_ARG0, DESC_ARG1, ErrorCode, MAX_NAME_BYTES,
  MAX_ERROR_TEXT_BYTES, Op, PROTOCOL_VERSION, HEADER_BYTES,
} from '../../src/protocol.ts';

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
}

export function newFrameFields(): FrameFields {
  return { op: 0, flags: 0, requestId: 0, queuePtr: 0, queueLen: 0, topicPtr: 0, topicLen: 0, dataPtr: 0, dataLen: 0, arg0: 0, arg1: 0 };
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

  /** Copies of the records of a MESSAGES / DELIVER / PUSH_MANY / RETURN descriptor, in order. */
  records(i: number): Uint8Array[] {
    const count = this.arg0(i);
    const out = new Array<Uint8Array>(count);
    const v = this.#view;
    let p = this.dataPtr(i);
    for (let k = 0; k < count; k++) {
      const len = v.u32(p);
      out[k] = v.copy(p + 4, len);
      p += 4 + len;
    }
    return out;
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

  /** MESSAGES with these records. */
  messages(requestId: number, records: readonly Uint8Array[]): void {
    this.#records(Op.MESSAGES, requestId, records);
  }

  /** DELIVER with these records. */
  deliver(requestId: number, records: readonly Uint8Array[]): void {
    this.#records(Op.DELIVER, requestId, records);
  }

  // ── Requests ──

  hello(requestId: number, minVersion = PROTOCOL_VERSION, maxVersion = PROTOCOL_VERSION): void {
    this.#check(this.#e.encodeHello(this.#w, requestId, minVersion, maxVersion));
  }

  ping(requestId: number): void { this.#check(this.#e.encodePing(this.#w, requestId)); }

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

  /** RETURN of records[start..end): messages received but not consumed, back to the front. */
  returnRecords(requestId: number, queue: Uint8Array, topic: Uint8Array, records: readonly Uint8Array[], start = 0, end = records.length): void {
    const e = this.#e;
    const q = this.#names(queue, topic);
    const mark = e.encodeReturnBegin(this.#w, requestId, q, queue.length, q + queue.length, topic.length);
    if (mark < 0) this.#oom();
    this.#fill(mark, records, start, end);
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

  subscribe(requestId: number, queue: Uint8Array, topic: Uint8Array, prefetch: number, options: number): void {
    const q = this.#names(queue, topic);
    this.#check(this.#e.encodeSubscribe(this.#w, requestId, q, queue.length, q + queue.length, topic.length, prefetch, options));
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

  #records(op: number, requestId: number, records: readonly Uint8Array[]): void {
    const mark = this.#e.encodeRecordsBegin(this.#w, op, requestId);
    if (mark < 0) this.#oom();
    this.#fill(mark, records, 0, records.length);
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

  /** Copies both names into scratch memory (queue then topic); returns the queue's address. */
  #names(queue: Uint8Array, topic: Uint8Array): number {
    checkName(queue);
    checkName(topic);
    const p = this.#put(queue, topic.length);
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

function checkName(name: Uint8Array): void {
  if (name.length === 0 || name.length > MAX_NAME_BYTES) {
    throw new TurboError('ERR_INVALID_ARGUMENT', `a name must be 1 to ${MAX_NAME_BYTES} bytes, got ${name.length}`);
  }
}
