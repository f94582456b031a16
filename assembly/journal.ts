// The journal: every change the core makes to a durable queue's messages, written as log
// records (src/storage/format.ts, docs/durability.md) into this thread's journal writer.
//
// Why the core writes them: many changes happen inside the core, not at a request's
// boundary - a lease expires, a message is dead-lettered, maxLength drops the oldest, a
// push is handed straight to a waiter on another thread - and only the core knows the ids
// it assigned under the topic's lock. So each change appends its record here at the moment
// it is made, and JS (src/core/thread.ts persist()) moves the bytes to the thread's
// LogWriter before any reply that depends on them is sent. WebAssembly cannot fsync; it
// only has to say what happened.
//
// The journal is per thread (a Wasm global: thread-local state, never shared), so writing
// it needs no lock and can be done under a topic lock; records of one topic written by
// several threads are ordered by id at recovery, not by position (docs/durability.md).
//
// Records are the log's, byte for byte, except the crc32 word, which is left 0 and filled
// in by LogWriter.appendJournal() with zlib.crc32 (JS has it; the core does not need one):
//
//  [u32 length][u32 crc = 0][u8 type][u8 flags][u8 qlen][u8 tlen][queue][topic][body]
//
//  PUSH   (1) flags bit 0: dueAt      body: [f64 expiresAt][u8 dl][dedupId] (bit 1), [f64 dueAt] (bit 0),
//             flags bit 1: dedupId          stored records [len][meta][id][data]...
//  REMOVE (2)                         body: (u64 firstId, u32 count)...
//  META   (3) flags bit 0: dueAt      body: u64 id, u32 meta, [f64 dueAt]
//  DELIVERED (8)                      body: (u64 id, u32 meta)...: leased deliveries (their new counts)
//
// A push with a dedupId carries it in its own PUSH record (bit 1), not in a record of its
// own: one record, one checksum, so a torn write can never keep the push without its
// dedupId (a retry would store it twice) or the dedupId without the push (the retry would
// be refused and the message lost). (Compaction writes windows still open after their
// messages are gone as DEDUP records, type 7.)
//
// Out of memory for the journal: the change is made all the same (refusing it now could
// lose more, e.g. an expiry) and `journalLost` counts it; JS reports the log as failed
// (ERR_STORAGE) rather than acknowledge anything as durable.

import { writerEnsure, writerAdvance, writerLength, writerTruncate, writerData } from "./codec";
import { T_QUEUE, T_QUEUE_LEN, T_TOPIC_LEN, T_NAMES } from "./table";
import { queueFlags, Q_DURABLE_SET, Q_DURABLE } from "./queues";
import { RECORD_HEADER, PUSH_RECORD_HEADER, R_ID, recordSize } from "./record";
import { threadSlot, SLOT_JOURNALED, SLOT_LOGGED, SLOT_LOGGED_WAITERS, H_THREAD_BITS, MAX_THREADS } from "./layout";
import { threadId } from "./thread";

// @ts-ignore: decorator
@inline const J_PUSH: u8 = 1;
// @ts-ignore: decorator
@inline const J_REMOVE: u8 = 2;
// @ts-ignore: decorator
@inline const J_META: u8 = 3;
// @ts-ignore: decorator
@inline const J_DELIVERED: u8 = 8;
// @ts-ignore: decorator
@inline const J_FLAG_DUE: u8 = 1;
// @ts-ignore: decorator
@inline const J_FLAG_DEDUP: u8 = 2;
// @ts-ignore: decorator
@inline const J_HEADER: usize = 12;
// @ts-ignore: decorator
@inline const RANGE_BYTES: usize = 12;

/** This thread's journal writer (codec.ts writer), 0 when the broker has no data directory. */
let journal: usize = 0;
/** This thread's `journaled` word (layout.ts ThreadSlot), set with the journal. */
let journaledWord: usize = 0;
/**
 * This thread made a change, or gave an answer, about messages another thread may have
 * journaled and not yet written (a removal, a delivery, a nack, a duplicate refused):
 * its replies must wait for the other threads' logs (logMarksBehind). A push of its own
 * does not set it: a push depends on no other thread's records.
 */
let dependsOnPeers: bool = false;
/** Changes that could not be journaled for lack of memory. */
let journalLost: u32 = 0;

// The dedupId the next PUSH record carries (journalDedupNext .. journalDedupClear), thread-local.
let dedupPtr: usize = 0;
let dedupLen: usize = 0;
let dedupExpires: f64 = 0;

// The DELIVERED record being built (deliveredBegin .. deliveredEnd), thread-local.
let deliveredMark: u32 = 0;
let deliveredOpen: bool = false;
let deliveredCount: u32 = 0;

// The REMOVE record being built (removeBegin .. removeEnd), thread-local.
let removeMark: u32 = 0;
let removeOpen: bool = false;
let removeFirst: u64 = 0;
let removeCount: u32 = 0;

/** Turns journaling on for this thread (writer `w`), or off (0). */
export function journalSet(w: usize): void {
  journal = w;
  journaledWord = threadSlot(threadId) + SLOT_JOURNALED;
}

/** The journal writer's bytes (for JS to move to the log, then writerReset). */
export function journalLength(): u32 {
  return journal == 0 ? 0 : writerLength(journal);
}

export function journalData(): usize {
  return journal == 0 ? 0 : writerData(journal);
}

/** Changes lost for lack of memory since the last call (then 0). */
export function journalTakeLost(): u32 {
  let n = journalLost;
  journalLost = 0;
  return n;
}

/**
 * Whether changes to `topic`'s messages are journaled: this broker has a data directory
 * and the topic's queue is durable (the default with one, unless configured durable: false).
 */
// @ts-ignore: decorator
@inline export function journaled(topic: usize): bool {
  return queueIsDurable(<usize>load<u32>(topic + T_QUEUE));
}

/** Whether queue record `queue` is durable on this broker (see journaled). */
// @ts-ignore: decorator
@inline export function queueIsDurable(queue: usize): bool {
  if (journal == 0) return false;
  let flags = queueFlags(queue);
  return (flags & Q_DURABLE_SET) == 0 || (flags & Q_DURABLE) != 0;
}

/**
 * The next PUSH record this thread journals (the push of opPushEx) carries dedupId (d, dl),
 * remembered until `expiresAt`. Cleared by that record, or by journalDedupClear.
 */
export function journalDedupNext(d: usize, dl: usize, expiresAt: f64): void {
  dedupPtr = d;
  dedupLen = dl;
  dedupExpires = expiresAt;
}

export function journalDedupClear(): void {
  dedupLen = 0;
}

/** Writes a record header for `topic` with `body` bytes after it; returns the body's address, 0 if out of memory. */
function begin(topic: usize, type: u8, flags: u8, body: usize): usize {
  let ql = <usize>load<u8>(topic + T_QUEUE_LEN);
  let tl = <usize>load<u8>(topic + T_TOPIC_LEN);
  // A push's dedupId goes first in its body (see the top of this file).
  let dl = type == J_PUSH ? dedupLen : 0;
  if (dl > 0) {
    flags |= J_FLAG_DEDUP;
    body += 9 + dl;
    dedupLen = 0;
  }
  let length = J_HEADER + ql + tl + body;
  let p = writerEnsure(journal, <u32>length);
  if (p == 0) {
    journalLost++;
    return 0;
  }
  store<u32>(p, <u32>length);
  store<u32>(p, 0, 4);
  store<u8>(p, type, 8);
  store<u8>(p, flags, 9);
  store<u8>(p, <u8>ql, 10);
  store<u8>(p, <u8>tl, 11);
  memory.copy(p + J_HEADER, topic + T_NAMES, ql + tl);
  writerAdvance(journal, <u32>length);
  // Published before the topic's lock is released: a thread that sees this change (pops
  // the message) sees the count too, and waits until this thread's log has written it.
  atomic.store<i32>(journaledWord, load<i32>(journaledWord) + 1);
  let at = p + J_HEADER + ql + tl;
  if (dl > 0) {
    store<f64>(at, dedupExpires);
    store<u8>(at, <u8>dl, 8);
    memory.copy(at + 9, dedupPtr, dl);
    at += 9 + dl;
  }
  return at;
}

/** PUSH of one message (data, len) with id `id`, ready now. */
export function journalPushOne(topic: usize, data: usize, len: usize, meta: u32, id: u64): void {
  let p = begin(topic, J_PUSH, 0, RECORD_HEADER + len);
  if (p == 0) return;
  store<u32>(p, <u32>len);
  store<u32>(p, meta, 4);
  store<u64>(p, id, R_ID);
  memory.copy(p + RECORD_HEADER, data, len);
}

/** PUSH of `count` wire records ([u32 len][data], filling `bytes`) with ids firstId.. in order. */
export function journalPushWire(topic: usize, records: usize, bytes: usize, count: u32, firstId: u64): void {
  let body = bytes + <usize>count * (RECORD_HEADER - PUSH_RECORD_HEADER);
  let p = begin(topic, J_PUSH, 0, body);
  if (p == 0) return;
  let src = records;
  let end = records + bytes;
  let id = firstId;
  while (src < end) {
    let len = <usize>load<u32>(src);
    store<u32>(p, <u32>len);
    store<u32>(p, 0, 4);
    store<u64>(p, id++, R_ID);
    memory.copy(p + RECORD_HEADER, src + PUSH_RECORD_HEADER, len);
    p += RECORD_HEADER + len;
    src += PUSH_RECORD_HEADER + len;
  }
}

/** PUSH of stored records (filling `bytes`) as they are, due at `due` when `due` > 0. */
export function journalPushStored(topic: usize, records: usize, bytes: usize, due: f64): void {
  let p = begin(topic, J_PUSH, due > 0 ? J_FLAG_DUE : 0, bytes + (due > 0 ? 8 : 0));
  if (p == 0) return;
  if (due > 0) {
    store<f64>(p, due);
    p += 8;
  }
  memory.copy(p, records, bytes);
}

/**
 * PUSH of `count` stored-record blocks (an array of u32 pointers at `blocks`), all due at
 * `due`. Returns the journal's length before it (for journalUndo), or -1 when not written.
 */
export function journalPushBlocks(topic: usize, blocks: usize, count: u32, due: f64): i64 {
  let body: usize = 8;
  for (let i: u32 = 0; i < count; i++) body += recordSize(<usize>load<u32>(blocks + (<usize>i << 2)));
  let mark = <i64>writerLength(journal);
  let p = begin(topic, J_PUSH, J_FLAG_DUE, body);
  if (p == 0) return -1;
  store<f64>(p, due);
  p += 8;
  for (let i: u32 = 0; i < count; i++) {
    let block = <usize>load<u32>(blocks + (<usize>i << 2));
    let size = recordSize(block);
    memory.copy(p, block, size);
    p += size;
  }
  return mark;
}

/** Takes back what was journaled since `mark` (the change it described did not happen). */
export function journalUndo(mark: i64): void {
  if (mark >= 0) writerTruncate(journal, <u32>mark);
}

/** META: message `id`'s lease ended without ack; it is ready again (due <= 0) or due at `due`. */
export function journalMeta(topic: usize, id: u64, meta: u32, due: f64): void {
  dependsOnPeers = true;
  let p = begin(topic, J_META, due > 0 ? J_FLAG_DUE : 0, due > 0 ? 20 : 12);
  if (p == 0) return;
  store<u64>(p, id);
  store<u32>(p, meta, 8);
  if (due > 0) store<f64>(p, due, 12);
}

// ── DELIVERED, built message by message ─────────────────────────────────────────────
//
// A leased delivery changes nothing on disk but the message's deliveries count. It is
// journaled all the same, so that a message in flight when the broker dies comes back with
// that delivery counted (maxDeliveries holds across crashes, as RabbitMQ's quorum queues and
// SQS's receive count do). One record per leased pop, one entry per message.

/** Starts a DELIVERED record for `topic` (nothing if it is not journaled); add with deliveredAdd, finish with deliveredEnd. */
export function deliveredBegin(topic: usize): void {
  deliveredOpen = false;
  if (!journaled(topic)) return;
  dependsOnPeers = true;
  deliveredMark = writerLength(journal);
  deliveredOpen = begin(topic, J_DELIVERED, 0, 0) != 0;
  deliveredCount = 0;
}

/** Message `id` was delivered under a lease; `meta` holds its new deliveries count. */
export function deliveredAdd(id: u64, meta: u32): void {
  if (!deliveredOpen) return;
  if (!appendEntry(deliveredMark, id, meta)) {
    deliveredOpen = false;
    return;
  }
  deliveredCount++;
}

/**
 * Appends a (u64, u32) entry to the record that starts at journal offset `mark` (the last
 * record: REMOVE ranges, DELIVERED entries), growing its length. Out of memory: drops the
 * whole record (never a partial one), counts the change lost, returns false.
 */
function appendEntry(mark: u32, a: u64, b: u32): bool {
  let p = writerEnsure(journal, <u32>RANGE_BYTES);
  if (p == 0) {
    writerTruncate(journal, mark);
    journalLost++;
    return false;
  }
  store<u64>(p, a);
  store<u32>(p, b, 8);
  writerAdvance(journal, <u32>RANGE_BYTES);
  let rec = writerData(journal) + <usize>mark;
  store<u32>(rec, load<u32>(rec) + <u32>RANGE_BYTES);
  return true;
}

export function deliveredEnd(): void {
  if (!deliveredOpen) return;
  deliveredOpen = false;
  if (deliveredCount == 0) writerTruncate(journal, deliveredMark);
}

// ── REMOVE, built id by id (consecutive ids become one range) ────────────────────────

/** Starts a REMOVE record for `topic`; add ids with removeAdd, finish with removeEnd. */
export function removeBegin(topic: usize): void {
  dependsOnPeers = true;
  removeMark = writerLength(journal);
  removeOpen = begin(topic, J_REMOVE, 0, 0) != 0;
  removeCount = 0;
}

export function removeAdd(id: u64): void {
  if (!removeOpen) return;
  if (removeCount > 0 && id == removeFirst + <u64>removeCount && removeCount < 0xFFFFFFFF) {
    removeCount++;
    return;
  }
  flushRange();
  removeFirst = id;
  removeCount = 1;
}

function flushRange(): void {
  if (removeCount == 0) return;
  if (!appendEntry(removeMark, removeFirst, removeCount)) removeOpen = false;
  removeCount = 0;
}

export function removeEnd(): void {
  if (!removeOpen) return;
  flushRange();
  if (!removeOpen) return;
  removeOpen = false;
  // A REMOVE with no range says nothing: take it back.
  let rec = writerData(journal) + <usize>removeMark;
  if (<usize>load<u32>(rec) == J_HEADER + <usize>load<u8>(rec, 10) + <usize>load<u8>(rec, 11)) writerTruncate(journal, removeMark);
}

/** REMOVE of one id. */
export function journalRemoveOne(topic: usize, id: u64): void {
  removeBegin(topic);
  removeAdd(id);
  removeEnd();
}

/** REMOVE of the `count` stored records at `records` (as a pop wrote them into a reply). */
export function journalRemoveRecords(topic: usize, records: usize, count: u32): void {
  removeBegin(topic);
  let p = records;
  for (let i: u32 = 0; i < count; i++) {
    removeAdd(load<u64>(p, R_ID));
    p += recordSize(p);
  }
  removeEnd();
}

/** A push was refused as a duplicate: the push it duplicates may be another thread's, not written yet. */
export function journalDependsOnPeers(): void {
  dependsOnPeers = true;
}

// ── Across threads: the journaled and logged counts (layout.ts ThreadSlot) ─────────────
//
// Each thread's log is its own file, written at the end of that thread's turn. A message
// pushed through thread A may be popped through thread B before A's log has the PUSH; B's
// reply must then wait for A's log, or a crash in between leaves a consumer holding a
// message the log never had (the producer, never answered, pushes it again). So every
// record a thread journals bumps its `journaled` count (begin(), above), the thread
// publishes in `logged` the count its log has made safe (src/core/thread.ts), and a thread
// that is about to reply for a change that depends on other threads' records
// (dependsOnPeers) takes the counts of every other thread whose `logged` is behind
// (logMarksBehind) and waits for them.

/**
 * If this thread depended on other threads' records since the last call: writes
 * (address of `logged`, `journaled`) as two u32 for every attached thread other than this
 * one whose log is behind its journal, at most `max` pairs at `out`. Returns how many.
 */
export function logMarksBehind(out: usize, max: u32): u32 {
  if (!dependsOnPeers) return 0;
  dependsOnPeers = false;
  let n: u32 = 0;
  for (let w: u32 = 0; w < (MAX_THREADS >> 5); w++) {
    let bits = atomic.load<u32>(H_THREAD_BITS + (<usize>w << 2));
    while (bits != 0) {
      let id = (w << 5) + <u32>ctz(bits);
      bits &= bits - 1;
      if (id == threadId) continue;
      let slot = threadSlot(id);
      let journaled = atomic.load<i32>(slot + SLOT_JOURNALED);
      if (atomic.load<i32>(slot + SLOT_LOGGED) == journaled) continue;
      if (n == max) return n;
      store<u32>(out + (<usize>n << 3), <u32>(slot + SLOT_LOGGED));
      store<i32>(out + (<usize>n << 3), journaled, 4);
      n++;
    }
  }
  return n;
}

/**
 * Address of this thread's `journaled` word. `logged` and `loggedWaiters` are the next two
 * words (layout.ts): src/core/thread.ts reads and writes all three, its own and its peers'.
 */
export function logMarksAddress(): usize {
  return threadSlot(threadId) + SLOT_JOURNALED;
}

/**
 * Thread `id` will write no more of what it journaled (it detached, or died and was
 * reaped): nobody may wait for it any longer. What it had not written is not in the log.
 */
export function logMarkSettle(id: u32): void {
  let slot = threadSlot(id);
  atomic.store<i32>(slot + SLOT_LOGGED, atomic.load<i32>(slot + SLOT_JOURNALED));
  atomic.store<i32>(slot + SLOT_LOGGED_WAITERS, 0);
  atomic.notify(slot + SLOT_LOGGED, -1);
}
