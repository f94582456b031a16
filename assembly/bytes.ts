// Short byte runs - names, 16-byte messages, one record - compared, copied and hashed
// inline. memory.copy and memory.compare are calls out of the compiled code (V8 lowers
// memory.copy to a C function; AssemblyScript's memory.compare is a byte loop for
// unaligned data), which costs more than the work for a few dozen bytes. Longer runs
// still go to memory.copy. Loads never read past the end of a run (no over-read near the
// end of the memory).

/** Runs up to this many bytes are copied by copyBytes itself; longer ones by memory.copy. */
// @ts-ignore: decorator
@inline const INLINE_COPY_MAX: usize = 64;

/** Copies `n` bytes from `src` to `dst` (the ranges do not overlap). */
// @ts-ignore: decorator
@inline export function copyBytes(dst: usize, src: usize, n: usize): void {
  if (n > INLINE_COPY_MAX) {
    memory.copy(dst, src, n);
    return;
  }
  let i: usize = 0;
  while (i + 8 <= n) {
    store<u64>(dst + i, load<u64>(src + i));
    i += 8;
  }
  if (i + 4 <= n) {
    store<u32>(dst + i, load<u32>(src + i));
    i += 4;
  }
  while (i < n) {
    store<u8>(dst + i, load<u8>(src + i));
    i++;
  }
}

/** Whether the `n` bytes at `a` and at `b` are equal. */
// @ts-ignore: decorator
@inline export function equalBytes(a: usize, b: usize, n: usize): bool {
  let i: usize = 0;
  while (i + 8 <= n) {
    if (load<u64>(a + i) != load<u64>(b + i)) return false;
    i += 8;
  }
  if (i + 4 <= n) {
    if (load<u32>(a + i) != load<u32>(b + i)) return false;
    i += 4;
  }
  while (i < n) {
    if (load<u8>(a + i) != load<u8>(b + i)) return false;
    i++;
  }
  return true;
}

// @ts-ignore: decorator
@inline const HASH_K: u64 = 0x517CC1B727220A95; // FxHash's multiplier (odd, well spread bits)

/**
 * Folds the `n` bytes at `p` into `h`, eight bytes per multiply (FxHash's step: rotate,
 * xor, multiply). Weak alone; hashNames finishes with murmur3's finaliser.
 */
// @ts-ignore: decorator
@inline export function hashBytes(h: u64, p: usize, n: usize): u64 {
  let i: usize = 0;
  while (i + 8 <= n) {
    h = (rotl<u64>(h, 5) ^ load<u64>(p + i)) * HASH_K;
    i += 8;
  }
  // The last 0..7 bytes as one word (a u32, a u16 and a u8 load at most: no over-read).
  let rest = n - i;
  if (rest != 0) {
    let word: u64 = 0;
    let at = p + i;
    if (rest & 4) {
      word = <u64>load<u32>(at);
      at += 4;
    }
    if (rest & 2) {
      word = (word << 16) | <u64>load<u16>(at);
      at += 2;
    }
    if (rest & 1) word = (word << 8) | <u64>load<u8>(at);
    h = (rotl<u64>(h, 5) ^ word) * HASH_K;
  }
  return h;
}
