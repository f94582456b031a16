// Mutexes over shared memory, for every instance of the core.
//
// A mutex is one i32 word: 0 free, 1 locked, 2 locked and somebody may be sleeping on it
// (Drepper, "Futexes Are Tricky", mutex #2). Critical sections in the core are a few
// hundred instructions at most (link a record, copy one message), so a short spin usually
// wins; if the holder was preempted by the OS (likely: there are more threads than cores
// on small machines) the waiter sleeps in memory.atomic.wait32 instead of burning the core
// the holder needs. unlock() only pays for a notify when the word says someone may sleep.
//
// Every atomic here is sequentially consistent (the only ordering Wasm atomics have), so
// everything written inside a critical section is visible to the next holder.
//
// Never call lock() on a local (non-shared) memory instance with contention: wait32 traps
// there. The browser build only uses the codec, which takes no locks.

// @ts-ignore: decorator
@inline const SPINS: i32 = 64;

/** Takes the lock: one compare-and-swap when it is free (inlined), else lockSlow. */
// @ts-ignore: decorator
@inline export function lock(word: usize): void {
  let c = atomic.cmpxchg<i32>(word, 0, 1);
  if (c != 0) lockSlow(word, c);
}

/** Spins a little, then sleeps until the holder lets go. */
// @ts-ignore: decorator
@noinline function lockSlow(word: usize, c: i32): void {
  for (let i = 0; i < SPINS; i++) {
    if (atomic.load<i32>(word) == 0) {
      c = atomic.cmpxchg<i32>(word, 0, 1);
      if (c == 0) return;
    }
  }
  if (c != 2) c = atomic.xchg<i32>(word, 2);
  while (c != 0) {
    atomic.wait<i32>(word, 2, -1);
    c = atomic.xchg<i32>(word, 2);
  }
}

/** Lets go: one atomic subtraction (inlined); a notify only if someone may sleep. */
// @ts-ignore: decorator
@inline export function unlock(word: usize): void {
  if (atomic.sub<i32>(word, 1) != 1) unlockSlow(word);
}

// @ts-ignore: decorator
@noinline function unlockSlow(word: usize): void {
  atomic.store<i32>(word, 0);
  atomic.notify(word, 1);
}

/** Takes the lock only if it is free; true if taken. */
export function tryLock(word: usize): bool {
  return atomic.cmpxchg<i32>(word, 0, 1) == 0;
}
