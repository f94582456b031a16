// Thread-safe allocator over the shared memory, used by every instance at once.
//
// Why not AssemblyScript's TLSF: its root and its bookkeeping live in per-instance globals
// and it assumes one thread. Here many instances allocate and free in one memory.
//
// Design: segregated size classes, each a lock-free LIFO free list (Treiber stack), plus an
// atomic bump pointer for fresh memory and a mutex around memory.grow. Blocks never merge
// or split: a freed block goes back to its class's list and is reused by the next
// allocation of that class. That keeps every operation O(1) and lock-free (a few CAS), at
// the cost of at most 25% internal waste (4 classes per power of two) and of memory taken
// by one class not being reusable by another. Wasm memory never shrinks anyway.
//
// ╒══════════════════ block (8-byte header, payload 8-aligned) ══════════════════╕
//  -8  u32 tag    BLOCK_USED | class   or   BLOCK_FREE | class
//  -4  u32 next   free-list link while free; unused while allocated
//  +0  payload    classSize(class) - 8 bytes
// ╘═══════════════════════════════════════════════════════════════════════════════╛
//
// Free-list head (one i64 per class in the shared header): low 32 bits the first free
// block, high 32 bits a tag incremented by every successful CAS. The tag makes pop ABA-safe:
// if another thread pops P, pops Q and pushes P back between our read of P.next and our
// CAS, the head's tag has moved and the CAS fails. Reading P.next of a block that someone
// else just took is harmless: Wasm memory is never unmapped, the value is only used if
// the CAS proves nobody touched the head meanwhile.
//
// Size classes (block size, header included):
//   0..6:  16, 24, 32, 40, 48, 56, 64                  (steps of 8)
//   7.. :  for each power of two 2^p (p >= 6): (2^p, 2^(p+1)] in 4 steps of 2^(p-2)
//          80, 96, 112, 128, 160, 192, 224, 256, ...  up to 2^30

import {
  H_BUMP_TOP, H_GROW_LOCK, H_FREE_HEADS, CLASS_COUNT, HEAP_START, H_HEAP_START,
  threadSlot, SLOT_BYTES_IN_USE, SLOT_BLOCKS_IN_USE, MAX_THREADS, H_QUEUE_BYTES, H_QUEUE_LIMIT,
} from "./layout";
import { lock, unlock } from "./sync";
import { threadId } from "./thread";

// @ts-ignore: decorator
@inline export const BLOCK_HEADER: usize = 8;
// @ts-ignore: decorator
@inline const BLOCK_USED: u32 = 0xB10C0000;
// @ts-ignore: decorator
@inline const BLOCK_FREE: u32 = 0xF7EE0000;
// @ts-ignore: decorator
@inline const TAG_MASK: u32 = 0xFFFF0000;
/** Largest payload one block can hold (1 GiB block). */
// @ts-ignore: decorator
@inline export const MAX_ALLOC: usize = (1 << 30) - BLOCK_HEADER;
/** The bump pointer never passes this: Wasm32 addresses stop at 4 GiB. */
// @ts-ignore: decorator
@inline const ADDRESS_LIMIT: u64 = 0xFFFF0000;
/** memory.grow takes at least this many 64 KiB pages at a time (4 MiB). */
// @ts-ignore: decorator
@inline const MIN_GROW_PAGES: i32 = 64;

/** Class index for a block of `size` bytes (header included, size >= 1). */
// @ts-ignore: decorator
@inline export function classOf(size: usize): u32 {
  if (size <= 64) return <u32>((max<usize>(size, 16) + 7) >> 3) - 2;
  let p = <u32>(31 - clz<u32>(<u32>size - 1)); // 2^p < size <= 2^(p+1)
  let sub = ((<u32>size - 1) >> (p - 2)) & 3;
  return 7 + ((p - 6) << 2) + sub;
}

/** Block size (header included) of class `cls`. */
// @ts-ignore: decorator
@inline export function classSize(cls: u32): usize {
  if (cls < 7) return (<usize>cls + 2) << 3;
  let k = cls - 7;
  let p = (k >> 2) + 6;
  let sub = k & 3;
  return (<usize>(5 + sub)) << (p - 2);
}

/** Called once, by the instance that initialises the shared header. */
export function heapInit(heapStart: usize): void {
  let start = max<usize>(heapStart, HEAP_START);
  start = (start + 63) & ~63;
  store<u32>(H_HEAP_START, <u32>start);
  atomic.store<u32>(H_BUMP_TOP, <u32>start);
  for (let c: u32 = 0; c < CLASS_COUNT; c++) atomic.store<i64>(H_FREE_HEADS + (<usize>c << 3), 0);
  for (let t: u32 = 0; t < MAX_THREADS; t++) {
    store<i64>(threadSlot(t) + SLOT_BYTES_IN_USE, 0);
    store<i64>(threadSlot(t) + SLOT_BLOCKS_IN_USE, 0);
  }
}

/** Makes sure the memory reaches `end` (exclusive). Only one thread grows at a time. */
function ensureMemory(end: u64): bool {
  if (end <= (<u64>memory.size() << 16)) return true;
  lock(H_GROW_LOCK);
  let ok = true;
  let have = <u64>memory.size() << 16;
  if (end > have) {
    let need = <i32>((end - have + 0xFFFF) >> 16);
    // Grow geometrically (1/8 of the current size, at least MIN_GROW_PAGES) so that a
    // steady stream of allocations does not take this lock for every page.
    let want = max<i32>(need, max<i32>(MIN_GROW_PAGES, memory.size() >> 3));
    if (memory.grow(want) < 0 && memory.grow(need) < 0) ok = false;
  }
  unlock(H_GROW_LOCK);
  return ok;
}

function bumpAlloc(size: usize): usize {
  while (true) {
    let top = atomic.load<u32>(H_BUMP_TOP);
    let end = <u64>top + <u64>size;
    if (end > ADDRESS_LIMIT) return 0;
    if (!ensureMemory(end)) return 0;
    if (atomic.cmpxchg<u32>(H_BUMP_TOP, top, <u32>end) == top) return <usize>top;
  }
}

function popFree(cls: u32): usize {
  let head = H_FREE_HEADS + (<usize>cls << 3);
  while (true) {
    let old = atomic.load<i64>(head);
    let block = <usize>(<u32>old);
    if (block == 0) return 0;
    let next = atomic.load<u32>(block + 4);
    let tag = (<u64>old >>> 32) + 1;
    let neu = <i64>((<u64>next) | (tag << 32));
    if (atomic.cmpxchg<i64>(head, old, neu) == old) return block;
  }
}

function pushFree(cls: u32, block: usize): void {
  let head = H_FREE_HEADS + (<usize>cls << 3);
  while (true) {
    let old = atomic.load<i64>(head);
    atomic.store<u32>(block + 4, <u32>old);
    let tag = (<u64>old >>> 32) + 1;
    let neu = <i64>((<u64>block) | (tag << 32));
    if (atomic.cmpxchg<i64>(head, old, neu) == old) return;
  }
}

// @ts-ignore: decorator
@inline function account(bytes: i64, blocks: i64): void {
  let slot = threadSlot(threadId);
  // Only this thread writes its slot: a plain atomic load + store, no read-modify-write.
  atomic.store<i64>(slot + SLOT_BYTES_IN_USE, atomic.load<i64>(slot + SLOT_BYTES_IN_USE) + bytes);
  atomic.store<i64>(slot + SLOT_BLOCKS_IN_USE, atomic.load<i64>(slot + SLOT_BLOCKS_IN_USE) + blocks);
}

/** Allocates `size` bytes, 8-aligned. Returns 0 when memory is exhausted (never traps). */
export function alloc(size: usize): usize {
  if (size > MAX_ALLOC) return 0;
  let cls = classOf(size + BLOCK_HEADER);
  let block = popFree(cls);
  if (block == 0) {
    block = bumpAlloc(classSize(cls));
    if (block == 0) return 0;
  }
  atomic.store<u32>(block, BLOCK_USED | cls);
  account(<i64>classSize(cls), 1);
  return block + BLOCK_HEADER;
}

/** Returns a block to its class. `ptr` must come from alloc() and not be freed yet. */
export function free(ptr: usize): void {
  if (ptr == 0) return;
  let block = ptr - BLOCK_HEADER;
  let tag = atomic.load<u32>(block);
  // A double free or a wild pointer would corrupt a free list for every thread: stop here.
  if ((tag & TAG_MASK) != BLOCK_USED) unreachable();
  let cls = tag & ~TAG_MASK;
  atomic.store<u32>(block, BLOCK_FREE | cls);
  account(-<i64>classSize(cls), -1);
  pushFree(cls, block);
}

/** Usable bytes of an allocated block. */
export function allocSize(ptr: usize): usize {
  let tag = load<u32>(ptr - BLOCK_HEADER);
  return classSize(tag & ~TAG_MASK) - BLOCK_HEADER;
}

/** Grows (or keeps) an allocation, copying `keep` bytes. Returns 0 and keeps `ptr` on failure. */
export function realloc(ptr: usize, size: usize, keep: usize): usize {
  if (ptr != 0 && allocSize(ptr) >= size) return ptr;
  let neu = alloc(size);
  if (neu == 0) return 0;
  if (ptr != 0) {
    memory.copy(neu, ptr, min<usize>(keep, size));
    free(ptr);
  }
  return neu;
}

/** Sum of every thread's statistics: bytes (class sizes) held by live blocks. */
export function bytesInUse(): i64 {
  let sum: i64 = 0;
  for (let t: u32 = 0; t < MAX_THREADS; t++) sum += atomic.load<i64>(threadSlot(t) + SLOT_BYTES_IN_USE);
  return sum;
}

export function blocksInUse(): i64 {
  let sum: i64 = 0;
  for (let t: u32 = 0; t < MAX_THREADS; t++) sum += atomic.load<i64>(threadSlot(t) + SLOT_BLOCKS_IN_USE);
  return sum;
}

/** Bytes taken from the top of the heap so far (never given back to the bump pointer). */
export function bytesReserved(): usize {
  return <usize>atomic.load<u32>(H_BUMP_TOP) - <usize>load<u32>(H_HEAP_START);
}

// ── Message storage and its limit ─────────────────────────────────────────────────────
// FIFO segments and hand-off blocks (the messages themselves) are counted in one shared
// counter and refused past the configured limit, so a full broker answers ERR_NO_MEMORY
// to pushes while connections, decoders and topics still get the memory they need. The
// counter is touched once per segment (256 B .. 64 KiB), not once per message.

/** Like alloc, for message storage: 0 when the queue memory limit would be passed. */
export function queueAlloc(size: usize): usize {
  if (size > MAX_ALLOC) return 0;
  let bytes = <i64>classSize(classOf(size + BLOCK_HEADER));
  let limit = atomic.load<i64>(H_QUEUE_LIMIT);
  let after = atomic.add<i64>(H_QUEUE_BYTES, bytes) + bytes;
  let ptr: usize = 0;
  if (limit == 0 || after <= limit) ptr = alloc(size);
  if (ptr == 0) atomic.sub<i64>(H_QUEUE_BYTES, bytes);
  return ptr;
}

/**
 * Counts `bytes` that live outside this memory (a parked pop's JS side) against the message
 * storage limit: false, counting nothing, when they do not fit. Give them back with
 * queueUnreserve.
 */
export function queueReserve(bytes: i64): bool {
  let limit = atomic.load<i64>(H_QUEUE_LIMIT);
  let after = atomic.add<i64>(H_QUEUE_BYTES, bytes) + bytes;
  if (limit == 0 || after <= limit) return true;
  atomic.sub<i64>(H_QUEUE_BYTES, bytes);
  return false;
}

export function queueUnreserve(bytes: i64): void {
  atomic.sub<i64>(H_QUEUE_BYTES, bytes);
}

/** Frees a block from queueAlloc. */
export function queueFree(ptr: usize): void {
  if (ptr == 0) return;
  atomic.sub<i64>(H_QUEUE_BYTES, <i64>classSize(load<u32>(ptr - BLOCK_HEADER) & ~TAG_MASK));
  free(ptr);
}

/** Sets the message storage limit in bytes (0: none). */
export function setQueueLimit(bytes: i64): void {
  atomic.store<i64>(H_QUEUE_LIMIT, bytes);
}

/** Bytes of message storage in use. */
export function queueBytes(): i64 {
  return atomic.load<i64>(H_QUEUE_BYTES);
}
