// The AssemblyScript runtime for the shared core: no GC, no per-instance heap.
//
// The stock runtimes (stub, minimal, incremental) keep their heap state in per-instance
// globals and would hand the same bytes to two threads. This one forwards every runtime
// allocation to the shared, thread-safe allocator (alloc.ts). Managed objects are never
// collected: the core does not create any on its hot paths (it works on raw pointers),
// and anything it does create must be freed explicitly.

import { alloc, free, allocSize } from "../alloc";

// @ts-ignore: decorator
@inline const OBJECT_OVERHEAD: usize = 16; // gcInfo, gcInfo2, rtId, rtSize (see rt/common.ts)

// @ts-ignore: decorator
@unsafe @global
export function __alloc(size: usize): usize {
  let ptr = alloc(size);
  if (ptr == 0) unreachable();
  return ptr;
}

// @ts-ignore: decorator
@unsafe @global
export function __realloc(ptr: usize, size: usize): usize {
  let have = allocSize(ptr);
  if (have >= size) return ptr;
  let neu = __alloc(size);
  memory.copy(neu, ptr, have);
  free(ptr);
  return neu;
}

// @ts-ignore: decorator
@unsafe @global
export function __free(ptr: usize): void {
  free(ptr);
}

// @ts-ignore: decorator
@unsafe @global
export function __reset(): void {
  unreachable(); // there is no per-instance heap to reset
}

// @ts-ignore: decorator
@unsafe @global
export function __new(size: usize, id: u32): usize {
  let ptr = __alloc(OBJECT_OVERHEAD + size);
  store<u32>(ptr, 0);
  store<u32>(ptr, 0, 4);
  store<u32>(ptr, id, 8);
  store<u32>(ptr, <u32>size, 12);
  return ptr + OBJECT_OVERHEAD;
}

// @ts-ignore: decorator
@unsafe @global
export function __renew(oldPtr: usize, size: usize): usize {
  let neu = __realloc(oldPtr - OBJECT_OVERHEAD, OBJECT_OVERHEAD + size);
  store<u32>(neu, <u32>size, 12);
  return neu + OBJECT_OVERHEAD;
}

// @ts-ignore: decorator
@global @unsafe
export function __link(parentPtr: usize, childPtr: usize, expectMultiple: bool): void {}

// @ts-ignore: decorator
@global @unsafe
export function __pin(ptr: usize): usize {
  return ptr;
}

// @ts-ignore: decorator
@global @unsafe
export function __unpin(ptr: usize): void {}

// @ts-ignore: decorator
@global @unsafe
function __visit(ptr: usize, cookie: u32): void {}

// @ts-ignore: decorator
@global @unsafe
export function __collect(): void {}
