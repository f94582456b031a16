// Per-instance (= per-thread) state. Module-level variables compile to Wasm globals, which
// every instance has its own copy of: exactly thread-local storage. Nothing here is shared.

/** This instance's thread id (1..MAX_THREADS-1), 0 before attach(). */
export let threadId: u32 = 0;

export function setThreadId(id: u32): void {
  threadId = id;
}
