// The client's outgoing buffer: one Wasm writer per connection (assembly/codec.ts), which the
// core's encoders fill with frames, and the JavaScript side that writes message bytes and
// records straight into it - strings encoded once, in place; bytes copied once; no JS -> Wasm
// call per message. Used by src/client/connection.ts and queue.ts; nothing public.
//
// Who writes what (the reasoning is in docs/architecture.md, "The client's encoder"): the core
// writes every frame header, the names and the counts, and seals records frames
// (encodeRecordsEnd patches length and count); JavaScript writes only message data and the
// `[u32 len][bytes]` record of PUSH_MANY, which is the wire format itself (docs/protocol.md).
// test/client/encode.test.ts proves the bytes equal the core encoder's (encodeRecord).
//
// A records run: `begin(room)` takes the writer's end (writerEnsure: one call), records are
// appended in JavaScript, `end()` commits them (writerAdvance: one call). When the room runs
// out, what was written is committed first and the writer grown (it may move, and the memory
// may grow: every view is re-read after a core call).

import type { CoreExports, MemoryView } from '../core/wasm.ts';
import { TurboError } from '../errors.ts';
import { writeUtf8, utf8Length, encodeIntoWriter, type Utf8Writer } from './utf8.ts';

/** Strings longer than this reserve their exact UTF-8 length instead of 3 bytes per unit. */
const EXACT_RESERVE_CHARS = 64 * 1024;

/**
 * Bytes for transport sends are cut from slabs of this size (sends above SLAB_MAX_SEND get their
 * own array): a send hands its bytes over and the client never learns when the transport is
 * done with them, so nothing is reused - but one ArrayBuffer per 256 KiB instead of one per
 * send keeps V8's external-memory bookkeeping, and with it full GCs, several times rarer
 * (the same idea as Node's Buffer pool, for larger sends).
 */
const SLAB_BYTES = 256 * 1024;
const SLAB_MAX_SEND = 64 * 1024;
/** Sends up to this size are plain copies: V8 keeps arrays this small on its heap, cheaper still. */
const ON_HEAP_MAX_SEND = 64;
let slab = new Uint8Array(0);
let slabUsed = 0;

/** A copy of src[start, end) that the caller may hand to a transport for good. */
export function sendCopy(src: Uint8Array, start: number, end: number): Uint8Array {
  const n = end - start;
  if (n <= ON_HEAP_MAX_SEND || n > SLAB_MAX_SEND) return src.slice(start, end);
  if (slabUsed + n > slab.length) {
    slab = new Uint8Array(SLAB_BYTES);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + n);
  slabUsed += (n + 7) & ~7; // 8-byte aligned pieces
  out.set(src.subarray(start, end));
  return out;
}

/** ERR_MESSAGE_TOO_LARGE for a message of `len` bytes over the broker's `max` (queue.ts uses it too). */
export function tooLarge(len: number, max: number): TurboError {
  return new TurboError('ERR_MESSAGE_TOO_LARGE', `message of ${len} bytes is over the broker's maxMessageBytes (${max})`);
}

function noMemory(): TurboError {
  return new TurboError('ERR_NO_MEMORY', 'client out of memory encoding the request');
}

export class Outgoing {
  readonly writer: number;
  readonly #e: CoreExports;
  readonly #view: MemoryView;
  readonly #nativeFor: (memory: Uint8Array) => Utf8Writer;
  /** The memory as one array, and a native UTF-8 writer over it (both renewed when the memory grows). */
  #u8: Uint8Array;
  #native: Utf8Writer;
  /** The records run: committed up to #start, written up to #pos, room up to #end (addresses). */
  #start = 0;
  #pos = 0;
  #end = 0;
  /** The room the run asked for last (growth doubles it). */
  #roomBytes = 0;

  constructor(e: CoreExports, view: MemoryView, writer: number, nativeFor: ((memory: Uint8Array) => Utf8Writer) | undefined) {
    this.#e = e;
    this.#view = view;
    this.writer = writer;
    this.#nativeFor = nativeFor ?? encodeIntoWriter;
    this.#u8 = view.span(1); // (a length of 0: the memory grew and detached the cached array)
    this.#native = this.#nativeFor(this.#u8);
  }

  /** The memory array covering [0, end), renewing the native writer if the memory moved. */
  #span(end: number): Uint8Array {
    const u8 = this.#view.span(end);
    if (u8 !== this.#u8) {
      this.#u8 = u8;
      this.#native = this.#nativeFor(u8);
    }
    return u8;
  }

  /** Writes `len` bytes of message data (`data`, a string of that UTF-8 length or bytes) at `at`. */
  writeData(at: number, data: string | Uint8Array, len: number): void {
    const u8 = this.#span(at + len);
    if (typeof data === 'string') writeUtf8(data, u8, at, this.#native);
    else u8.set(data, at);
  }

  /** Starts a records run at the writer's end with room for `room` bytes. */
  begin(room: number): void {
    const p = this.#e.writerEnsure(this.writer, room);
    if (p === 0) throw noMemory();
    this.#start = this.#pos = p;
    this.#end = p + room;
    this.#roomBytes = room;
    this.#span(this.#end);
  }

  /** Commits the run's records to the writer. */
  end(): void {
    this.#e.writerAdvance(this.writer, this.#pos - this.#start);
    this.#start = this.#pos;
  }

  /** Room for `n` more bytes in the run: commits, grows the writer (doubling), re-reads the views. */
  #room(n: number): void {
    this.end();
    const want = Math.max(n, 2 * this.#roomBytes);
    this.begin(want);
  }

  /**
   * Appends the records `[u32 len][data]` of list[from..to) (strings and Uint8Arrays) to one
   * frame, while it has room for them under `budget` bytes of records (the first record is
   * always taken); returns the index of the first item not appended (`to`: all were). Each
   * item is checked (its type, its size against `max`) before it counts; a bad one throws,
   * and the caller undoes the frame.
   *
   * One loop over the whole frame, with the write position, the end of the room and the
   * memory array in locals, so the frame's state is in one place. (It measured the same as a
   * call per record, 17.5 ns a message against a fake transport: what the push path pays per
   * message is the loop itself, most of it `set` of each item, about 8 ns for 16 B.)
   */
  putRecords(list: readonly unknown[], from: number, to: number, max: number, budget: number): number {
    let pos = this.#pos, end = this.#end, u8 = this.#u8;
    let frameBytes = 0, k = from;
    for (; k < to; k++) {
      const item = list[k];
      let len: number;
      if (item instanceof Uint8Array) {
        len = item.length;
        if (len > max) throw tooLarge(len, max);
        if (k > from && frameBytes + 4 + len > budget) break;
        if (pos + 4 + len > end) {
          this.#pos = pos;
          this.#room(4 + len);
          pos = this.#pos; end = this.#end; u8 = this.#u8;
        }
        u8.set(item, pos + 4);
      } else if (typeof item === 'string') {
        if (item.length > max) throw tooLarge(utf8Length(item), max);
        let reserve = item.length * 3;
        if (item.length > EXACT_RESERVE_CHARS) reserve = utf8Length(item);
        if (pos + 4 + reserve > end) {
          this.#pos = pos;
          this.#room(4 + reserve);
          pos = this.#pos; end = this.#end; u8 = this.#u8;
        }
        len = writeUtf8(item, u8, pos + 4, this.#native);
        if (len > max) throw tooLarge(len, max);
        if (k > from && frameBytes + 4 + len > budget) break; // (written past pos: not counted)
      } else {
        throw new TurboError('ERR_INVALID_ARGUMENT', 'data must be a string or a Uint8Array');
      }
      u8[pos] = len;
      u8[pos + 1] = len >>> 8;
      u8[pos + 2] = len >>> 16;
      u8[pos + 3] = len >>> 24;
      pos += 4 + len;
      frameBytes += 4 + len;
    }
    this.#pos = pos;
    return k;
  }
}
