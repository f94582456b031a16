// The per-topic FIFO of ready messages: a linked list of segments holding stored records
// (record.ts) back to back. Storage only: who may push or pop, waiters, leases and limits
// are topic.ts's business.
//
// A stored record is exactly what a MESSAGES/DELIVER reply carries, so a run of records
// moves from a topic into a reply with one memory.copy (then one header word per record
// is bumped: the delivery count). Pushes arrive as short wire records ([u32 len][data])
// and get their header (id, meta) as they are copied in. A record never spans two segments.
//
// Segments grow with the topic (256 B for a topic's first segment, doubling up to 64 KiB)
// so that a million topics holding one small message each cost a few hundred bytes each,
// while a busy topic allocates once per tens of kilobytes. An empty topic holds no segment.
// Segments count against the message storage limit (alloc.ts queueAlloc/queueFree).
//
// Every function here runs with the topic's lock held (table.ts: T_LOCK) or with the
// topic unreachable by others; they never take a lock.
//
// ╒═══════════════ Segment (16 bytes + data) ═══════════════╕
//  +0  u32 next       newer segment, 0 for the tail
//  +4  u32 capacity   bytes in the data area
//  +8  u32 readPos    offset of the oldest unread record
//  +12 u32 writePos   offset where the next record goes
//  +16 data           stored records ...
// ╘═════════════════════════════════════════════════════════╛
// Invariants (topic lock held), asserted in the debug build by fifoCheck:
//   length == records between head.readPos and tail.writePos;
//   length == 0  <=>  headSeg == tailSeg == 0;
//   every linked segment holds at least one unread record (readPos < writePos): an empty
//   segment left in the list would make `length` count records no pop can reach.

import { queueAlloc as alloc, queueFree as free, BLOCK_HEADER } from "./alloc";
import { T_HEAD_SEG, T_TAIL_SEG, T_LENGTH, T_PUSHED } from "./table";
import { writerEnsure, writerAdvance } from "./codec";
import { RECORD_HEADER, PUSH_RECORD_HEADER, R_ID, recordSize, putRecordHeader, markDelivered } from "./record";
import { removeAdd } from "./journal";
import { invariant, DEBUG } from "./debug";
import { copyBytes } from "./bytes";

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

/** The invariants above (cheap ones only: the ends of the list), in the debug build. */
export function fifoCheck(topic: usize): void {
  if (!DEBUG) return;
  let head = <usize>load<u32>(topic + T_HEAD_SEG);
  let tail = <usize>load<u32>(topic + T_TAIL_SEG);
  let length = load<u32>(topic + T_LENGTH);
  invariant((length == 0) == (head == 0));
  invariant((head == 0) == (tail == 0));
  if (head != 0) {
    invariant(load<u32>(head + S_READ) < load<u32>(head + S_WRITE));
    invariant(load<u32>(tail + S_WRITE) <= load<u32>(tail + S_CAPACITY));
    invariant(load<u32>(tail + S_NEXT) == 0);
  }
}

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

// @ts-ignore: decorator
@inline function tailRoom(tail: usize): usize {
  return tail == 0 ? 0 : <usize>(load<u32>(tail + S_CAPACITY) - load<u32>(tail + S_WRITE));
}

/** Links `seg` as the new tail. */
// @ts-ignore: decorator
@inline function linkTail(topic: usize, seg: usize): void {
  let tail = <usize>load<u32>(topic + T_TAIL_SEG);
  if (tail == 0) store<u32>(topic + T_HEAD_SEG, <u32>seg);
  else store<u32>(tail + S_NEXT, <u32>seg);
  store<u32>(topic + T_TAIL_SEG, <u32>seg);
}

/** Unlinks and frees the drained head segment `seg`. The tail is only drained when the topic is empty. */
// @ts-ignore: decorator
@inline function dropHead(topic: usize, seg: usize): void {
  let next = <usize>load<u32>(seg + S_NEXT);
  store<u32>(topic + T_HEAD_SEG, <u32>next);
  if (next == 0) store<u32>(topic + T_TAIL_SEG, 0);
  free(seg);
}

/** Takes the next id of the topic. */
// @ts-ignore: decorator
@inline export function nextId(topic: usize): u64 {
  let id = load<u64>(topic + T_PUSHED);
  store<u64>(topic + T_PUSHED, id + 1);
  return id;
}

/**
 * Stores the topic's ready count. Readers outside the topic lock (opLength, isIdle) load it
 * atomically, so it is stored atomically - a full barrier on x86 (xchg) - except when the
 * caller holds the topic exclusively (topic.ts `exclusive`: segment lock held, no
 * references): then nobody can read it before the segment lock's release publishes it.
 */
// @ts-ignore: decorator
@inline function setLength(topic: usize, length: u32, exclusive: bool): void {
  if (exclusive) store<u32>(topic + T_LENGTH, length);
  else atomic.store<u32>(topic + T_LENGTH, length);
}

/** Appends one message with a new id. False when out of memory (nothing stored). `exclusive`: see setLength. */
export function fifoAppend(topic: usize, data: usize, len: usize, exclusive: bool = false): bool {
  let need = RECORD_HEADER + len;
  let seg = <usize>load<u32>(topic + T_TAIL_SEG);
  if (tailRoom(seg) < need) {
    seg = newSegment(need, seg == 0 ? 0 : <usize>load<u32>(seg + S_CAPACITY));
    if (seg == 0) return false;
    linkTail(topic, seg);
  }
  let at = seg + S_DATA + <usize>load<u32>(seg + S_WRITE);
  putRecordHeader(at, len, 0, nextId(topic));
  copyBytes(at + RECORD_HEADER, data, len);
  store<u32>(seg + S_WRITE, load<u32>(seg + S_WRITE) + <u32>need);
  setLength(topic, load<u32>(topic + T_LENGTH) + 1, exclusive);
  return true;
}

/** Appends a stored record block (delayed message now due, dead letter) as it is. */
export function fifoAppendRecord(topic: usize, record: usize): bool {
  let need = recordSize(record);
  let seg = <usize>load<u32>(topic + T_TAIL_SEG);
  if (tailRoom(seg) < need) {
    seg = newSegment(need, seg == 0 ? 0 : <usize>load<u32>(seg + S_CAPACITY));
    if (seg == 0) return false;
    linkTail(topic, seg);
  }
  memory.copy(seg + S_DATA + <usize>load<u32>(seg + S_WRITE), record, need);
  store<u32>(seg + S_WRITE, load<u32>(seg + S_WRITE) + <u32>need);
  atomic.store<u32>(topic + T_LENGTH, load<u32>(topic + T_LENGTH) + 1);
  return true;
}

/**
 * Appends `count` wire push records ([u32 len][data], validated by the codec, filling
 * `bytes` exactly), giving each a new id. All or nothing: the memory is found first - the
 * tail's free room, then at most one new segment for the rest - so out of memory stores
 * nothing (a refused batch that a producer retries must not leave a prefix behind).
 */
export function fifoAppendWire(topic: usize, records: usize, bytes: usize, count: u32): bool {
  let tail = <usize>load<u32>(topic + T_TAIL_SEG);
  let room = tailRoom(tail);
  // Records that fit the tail's room, in order; the rest go to one new segment.
  let p = records;
  let end = records + bytes;
  let inTail: usize = 0;
  while (p < end) {
    let size = RECORD_HEADER + <usize>load<u32>(p);
    if (inTail + size > room) break;
    inTail += size;
    p += PUSH_RECORD_HEADER + <usize>load<u32>(p);
  }
  let split = p;
  let rest: usize = 0; // stored bytes of the records that go to the new segment
  if (split < end) {
    for (let r = split; r < end; r += PUSH_RECORD_HEADER + <usize>load<u32>(r)) rest += RECORD_HEADER + <usize>load<u32>(r);
  }
  let seg: usize = 0;
  if (split < end) {
    seg = newSegment(rest, tail == 0 ? 0 : <usize>load<u32>(tail + S_CAPACITY));
    if (seg == 0) return false;
  }
  // Commit: nothing below can fail.
  let id = load<u64>(topic + T_PUSHED);
  p = records;
  if (inTail > 0) {
    let at = tail + S_DATA + <usize>load<u32>(tail + S_WRITE);
    while (p < split) {
      let len = <usize>load<u32>(p);
      putRecordHeader(at, len, 0, id++);
      memory.copy(at + RECORD_HEADER, p + PUSH_RECORD_HEADER, len);
      at += RECORD_HEADER + len;
      p += PUSH_RECORD_HEADER + len;
    }
    store<u32>(tail + S_WRITE, load<u32>(tail + S_WRITE) + <u32>inTail);
  }
  if (seg != 0) {
    let at = seg + S_DATA;
    while (p < end) {
      let len = <usize>load<u32>(p);
      putRecordHeader(at, len, 0, id++);
      memory.copy(at + RECORD_HEADER, p + PUSH_RECORD_HEADER, len);
      at += RECORD_HEADER + len;
      p += PUSH_RECORD_HEADER + len;
    }
    store<u32>(seg + S_WRITE, <u32>rest);
    linkTail(topic, seg);
  }
  store<u64>(topic + T_PUSHED, id);
  atomic.store<u32>(topic + T_LENGTH, load<u32>(topic + T_LENGTH) + count);
  return true;
}

/**
 * Puts one stored record back at the front (a lease ended, a dead waiter's message). A new
 * head segment is filled from its end backwards, and grows like tail segments do, so many
 * records returned one by one (a million leases expiring) pack densely instead of taking a
 * segment each.
 */
export function fifoPrepend(topic: usize, record: usize): bool {
  let size = recordSize(record);
  let head = <usize>load<u32>(topic + T_HEAD_SEG);
  if (head != 0 && <usize>load<u32>(head + S_READ) >= size) {
    // The bytes before readPos were already consumed (or left free for this): reuse them.
    let read = load<u32>(head + S_READ) - <u32>size;
    memory.copy(head + S_DATA + <usize>read, record, size);
    store<u32>(head + S_READ, read);
  } else {
    let seg = newSegment(size, head == 0 ? 0 : <usize>load<u32>(head + S_CAPACITY));
    if (seg == 0) return false;
    let capacity = load<u32>(seg + S_CAPACITY);
    memory.copy(seg + S_DATA + <usize>capacity - size, record, size);
    store<u32>(seg + S_READ, capacity - <u32>size);
    store<u32>(seg + S_WRITE, capacity);
    store<u32>(seg + S_NEXT, <u32>head);
    store<u32>(topic + T_HEAD_SEG, <u32>seg);
    if (head == 0) store<u32>(topic + T_TAIL_SEG, <u32>seg);
  }
  atomic.store<u32>(topic + T_LENGTH, load<u32>(topic + T_LENGTH) + 1);
  return true;
}

/** A new unlinked segment holding exactly the stored records at `records` (`bytes`); 0 if out of memory. */
function storedSegment(records: usize, bytes: usize): usize {
  let seg = alloc(S_DATA + bytes);
  if (seg == 0) return 0;
  store<u32>(seg + S_NEXT, 0);
  store<u32>(seg + S_CAPACITY, <u32>bytes);
  store<u32>(seg + S_READ, 0);
  store<u32>(seg + S_WRITE, <u32>bytes);
  memory.copy(seg + S_DATA, records, bytes);
  return seg;
}

/**
 * Puts `count` >= 1 stored records (filling `bytes`) back at the front, in their order:
 * messages a consumer received but did not consume. One new segment holding exactly these.
 */
export function fifoPrependStored(topic: usize, records: usize, bytes: usize, count: u32): bool {
  invariant(count > 0 && bytes >= RECORD_HEADER);
  let seg = storedSegment(records, bytes);
  if (seg == 0) return false;
  let head = <usize>load<u32>(topic + T_HEAD_SEG);
  store<u32>(seg + S_NEXT, <u32>head);
  store<u32>(topic + T_HEAD_SEG, <u32>seg);
  if (head == 0) store<u32>(topic + T_TAIL_SEG, <u32>seg);
  atomic.store<u32>(topic + T_LENGTH, load<u32>(topic + T_LENGTH) + count);
  return true;
}

/**
 * Appends `count` >= 1 stored records (filling `bytes`) at the back, ids and meta as they
 * are: messages recovered from the log (src/storage/recovery.ts hands them out in chunks,
 * in id order). One new segment holding exactly these.
 */
export function fifoAppendStored(topic: usize, records: usize, bytes: usize, count: u32): bool {
  invariant(count > 0 && bytes >= RECORD_HEADER);
  let seg = storedSegment(records, bytes);
  if (seg == 0) return false;
  linkTail(topic, seg);
  atomic.store<u32>(topic + T_LENGTH, load<u32>(topic + T_LENGTH) + count);
  return true;
}

/**
 * Moves up to `max` of the oldest records into writer `w` (appended as stored records,
 * each with one more delivery) while the bytes written stay within `maxBytes` (the first
 * record is always taken whole, so one message of any legal size can be popped). Returns
 * the number moved; fewer than asked when the topic runs out, the byte budget is reached,
 * or the writer cannot grow.
 */
export function fifoPopInto(topic: usize, w: usize, max: u32, maxBytes: usize, exclusive: bool = false): u32 {
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
      let size = recordSize(base + read + run);
      if ((done + n) > 0 && written + run + size > maxBytes) break;
      run += size;
      n++;
    }
    if (n == 0) break;
    let dst = writerEnsure(w, <u32>run);
    if (dst == 0) break;
    copyBytes(dst, base + read, run);
    markDelivered(dst, n);
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
  setLength(topic, load<u32>(topic + T_LENGTH) - done, exclusive);
  return done;
}

/** Size of the oldest record (0 if empty), to budget a pop before taking it. */
export function fifoPeekSize(topic: usize): usize {
  let seg = <usize>load<u32>(topic + T_HEAD_SEG);
  if (seg == 0) return 0;
  return recordSize(seg + S_DATA + <usize>load<u32>(seg + S_READ));
}

/**
 * Removes the oldest record and copies it into a fresh block (a stored record), for a
 * hand-off or a lease. Returns 0 if empty or out of memory (then nothing is removed).
 */
export function fifoTakeOne(topic: usize): usize {
  let seg = <usize>load<u32>(topic + T_HEAD_SEG);
  if (seg == 0) return 0;
  let read = <usize>load<u32>(seg + S_READ);
  let at = seg + S_DATA + read;
  let size = recordSize(at);
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

/**
 * Drops the `n` oldest records (overflow 'drop-oldest'); returns how many were dropped.
 * `journal`: each dropped id goes into the REMOVE record being built (journal.ts).
 */
export function fifoDropOldest(topic: usize, n: u32, journal: bool): u32 {
  let done: u32 = 0;
  while (done < n) {
    let seg = <usize>load<u32>(topic + T_HEAD_SEG);
    if (seg == 0) break;
    let read = <usize>load<u32>(seg + S_READ);
    let write = <usize>load<u32>(seg + S_WRITE);
    while (read < write && done < n) {
      if (journal) removeAdd(load<u64>(seg + S_DATA + read, R_ID));
      read += recordSize(seg + S_DATA + read);
      done++;
    }
    if (read == write) dropHead(topic, seg);
    else store<u32>(seg + S_READ, <u32>read);
  }
  atomic.store<u32>(topic + T_LENGTH, load<u32>(topic + T_LENGTH) - done);
  return done;
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
