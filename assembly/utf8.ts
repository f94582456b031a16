// UTF-8 well-formedness of short byte runs (queue and topic names, a dead-letter topic), for
// the frame decoder (codec.ts): a name that is not well-formed UTF-8 is refused with
// ERR_INVALID_ARGUMENT before anything looks it up, so every stored name decodes to the same
// string in every client (TextDecoder would turn bad bytes into U+FFFD, and two different
// byte names into one string).
//
// Well-formed is Unicode's Table 3-7: no overlong forms, no surrogates (U+D800..U+DFFF, what
// a lone UTF-16 surrogate encodes to in CESU/WTF-8), nothing above U+10FFFF, no stray
// continuation bytes, no sequence cut short by the run's end. ASCII runs take the fast path,
// eight bytes per load; loads never read past the end of the run.
//
//   first byte   second byte   then
//   00..7F       -             -
//   C2..DF       80..BF        -
//   E0           A0..BF        80..BF
//   E1..EC       80..BF        80..BF
//   ED           80..9F        80..BF            (not D800..DFFF)
//   EE..EF       80..BF        80..BF
//   F0           90..BF        80..BF  80..BF
//   F1..F3       80..BF        80..BF  80..BF
//   F4           80..8F        80..BF  80..BF    (not above 10FFFF)

/**
 * True when the `len` bytes at `p` are all ASCII (so well-formed): the decoder's fast path,
 * inlined. Bits are OR-ed together and tested once, so the loop has no early exit to predict.
 */
// @ts-ignore: decorator
@inline export function isAscii(p: usize, len: usize): bool {
  let acc: u64 = 0;
  let i: usize = 0;
  while (i + 8 <= len) {
    acc |= load<u64>(p + i);
    i += 8;
  }
  if (i + 4 <= len) {
    acc |= <u64>load<u32>(p + i);
    i += 4;
  }
  while (i < len) {
    acc |= <u64>load<u8>(p + i);
    i++;
  }
  return (acc & 0x8080808080808080) == 0;
}

/** True when the `len` bytes at `p` are well-formed UTF-8 (an empty run is). */
export function isWellFormedUtf8(p: usize, len: usize): bool {
  let i: usize = 0;
  while (i + 8 <= len && (load<u64>(p + i) & 0x8080808080808080) == 0) i += 8;
  while (i < len) {
    let b0 = <u32>load<u8>(p + i);
    if (b0 < 0x80) { i++; continue; }
    let lo: u32 = 0x80, hi: u32 = 0xBF, n: usize;
    if (b0 >= 0xC2 && b0 <= 0xDF) n = 1;
    else if (b0 >= 0xE0 && b0 <= 0xEF) {
      n = 2;
      if (b0 == 0xE0) lo = 0xA0;
      else if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      n = 3;
      if (b0 == 0xF0) lo = 0x90;
      else if (b0 == 0xF4) hi = 0x8F;
    } else {
      return false; // 80..C1 (continuation or overlong lead) or F5..FF
    }
    if (len - i - 1 < n) return false;
    let b1 = <u32>load<u8>(p + i + 1);
    if (b1 < lo || b1 > hi) return false;
    for (let k: usize = 2; k <= n; k++) {
      if ((<u32>load<u8>(p + i + k) & 0xC0) != 0x80) return false;
    }
    i += n + 1;
  }
  return true;
}
