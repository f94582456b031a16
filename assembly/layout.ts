// Shared header: the fixed words at the bottom of the shared memory that every instance
// (every worker thread and the main thread) reads and writes. Nothing else in the core is
// at a fixed address; everything else hangs off this header.
//
// No mutable statics: AssemblyScript would place them in data segments, and data segments
// are re-written on every instantiation, i.e. each new worker would reset them under the
// feet of the others. Module-level `let` variables are Wasm globals and therefore
// per-instance (per thread): we use them only for thread-local state.
//
// ╒═══════════════════ shared header (HEADER = 1024) ═══════════════════╕
//  +0    u32  magic            HEADER_MAGIC once initialised
//  +4    i32  initState        0 fresh, 1 someone is initialising, 2 ready  (CAS)
//  +8    u32  layoutVersion    LAYOUT_VERSION; a mismatch refuses to attach
//  +12   u32  heapStart        first byte the bump allocator hands out
//  +16   u32  bumpTop          next free byte at the top of the heap (atomic)
//  +20   i32  growLock         mutex around memory.grow (see sync.ts)
//  +24   u32  threadBits[8]    256-bit bitmap of attached thread ids
//  +56   u32  table            TopicTable (table.ts)
//  +60   u32  queues           QueueTable: per-queue settings (queues.ts)
//  +64   i64  queueBytes       bytes of message storage in use (alloc.ts queueAlloc)
//  +72   i64  queueLimit       most bytes message storage may take, 0 = no limit
//  +80   u32  delays           DelayHeap: delayed messages by due time (delays.ts)
//  +84   u32  dedup            DedupTable: recent dedupIds (dedup.ts)
//  +88   u64  idFloor          every topic created starts its ids here; a removed topic raises it
//                              to its next id, so a name used again never repeats an id (the log
//                              identifies messages by (queue, topic, id): docs/durability.md)
//  +96   i64  freeHeads[CLASS_COUNT]   lock-free free lists: ptr | tag << 32 (alloc.ts)
//  +MAILBOXES  ThreadSlot[MAX_THREADS]  two cache lines per thread id:
//
//   ╒═══════ ThreadSlot (128 bytes; written by its thread, read by all) ══════╕
//    +0  u32 mailbox   head of the wake-up list for this thread (waiters.ts)
//    +4  i32 signal    bumped + notified after every mailbox push (Atomics.waitAsync)
//    +8  u32 leases    this thread's LeaseTable (leases.ts), 0 until its first lease
//    +12 u32 metrics   this thread's counter block (src/engine/metrics.ts), 0 if none;
//                      cleared by attach(), so a reused thread id never shows stale counters
//    +16 i64 bytesInUse   allocator statistics kept per thread so that alloc/free
//    +24 i64 blocksInUse  never write a cache line shared with other threads; a block
//                         freed by another thread makes one slot negative, the sum is right
//    +32 i64 events[4]    core events on this thread: dropped, dead-lettered,
//                         redelivered, acked (stats.ts); summed on demand
//    +64 i32 journaled    bumped by this thread for every record it journals
//                         (journal.ts), under the lock of the change it records
//    +68 i32 logged       the `journaled` count this thread's log has written (fsync
//                         always: synced); published by src/core/thread.ts. A pop on
//                         another thread waits until every thread's `logged` passes the
//                         `journaled` it saw (docs/durability.md, "Across threads")
//    +72 i32 loggedWaiters  nonzero: some thread waits on `logged` (notify it)
//                         (journaled, logged, loggedWaiters: three consecutive words,
//                         as src/core/thread.ts assumes; journal.ts logMarksAddress)
//    +76 ..128            unused
//   ╘══════════════════════════════════════════════════════════════════════════╛
// ╘═════════════════════════════════════════════════════════════════════╛

// @ts-ignore: decorator
@inline export const HEADER: usize = 1024;
// @ts-ignore: decorator
@inline export const HEADER_MAGIC: u32 = 0x31514d54; // "TMQ1"
// @ts-ignore: decorator
@inline export const LAYOUT_VERSION: u32 = 3;

// @ts-ignore: decorator
@inline export const H_MAGIC: usize = HEADER + 0;
// @ts-ignore: decorator
@inline export const H_INIT_STATE: usize = HEADER + 4;
// @ts-ignore: decorator
@inline export const H_LAYOUT: usize = HEADER + 8;
// @ts-ignore: decorator
@inline export const H_HEAP_START: usize = HEADER + 12;
// @ts-ignore: decorator
@inline export const H_BUMP_TOP: usize = HEADER + 16;
// @ts-ignore: decorator
@inline export const H_GROW_LOCK: usize = HEADER + 20;
// @ts-ignore: decorator
@inline export const H_THREAD_BITS: usize = HEADER + 24;
// @ts-ignore: decorator
@inline export const H_TABLE: usize = HEADER + 56;
// @ts-ignore: decorator
@inline export const H_QUEUES: usize = HEADER + 60;
// @ts-ignore: decorator
@inline export const H_QUEUE_BYTES: usize = HEADER + 64;
// @ts-ignore: decorator
@inline export const H_QUEUE_LIMIT: usize = HEADER + 72;
// @ts-ignore: decorator
@inline export const H_DELAYS: usize = HEADER + 80;
// @ts-ignore: decorator
@inline export const H_DEDUP: usize = HEADER + 84;
// @ts-ignore: decorator
@inline export const H_ID_FLOOR: usize = HEADER + 88;
// @ts-ignore: decorator
@inline export const H_FREE_HEADS: usize = HEADER + 96;

/** Size classes (alloc.ts): 7 small classes of 8 bytes, then 4 per power of two up to 1 GiB. */
// @ts-ignore: decorator
@inline export const CLASS_COUNT: u32 = 7 + 24 * 4;

/** Most threads that can attach to one memory at once (thread ids are 1..MAX_THREADS-1). */
// @ts-ignore: decorator
@inline export const MAX_THREADS: u32 = 256;
// @ts-ignore: decorator
@inline export const SLOT_SIZE: usize = 128;
// @ts-ignore: decorator
@inline export const SLOT_MAILBOX: usize = 0;
// @ts-ignore: decorator
@inline export const SLOT_SIGNAL: usize = 4;
// @ts-ignore: decorator
@inline export const SLOT_LEASES: usize = 8;
// @ts-ignore: decorator
@inline export const SLOT_METRICS: usize = 12;
// @ts-ignore: decorator
@inline export const SLOT_BYTES_IN_USE: usize = 16;
// @ts-ignore: decorator
@inline export const SLOT_BLOCKS_IN_USE: usize = 24;
// @ts-ignore: decorator
@inline export const SLOT_EVENTS: usize = 32;
// @ts-ignore: decorator
@inline export const SLOT_JOURNALED: usize = 64;
// @ts-ignore: decorator
@inline export const SLOT_LOGGED: usize = 68;
// @ts-ignore: decorator
@inline export const SLOT_LOGGED_WAITERS: usize = 72;
// @ts-ignore: decorator
@inline export const H_SLOTS: usize = (H_FREE_HEADS + (<usize>CLASS_COUNT << 3) + 63) & ~63;
// @ts-ignore: decorator
@inline export const HEADER_END: usize = H_SLOTS + <usize>MAX_THREADS * SLOT_SIZE;

/** The heap starts on the second 64 KiB page: page 0 holds the header (and nothing else). */
// @ts-ignore: decorator
@inline export const HEAP_START: usize = 65536;

/** Address of the ThreadSlot of thread `id`. */
// @ts-ignore: decorator
@inline export function threadSlot(id: u32): usize {
  return H_SLOTS + (<usize>id << 7);
}
