// The per-topic FIFO: a linked list of segments holding message records back to back.
//
// A record is `u32 len` followed by `len` bytes: exactly the wire format of the records
// in PUSH_MANY, MESSAGES and DELIVER frames (docs/protocol.md), so a batch moves from the
// socket into a topic, and from a topic into a reply, with one memory.copy per segment run
// and no per-message allocation. A record never spans two segments.
//
// Segments grow with the topic (256 B for a topic's first segment, doubling up to 64 KiB)
// so that a million topics holding one small message each cost a few hundred bytes each,
// while a busy topic allocates once per tens of kilobytes. An empty topic holds no segment.
//
// Segments and hand-off record blocks count against the queue memory limit (alloc.ts:
// queueAlloc/queueFree; imported here under the plain names).
//
// Every function here runs with the topic's lock held (table.ts: T_LOCK); they never
// take another lock. Multi-producer multi-consumer safety is that lock.
//
// ╒═══════════════ Segment (16 bytes + data) ═══════════════╕
//  +0  u32 next       newer segment, 0 for the tail
//  +4  u32 capacity   bytes in the data area
//  +8  u32 readPos    offset of the oldest unread record
//  +12 u32 writePos   offset where the next record goes
//  +16 data           records [u32 len][len bytes] ...
// ╘═════════════════════════════════════════════════════════╛
// Invariants (topic lock held): length == records between head.readPos and tail.writePos;
// length == 0  <=>  headSeg == tailSeg == 0.

import { queueAlloc as alloc, queueFree as free, BLOCK_HEADER } from "./alloc";
import { T_HEAD_SEG, T_TAIL_SEG, T_LENGTH, T_PUSHED } from "./table";
import { writerEnsure, writerAdvance } from "./codec";

// @ts-ignore: decorator
@inline const S_NEXT: usize = 0;
// @ts-ignore: decorator
@inline const S_CAPACITY: usize = 4;
// @ts-ignore: decorator
@inline const S_READ: usize = 8;
// @ts-ignore: decorator
@inline const S_WRITE: usize = 12;
// @ts-ignore: decorator
@inline const S_DATA: usize = 16;

/** Block sizes of a topic's first segment and the largest regular segment. */
// @ts-ignore: decorator
@inline const FIRST_SEGMENT_BLOCK: usize = 256;
// @ts-ignore: decorator
@inline const MAX_SEGMENT_BLOCK: usize = 65536;
// @ts-ignore: decorator
@inline export const RECORD_HEADER: usize = 4;

function newSegment(minData: usize, prevCapacity: usize): usize {
  let block: usize = prevCapacity == 0
    ? FIRST_SEGMENT_BLOCK
    : min<usize>((prevCapacity + S_DATA + BLOCK_HEADER) << 1, MAX_SEGMENT_BLOCK);
  let capacity = max<usize>(block - BLOCK_HEADER - S_DATA, minData);
  let seg = alloc(S_DATA + capacity);
  if (seg == 0) return 0;
  store<u32>(seg + S_NEXT, 0);
  store<u32>(seg + S_CAPACITY, <u32>capacity);
  store<u32>(seg + S_READ, 0);
  store<u32>(seg + S_WRITE, 0);
  return seg;
}

/** Room for `need` bytes at the tail, adding a segment if needed; 0 when out of memory. */
function tailWithRoom(topic: usize, need: usize): usize {
  let tail = <usize>load<u32>(topic + T_TAIL_SEG);
  if (tail != 0 && <usize>(load<u32>(tail + S_CAPACITY) - load<u32>(tail + S_WRITE)) >= need) return tail;
  let seg = newSegment(need, tail == 0 ? 0 : <usize>load<u32>(tail + S_CAPACITY));
  if (seg == 0) return 0;
  if (tail == 0) store<u32>(topic + T_HEAD_SEG, <u32>seg);
  else store<u32>(tail + S_NEXT, <u32>seg);
  store<u32>(topic + T_TAIL_SEG, <u32>seg);
  return seg;
}

/** Unlinks and frees the drained head segment `seg`. The tail is only drained when the topic is empty. */
// @ts-ignore: decorator
@inline function dropHead(topic: usize, seg: usize): void {
  let next = <usize>load<u32>(seg + S_NEXT);
  store<u32>(topic + T_HEAD_SEG, <u32>next);
  if (next == 0) store<u32>(topic + T_TAIL_SEG, 0);
  free(seg);
}

/** Appends one message. False when out of memory (nothing stored). */
export function fifoAppend(topic: usize, data: usize, len: usize): bool {
  let need = RECORD_HEADER + len;
  let seg = tailWithRoom(topic, need);
  if (seg == 0) return false;
  let at = seg + S_DATA + <usize>load<u32>(seg + S_WRITE);
  store<u32>(at, <u32>len);
  memory.copy(at + RECORD_HEADER, data, len);
  store<u32>(seg + S_WRITE, load<u32>(seg + S_WRITE) + <u32>need);
  atomic.store<u32>(topic + T_LENGTH, load<u32>(topic + T_LENGTH) + 1);
  store<u64>(topic + T_PUSHED, load<u64>(topic + T_PUSHED) + 1);
  return true;
}

/**
 * Appends `count` records laid out back to back at `records` (already validated by the
 * codec: they fill exactly `bytes`). Copies maximal runs that fit the tail segment in one
 * memory.copy. Returns the number of records stored (< count only when out of memory).
 */
export function fifoAppendRecords(topic: usize, records: usize, bytes: usize, count: u32): u32 {
  let done: u32 = 0;
  let p = records;
  let end = records + bytes;
  while (p < end) {
    let first = RECORD_HEADER + <usize>load<u32>(p);
    let seg = tailWithRoom(topic, first);
    if (seg == 0) break;
    let room = <usize>(load<u32>(seg + S_CAPACITY) - load<u32>(seg + S_WRITE));
    // Extend the run while the next record still fits.
    let run = first;
    let n: u32 = 1;
    while (p + run < end) {
      let size = RECORD_HEADER + <usize>load<u32>(p + run);
      if (run + size > room) break;
      run += size;
      n++;
    }
    memory.copy(seg + S_DATA + <usize>load<u32>(seg + S_WRITE), p, run);
    store<u32>(seg + S_WRITE, load<u32>(seg + S_WRITE) + <u32>run);
    p += run;
    done += n;
  }
  atomic.store<u32>(topic + T_LENGTH, load<u32>(topic + T_LENGTH) + done);
  store<u64>(topic + T_PUSHED, load<u64>(topic + T_PUSHED) + <u64>done);
  return done;
}

/** Puts one record back at the front (a message whose consumer died before taking it). */
export function fifoPrepend(topic: usize, record: usize): bool {
  let size = RECORD_HEADER + <usize>load<u32>(record);
  let head = <usize>load<u32>(topic + T_HEAD_SEG);
  if (head != 0 && <usize>load<u32>(head + S_READ) >= size) {
    // The bytes before readPos were already consumed: reuse them.
    let read = load<u32>(head + S_READ) - <u32>size;
    memory.copy(head + S_DATA + <usize>read, record, size);
    store<u32>(head + S_READ, read);
  } else {
    let seg = newSegment(size, 0);
    if (seg == 0) return false;
    memory.copy(seg + S_DATA, record, size);
    store<u32>(seg + S_WRITE, <u32>size);
    store<u32>(seg + S_NEXT, <u32>head);
    store<u32>(topic + T_HEAD_SEG, <u32>seg);
    if (head == 0) store<u32>(topic + T_TAIL_SEG, <u32>seg);
  }
  atomic.store<u32>(topic + T_LENGTH, load<u32>(topic + T_LENGTH) + 1);
  return true;
}

/**
 * Puts `count` records (filling `bytes`) back at the front, in their order: messages a
 * consumer received but did not consume. One new segment holding exactly these records.
 */
export function fifoPrependRecords(topic: usize, records: usize, bytes: usize, count: u32): bool {
  let seg = alloc(S_DATA + bytes);
  if (seg == 0) return false;
  let head = <usize>load<u32>(topic + T_HEAD_SEG);
  store<u32>(seg + S_NEXT, <u32>head);
  store<u32>(seg + S_CAPACITY, <u32>bytes);
  store<u32>(seg + S_READ, 0);
  store<u32>(seg + S_WRITE, <u32>bytes);
  memory.copy(seg + S_DATA, records, bytes);
  store<u32>(topic + T_HEAD_SEG, <u32>seg);
  if (head == 0) store<u32>(topic + T_TAIL_SEG, <u32>seg);
  atomic.store<u32>(topic + T_LENGTH, load<u32>(topic + T_LENGTH) + count);
  return true;
}

/**
 * Moves up to `max` of the oldest records into writer `w` (appended as records) while the
 * bytes written stay within `maxBytes` (the first record is always taken whole, so one
 * message of any legal size can be popped). Returns the number of records moved; fewer
 * than asked when the topic runs out, the byte budget is reached, or the writer cannot grow.
 */
export function fifoPopInto(topic: usize, w: usize, max: u32, maxBytes: usize): u32 {
  let done: u32 = 0;
  let written: usize = 0;
  while (done < max) {
    let seg = <usize>load<u32>(topic + T_HEAD_SEG);
    if (seg == 0) break;
    let read = <usize>load<u32>(seg + S_READ);
    let write = <usize>load<u32>(seg + S_WRITE);
    let base = seg + S_DATA;
    // Collect a run of whole records within this segment, the count and the byte budget.
    let run: usize = 0;
    let n: u32 = 0;
    while (read + run < write && done + n < max) {
      let size = RECORD_HEADER + <usize>load<u32>(base + read + run);
      if ((done + n) > 0 && written + run + size > maxBytes) break;
      run += size;
      n++;
    }
    if (n == 0) break;
    let dst = writerEnsure(w, <u32>run);
    if (dst == 0) break;
    memory.copy(dst, base + read, run);
    writerAdvance(w, <u32>run);
    written += run;
    done += n;
    read += run;
    if (read == write) {
      dropHead(topic, seg);
    } else {
      // Stopped inside this segment: `max` or the byte budget is reached.
      store<u32>(seg + S_READ, <u32>read);
      break;
    }
  }
  atomic.store<u32>(topic + T_LENGTH, load<u32>(topic + T_LENGTH) - done);
  return done;
}

/**
 * Removes the oldest record and copies it into a fresh block ([u32 len][bytes]), for a
 * hand-off to a waiter. Returns 0 if empty or out of memory.
 */
export function fifoTakeOne(topic: usize): usize {
  let seg = <usize>load<u32>(topic + T_HEAD_SEG);
  if (seg == 0) return 0;
  let read = <usize>load<u32>(seg + S_READ);
  let at = seg + S_DATA + read;
  let size = RECORD_HEADER + <usize>load<u32>(at);
  let copy = alloc(size);
  if (copy == 0) return 0;
  memory.copy(copy, at, size);
  read += size;
  if (read == <usize>load<u32>(seg + S_WRITE)) {
    dropHead(topic, seg);
  } else {
    store<u32>(seg + S_READ, <u32>read);
  }
  atomic.store<u32>(topic + T_LENGTH, load<u32>(topic + T_LENGTH) - 1);
  return copy;
}

/** Frees every segment (the topic is being destroyed). */
export function fifoClear(topic: usize): void {
  let seg = <usize>load<u32>(topic + T_HEAD_SEG);
  while (seg != 0) {
    let next = <usize>load<u32>(seg + S_NEXT);
    free(seg);
    seg = next;
  }
  store<u32>(topic + T_HEAD_SEG, 0);
  store<u32>(topic + T_TAIL_SEG, 0);
  atomic.store<u32>(topic + T_LENGTH, 0);
}
