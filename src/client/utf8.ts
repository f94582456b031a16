// UTF-8 for the client's hot paths: the byte length of a string and writing it straight into
// a byte array (the outgoing buffer in the core's memory), with no intermediate array.
//
// Short ASCII strings - most messages, every name - are written by a plain loop: a native call
// costs more than the copy. Everything else goes to the platform's native writer (Node:
// Buffer#write over the same memory; browsers: TextEncoder.encodeInto). The bytes are exactly
// TextEncoder's (lone surrogates become U+FFFD, EF BF BD), which test/client/encode.test.ts checks.

/** Writes `text` as UTF-8 at `dst[at..]` (room for 3 bytes per UTF-16 unit is there); returns the bytes written. */
export type Utf8Writer = (text: string, at: number) => number;

/** Longest string the JavaScript loops handle before handing it to the native code. */
const SHORT_CHARS = 64;

const textEncoder = new TextEncoder();

/** The default native writer over `dst`: TextEncoder.encodeInto (needs a non-shared buffer). */
export function encodeIntoWriter(dst: Uint8Array): Utf8Writer {
  return (text, at) => textEncoder.encodeInto(text, dst.subarray(at, at + text.length * 3)).written!;
}

/** UTF-8 byte length of `text`, as TextEncoder would encode it. */
export function utf8Length(text: string): number {
  const n = text.length;
  let i = 0;
  while (i < n && text.charCodeAt(i) < 0x80) i++;
  if (i === n) return n;
  let bytes = i;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && (text.charCodeAt(i + 1) & 0xFC00) === 0xDC00) {
      bytes += 4; // a surrogate pair: one code point above U+FFFF
      i++;
    } else {
      bytes += 3; // the rest of the BMP, and a lone surrogate (written as U+FFFD)
    }
  }
  return bytes;
}

/**
 * Writes `text` at `dst[at..]` (the caller has room for `3 * text.length` bytes there) and
 * returns the bytes written. `native` writes over the same `dst`.
 */
export function writeUtf8(text: string, dst: Uint8Array, at: number, native: Utf8Writer): number {
  const n = text.length;
  if (n > SHORT_CHARS) return native(text, at);
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) return native(text, at);
    dst[at + i] = c;
  }
  return n;
}
