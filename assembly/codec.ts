// The frame codec: the one decoder and the one encoder that the broker and every client
// share (docs/protocol.md is the contract; src/protocol.ts mirrors the constants).
//
// Decoder: a resumable state machine in the spirit of ws/lib/receiver.js. JS reserves room
// at the end of the decoder's buffer, copies a socket chunk there and commits it; then
// decoderNext() turns every complete frame into a fixed-size descriptor (pointers into
// the buffer, no copy) in one call per batch of DESC_CAPACITY frames. A header or a body
// split anywhere across chunks is normal: the state machine just waits for more bytes.
// Every length is checked against the buffered bytes and the limits before it is used;
// no allocation is ever sized by an unchecked length; no input traps.
//
// Writer: a growable byte buffer plus one encode function per frame type. Records frames
// (MESSAGES, DELIVER, PUSH_MANY, RETURN) are written in three steps - begin (header and a count
// placeholder), records (by encodeRecord or by fifo.ts/waiters.ts through
// writerEnsure/writerAdvance), end (patches length and count) - so popped messages are
// copied once, from the queue straight into the reply.
//
// Memory rules (see layout.ts): no managed objects, no statics, no data segments. All
// state lives in structs from alloc(); module-level consts are inlined. Both structs are
// owned by one thread at a time (a connection's session or a client), so no atomics.

import { alloc, free, realloc, allocSize } from "./alloc";
import { RECORD_HEADER, PUSH_RECORD_HEADER, LEASED_RECORD_HEADER, META_DEAD_LETTER, FLAG_LEASED } from "./record";
import { isAscii, isWellFormedUtf8 } from "./utf8";

// ── Wire constants (docs/protocol.md) ────────────────────────────────────────────────

// @ts-ignore: decorator
@inline const PROTOCOL_VERSION: u32 = 2;
/** length u32, ver u8, op u8, flags u16, requestId u32. */
// @ts-ignore: decorator
@inline const HEADER_BYTES: u32 = 12;
/** The `length` field counts the header bytes after it: length = 8 + body. */
// @ts-ignore: decorator
@inline const LENGTH_OVERHEAD: u32 = 8;
// @ts-ignore: decorator
@inline const MAX_NAME_BYTES: u32 = 255;

// Requests.
// @ts-ignore: decorator
@inline const OP_HELLO: u32 = 0x01;
// @ts-ignore: decorator
@inline const OP_PING: u32 = 0x02;
/**
 * AUTH is read before a connection reaches its session, in JS (src/core/raw-frames.ts,
 * src/engine/handshake.ts); this decoder answers a late one ERR_UNKNOWN_OPCODE.
 */
// @ts-ignore: decorator
@inline const OP_AUTH: u32 = 0x03;
/** Operator requests, answered by the engine's main thread: server statistics, graceful stop. */
// @ts-ignore: decorator
@inline const OP_SERVER_STATS: u32 = 0x04;
// @ts-ignore: decorator
@inline const OP_SHUTDOWN: u32 = 0x05;
// @ts-ignore: decorator
@inline const OP_PUSH: u32 = 0x10;
// @ts-ignore: decorator
@inline const OP_PUSH_MANY: u32 = 0x11;
// @ts-ignore: decorator
@inline const OP_POP: u32 = 0x12;
// @ts-ignore: decorator
@inline const OP_POP_MANY: u32 = 0x13;
// @ts-ignore: decorator
@inline const OP_LENGTH: u32 = 0x14;
// @ts-ignore: decorator
@inline const OP_SUBSCRIBE: u32 = 0x15;
// @ts-ignore: decorator
@inline const OP_UNSUBSCRIBE: u32 = 0x16;
// @ts-ignore: decorator
@inline const OP_CREDIT: u32 = 0x17;
// @ts-ignore: decorator
@inline const OP_CANCEL: u32 = 0x18;
/** Puts stored records a consumer received but did not consume back at the front. */
// @ts-ignore: decorator
@inline const OP_RETURN: u32 = 0x19;
// @ts-ignore: decorator
@inline const OP_PUSH_EX: u32 = 0x1A;
// @ts-ignore: decorator
@inline const OP_PUSH_MANY_EX: u32 = 0x1B;
// @ts-ignore: decorator
@inline const OP_POP_LEASED: u32 = 0x1C;
// @ts-ignore: decorator
@inline const OP_SETTLE: u32 = 0x1D;
// @ts-ignore: decorator
@inline const OP_CONFIGURE: u32 = 0x1E;
// @ts-ignore: decorator
@inline const OP_STATS: u32 = 0x1F;
// Replies.
// @ts-ignore: decorator
@inline const OP_OK: u32 = 0x80;
// @ts-ignore: decorator
@inline const OP_HELLO_OK: u32 = 0x81;
// @ts-ignore: decorator
@inline const OP_PONG: u32 = 0x82;
// @ts-ignore: decorator
@inline const OP_EMPTY: u32 = 0x83;
// @ts-ignore: decorator
@inline const OP_MESSAGES: u32 = 0x84;
// @ts-ignore: decorator
@inline const OP_LENGTH_OK: u32 = 0x85;
// @ts-ignore: decorator
@inline const OP_DELIVER: u32 = 0x86;
/** SERVER_STATS's reply: JSON text (UTF-8) filling the body. */
// @ts-ignore: decorator
@inline const OP_STATS_JSON: u32 = 0x8C;
// @ts-ignore: decorator
@inline const OP_SETTLED: u32 = 0x87;
// @ts-ignore: decorator
@inline const OP_SETTINGS: u32 = 0x88;
// @ts-ignore: decorator
@inline const OP_STATS_OK: u32 = 0x89;
// @ts-ignore: decorator
@inline const OP_ERROR: u32 = 0x8F;

/** SETTLE entry: u64 lease, u32 kind, u32 arg. */
// @ts-ignore: decorator
@inline const SETTLE_ENTRY_BYTES: u32 = 16;
/** CONFIGURE/SETTINGS settings block before the dead-letter name: 4 × f64, 3 × u8. */
// @ts-ignore: decorator
@inline const SETTINGS_FIXED_BYTES: u32 = 35;
/**
 * Not on the wire: the decoder's descriptor for a well-framed frame it refuses
 * (requestId = the frame's, arg0 = error code, arg1 = the frame's opcode).
 */
// @ts-ignore: decorator
@inline const OP_REJECT: u32 = 0xFD;

// Error codes (positive on the wire and in OP_REJECT; negated as decoderNext results).
// @ts-ignore: decorator
@inline const ERR_PROTOCOL: i32 = 1;
// @ts-ignore: decorator
@inline const ERR_INVALID_ARGUMENT: i32 = 2;
// @ts-ignore: decorator
@inline const ERR_MESSAGE_TOO_LARGE: i32 = 3;
// @ts-ignore: decorator
@inline const ERR_NO_MEMORY: i32 = 7;
// @ts-ignore: decorator
@inline const ERR_UNKNOWN_OPCODE: i32 = 9;

// ── Decoder ──────────────────────────────────────────────────────────────────────────
//
// ╒════════════════════ Decoder (DEC_SIZE = 64 + 64 × 48 = 3136 bytes) ════════════════════╕
//  +0   u32 state            STATE_HEADER | STATE_BODY | STATE_FATAL
//  +4   u32 maxFrameBytes    largest body (length - 8) accepted; a larger one is fatal
//  +8   u32 maxMessageBytes  largest PUSH data / record accepted
//  +12  u32 buf              buffer (alloc), 0 until the first reserve
//  +16  u32 cap              its capacity
//  +20  u32 start            first byte not consumed yet (a frame header in STATE_HEADER/BODY)
//  +24  u32 end              end of the committed bytes     (start <= end <= cap)
//  +28  u32 need             STATE_BODY: bytes of the whole current frame (12 + body)
//  +32  i32 fatal            STATE_FATAL: the negative error every decoderNext returns
//  +36  u32 reserved[7]
//  +64  Descriptor[DESC_CAPACITY]   results of the last decoderNext
// ╘════════════════════════════════════════════════════════════════════════════════════════╛
//
// Buffer:  buf ─┬─ consumed ─┬─ unconsumed frames ─┬─ free ─┐
//               0          start                  end      cap
//
// ╒═════════════ Descriptor (DESC_SIZE = 48; u32 fields) ═════════════╕
//  +0   op | flags << 16       (op in the low byte)
//  +4   requestId
//  +8   queuePtr   +12 queueLen   (HELLO_OK: queueLen = the version, queuePtr 0)
//  +16  topicPtr   +20 topicLen
//  +24  dataPtr    +28 dataLen
//  +32  arg0       +36 arg1
//  +40  arg2       +44 arg3
// ╘═══════════════════════════════════════════════════════════════════╛
// Unused fields are 0. Pointers point into the decoder's buffer: valid until the next
// decoderReserve (which may move the buffer) or decoderFree. Fields used, per op:
//
//   PUSH                 queue, topic, data = the message
//   PUSH_MANY, RETURN    queue, topic, data = the records after the count, arg0 = count
//   PUSH_EX              queue, topic, data = the message, arg0 = delayMs,
//                        arg2 = dedupId pointer, arg3 = dedupId length (0: none)
//   PUSH_MANY_EX         queue, topic, data = the records, arg0 = count, arg1 = delayMs
//   POP                  queue, topic, arg0 = timeoutMs
//   POP_MANY             queue, topic, arg0 = max (>= 1), arg1 = timeoutMs
//   POP_LEASED           queue, topic, arg0 = max (>= 1), arg1 = timeoutMs, arg2 = leaseMs
//   LENGTH, STATS        queue, topic
//   SUBSCRIBE            queue, topic, arg0 = prefetch (>= 1), arg1 = options,
//                        arg2 = leaseMs (0 when absent)
//   SETTLE               data = the entries after the count, arg0 = count (>= 1)
//   CONFIGURE            queue, data = the settings after the mask, arg0 = mask
//   SETTLED              data = one status byte per entry, arg0 = count
//   SETTINGS             data = the settings
//   STATS_OK             arg0 = ready, arg1 = delayed, arg2 = inFlight
//   UNSUBSCRIBE          arg0 = subscriptionId
//   CREDIT               arg0 = subscriptionId, arg1 = credit
//   CANCEL               arg0 = targetRequestId
//   HELLO                arg0 = minVersion, arg1 = maxVersion
//   PING OK PONG EMPTY   nothing
//   SERVER_STATS         nothing
//   SHUTDOWN             nothing
//   HELLO_OK             queueLen = version (queuePtr 0), data = serverVersion,
//                        arg0 = maxMessageBytes, arg1 = maxFrameBytes
//   MESSAGES, DELIVER    data = the records after the count, arg0 = count
//   LENGTH_OK            arg0 = length
//   ERROR                data = text, arg0 = code
//   STATS_JSON           data = the JSON text
//   OP_REJECT            arg0 = error code, arg1 = the frame's opcode (not decoded further)
//
// Records in `data` are validated: exactly arg0 records of a header (record.ts: 4 bytes in
// PUSH_MANY(_EX), 16 in RETURN/MESSAGES/DELIVER, 24 with FLAG_LEASED) + len bytes (each
// at most maxMessageBytes) filling dataLen exactly, with only known flags and a
// well-formed dead-letter prefix, so readers may walk them unchecked.

// @ts-ignore: decorator
@inline const STATE_HEADER: u32 = 0;
// @ts-ignore: decorator
@inline const STATE_BODY: u32 = 1;
// @ts-ignore: decorator
@inline const STATE_FATAL: u32 = 3;

// @ts-ignore: decorator
@inline const D_STATE: usize = 0;
// @ts-ignore: decorator
@inline const D_MAX_FRAME: usize = 4;
// @ts-ignore: decorator
@inline const D_MAX_MESSAGE: usize = 8;
// @ts-ignore: decorator
@inline const D_BUF: usize = 12;
// @ts-ignore: decorator
@inline const D_CAP: usize = 16;
// @ts-ignore: decorator
@inline const D_START: usize = 20;
// @ts-ignore: decorator
@inline const D_END: usize = 24;
// @ts-ignore: decorator
@inline const D_NEED: usize = 28;
// @ts-ignore: decorator
@inline const D_FATAL: usize = 32;
// @ts-ignore: decorator
@inline const D_DESCS: usize = 64;

// @ts-ignore: decorator
@inline const DESC_SIZE: usize = 48;
// @ts-ignore: decorator
@inline const DESC_CAPACITY: i32 = 64;
// @ts-ignore: decorator
@inline const DEC_SIZE: usize = D_DESCS + DESC_SIZE * <usize>DESC_CAPACITY;

// @ts-ignore: decorator
@inline const DESC_OP: usize = 0;
// @ts-ignore: decorator
@inline const DESC_REQ: usize = 4;
// @ts-ignore: decorator
@inline const DESC_QUEUE_PTR: usize = 8;
// @ts-ignore: decorator
@inline const DESC_QUEUE_LEN: usize = 12;
// @ts-ignore: decorator
@inline const DESC_TOPIC_PTR: usize = 16;
// @ts-ignore: decorator
@inline const DESC_TOPIC_LEN: usize = 20;
// @ts-ignore: decorator
@inline const DESC_DATA_PTR: usize = 24;
// @ts-ignore: decorator
@inline const DESC_DATA_LEN: usize = 28;
// @ts-ignore: decorator
@inline const DESC_ARG0: usize = 32;
// @ts-ignore: decorator
@inline const DESC_ARG1: usize = 36;
// @ts-ignore: decorator
@inline const DESC_ARG2: usize = 40;
// @ts-ignore: decorator
@inline const DESC_ARG3: usize = 44;

/** First buffer size, and the size an empty buffer shrinks back to. */
// @ts-ignore: decorator
@inline const DECODER_INITIAL_CAP: usize = 16 * 1024;
/** An empty buffer larger than this is given back (one huge frame must not pin memory). */
// @ts-ignore: decorator
@inline const DECODER_SHRINK_ABOVE: usize = 64 * 1024;
/** maxFrameBytes is clamped to this so `12 + body` and buffer sizes never overflow. */
// @ts-ignore: decorator
@inline const MAX_FRAME_LIMIT: u32 = 0x3FFF0000;

/** A new decoder, or 0 when out of memory. The buffer is allocated on first use. */
export function decoderNew(maxFrameBytes: u32, maxMessageBytes: u32): usize {
  let dec = alloc(DEC_SIZE);
  if (dec == 0) return 0;
  memory.fill(dec, 0, D_DESCS);
  store<u32>(dec + D_STATE, STATE_HEADER);
  store<u32>(dec + D_MAX_FRAME, min<u32>(maxFrameBytes, MAX_FRAME_LIMIT));
  store<u32>(dec + D_MAX_MESSAGE, maxMessageBytes);
  return dec;
}

export function decoderFree(dec: usize): void {
  if (dec == 0) return;
  free(<usize>load<u32>(dec + D_BUF));
  free(dec);
}

/**
 * Room for `n` more bytes at the end of the buffer: returns where the caller writes them
 * (then decoderCommit(n)), or 0 when out of memory (nothing changed). May move the
 * unconsumed bytes, so descriptors from earlier decoderNext calls become invalid.
 */
export function decoderReserve(dec: usize, n: u32): usize {
  let buf = <usize>load<u32>(dec + D_BUF);
  let cap = <usize>load<u32>(dec + D_CAP);
  let start = <usize>load<u32>(dec + D_START);
  let end = <usize>load<u32>(dec + D_END);
  // A dead stream keeps nothing: whatever comes after a fatal error is discarded.
  if (load<u32>(dec + D_STATE) == STATE_FATAL) start = end;
  if (start == end) {
    start = end = 0;
    // Empty and large (one big frame went through): give the memory back.
    if (cap > DECODER_SHRINK_ABOVE && <usize>n <= DECODER_SHRINK_ABOVE) {
      let smallCap = max<usize>(<usize>n, DECODER_INITIAL_CAP);
      let small = alloc(smallCap);
      if (small != 0) {
        free(buf);
        buf = small;
        cap = smallCap;
      }
    }
  } else if (<u64>end + <u64>n > <u64>cap && start > 0) {
    // Compact only when the free tail is too short: at most one partial frame moves.
    memory.copy(buf, buf + start, end - start);
    end -= start;
    start = 0;
  }
  let want = <u64>end + <u64>n;
  if (want > <u64>cap || buf == 0) {
    let neu: usize = 0;
    let newCap: usize = 0;
    if (want <= <u64>MAX_FRAME_LIMIT * 2) {
      newCap = max<usize>(<usize>want, min<usize>(max<usize>(cap << 1, DECODER_INITIAL_CAP), <usize>MAX_FRAME_LIMIT * 2));
      neu = realloc(buf, newCap, end);
    }
    if (neu != 0) {
      buf = neu;
      cap = newCap;
    }
  }
  store<u32>(dec + D_BUF, <u32>buf);
  store<u32>(dec + D_CAP, <u32>cap);
  store<u32>(dec + D_START, <u32>start);
  store<u32>(dec + D_END, <u32>end);
  // Out of memory: nothing lost (the buffer is only compacted or unchanged).
  return want > <u64>cap ? 0 : buf + end;
}

/** The `n` bytes written at the pointer decoderReserve returned are now buffered. */
export function decoderCommit(dec: usize, n: u32): void {
  let end = load<u32>(dec + D_END);
  let cap = load<u32>(dec + D_CAP);
  // Never trust n beyond the capacity: a wrong caller must not make us read past the buffer.
  store<u32>(dec + D_END, <u32>min<u64>(<u64>end + <u64>n, <u64>cap));
}

/** Address of descriptor 0 (stride DESC_SIZE). Fixed for the decoder's lifetime. */
export function decoderDescriptors(dec: usize): usize {
  return dec + D_DESCS;
}

/** Bytes committed and not consumed yet (for tests and stats). */
export function decoderBuffered(dec: usize): u32 {
  return load<u32>(dec + D_END) - load<u32>(dec + D_START);
}

/** Current buffer capacity (for tests and stats). */
export function decoderCapacity(dec: usize): u32 {
  return load<u32>(dec + D_CAP);
}

/** The state machine's state (STATE_*), for tests. */
export function decoderState(dec: usize): u32 {
  return load<u32>(dec + D_STATE);
}

// @ts-ignore: decorator
@inline function fatal(dec: usize, error: i32): i32 {
  store<u32>(dec + D_STATE, STATE_FATAL);
  store<i32>(dec + D_FATAL, -error);
  return -error;
}

/** Writes a whole descriptor (every field, so nothing stale is left). */
// @ts-ignore: decorator
@inline function descSet(
  d: usize, opFlags: u32, req: u32, qp: usize, ql: u32, tp: usize, tl: u32,
  dp: usize, dl: u32, a0: u32, a1: u32
): void {
  store<u32>(d, opFlags, DESC_OP);
  store<u32>(d, req, DESC_REQ);
  store<u32>(d, <u32>qp, DESC_QUEUE_PTR);
  store<u32>(d, ql, DESC_QUEUE_LEN);
  store<u32>(d, <u32>tp, DESC_TOPIC_PTR);
  store<u32>(d, tl, DESC_TOPIC_LEN);
  store<u32>(d, <u32>dp, DESC_DATA_PTR);
  store<u32>(d, dl, DESC_DATA_LEN);
  store<u32>(d, a0, DESC_ARG0);
  store<u32>(d, a1, DESC_ARG1);
  store<u32>(d, 0, DESC_ARG2);
  store<u32>(d, 0, DESC_ARG3);
}

// @ts-ignore: decorator
@inline function reject(d: usize, flags: u32, req: u32, code: i32, op: u32): void {
  descSet(d, OP_REJECT | (flags << 16), req, 0, 0, 0, 0, 0, 0, <u32>code, op);
}

/**
 * Decodes up to DESC_CAPACITY complete frames from the buffered bytes into the descriptor
 * area. Returns how many (0: more bytes needed; exactly DESC_CAPACITY: call again), or a
 * negative fatal error (-ERR_PROTOCOL; -ERR_MESSAGE_TOO_LARGE for a body over maxFrameBytes),
 * returned again by every later call. A fatal error
 * drops the descriptors of the same call: the connection is going away.
 */
export function decoderNext(dec: usize): i32 {
  let state = load<u32>(dec + D_STATE);
  if (state == STATE_FATAL) return load<i32>(dec + D_FATAL);
  let buf = <usize>load<u32>(dec + D_BUF);
  let start = <usize>load<u32>(dec + D_START);
  let end = <usize>load<u32>(dec + D_END);
  let need = load<u32>(dec + D_NEED);
  let maxFrame = load<u32>(dec + D_MAX_FRAME);
  let maxMessage = load<u32>(dec + D_MAX_MESSAGE);
  let d = dec + D_DESCS;
  let count: i32 = 0;
  while (count < DESC_CAPACITY) {
    if (state == STATE_HEADER) {
      if (end - start < <usize>HEADER_BYTES) break;
      let p = buf + start;
      let length = load<u32>(p);
      // Version first: it is how garbage is recognised.
      if (<u32>load<u8>(p, 4) != PROTOCOL_VERSION || length < LENGTH_OVERHEAD) return fatal(dec, ERR_PROTOCOL);
      let body = length - LENGTH_OVERHEAD;
      // Larger than any frame this side accepts: fatal at once. Skipping the body instead
      // would let one header make the receiver read (and the peer send) up to 4 GiB.
      if (body > maxFrame) return fatal(dec, ERR_MESSAGE_TOO_LARGE);
      need = HEADER_BYTES + body; // <= 12 + MAX_FRAME_LIMIT: no overflow
      state = STATE_BODY;
    }
    // STATE_BODY: the header at `start` is valid; wait for the whole frame.
    if (end - start < <usize>need) break;
    decodeFrame(buf + start, <usize>need - <usize>HEADER_BYTES, d, maxMessage);
    d += DESC_SIZE;
    count++;
    start += <usize>need;
    need = 0;
    state = STATE_HEADER;
  }
  store<u32>(dec + D_STATE, state);
  store<u32>(dec + D_START, <u32>start);
  store<u32>(dec + D_NEED, need);
  return count;
}

/**
 * Reads a `name` (u8 len, 1..255 bytes) at `pos` of a body ending at `bodyEnd`. Returns the
 * position after it, or 0 with *code set: a missing or overrunning name is ERR_PROTOCOL,
 * an empty one ERR_INVALID_ARGUMENT. (Positions are addresses, never 0.)
 */
// @ts-ignore: decorator
@inline function nameEnd(pos: usize, bodyEnd: usize): usize {
  if (pos >= bodyEnd) return 0;
  let len = <usize>load<u8>(pos);
  if (len == 0) return 1;
  let after = pos + 1 + len;
  return after > bodyEnd ? 0 : after;
}

/** 0 when `code` (from nameEnd) is fine; otherwise the error code. */
// @ts-ignore: decorator
@inline function nameError(after: usize): i32 {
  return after == 0 ? ERR_PROTOCOL : after == 1 ? ERR_INVALID_ARGUMENT : 0;
}

/**
 * Checks a `records` area [pos, bodyEnd): `u32 count` then exactly `count` records with
 * `header`-byte headers (record.ts) that fill it. Returns 0 or an error code. The loop
 * runs once per record (never per byte) and at most (bodyEnd - pos) / 4 times whatever
 * `count` claims. Stored records (header >= 16) may only carry known flags, and a
 * dead-letter prefix must fit its record. A dead-letter prefix counts against
 * maxMessageBytes too (it is at most 257 bytes: replies are decoded with room for it).
 */
function checkRecords(pos: usize, bodyEnd: usize, maxMessage: u32, header: usize): i32 {
  if (bodyEnd - pos < 4) return ERR_PROTOCOL;
  let count = load<u32>(pos);
  pos += 4;
  for (let i: u32 = 0; i < count; i++) {
    if (bodyEnd - pos < header) return ERR_PROTOCOL;
    let len = load<u32>(pos);
    if (<u64>len > <u64>(bodyEnd - pos - header)) return ERR_PROTOCOL;
    let flags: u32 = header >= RECORD_HEADER ? load<u32>(pos, 4) >>> 24 : 0;
    if (flags != 0) {
      // Only the dead-letter flag exists: `u8 reason (1|2), u8 topicLen (1..255), topic`
      // before the data, which may itself be maxMessage bytes.
      if ((flags & ~(META_DEAD_LETTER >>> 24)) != 0) return ERR_PROTOCOL;
      if (len < 3) return ERR_PROTOCOL;
      let reason = <u32>load<u8>(pos + header);
      let tl = <u32>load<u8>(pos + header, 1);
      if (reason - 1 > 1 || tl == 0 || <u32>2 + tl > len) return ERR_PROTOCOL;
      if (len - 2 - tl > maxMessage) return ERR_MESSAGE_TOO_LARGE;
    } else if (len > maxMessage) {
      return ERR_MESSAGE_TOO_LARGE;
    }
    pos += header + <usize>len;
  }
  return pos == bodyEnd ? 0 : ERR_PROTOCOL;
}

/** Decodes one complete frame at `p` (header valid, `body` bytes follow) into `d`. */
function decodeFrame(p: usize, body: usize, d: usize, maxMessage: u32): void {
  let op = <u32>load<u8>(p, 5);
  let flags = <u32>load<u16>(p, 6);
  let req = load<u32>(p, 8);
  let opFlags = op | (flags << 16);
  let b = p + <usize>HEADER_BYTES;
  let bodyEnd = b + body;
  let code: i32 = 0;
  switch (op) {
    // Bodies of fixed size.
    case OP_PING:
    case OP_SERVER_STATS:
    case OP_SHUTDOWN:
    case OP_OK:
    case OP_PONG:
    case OP_EMPTY: {
      if (body != 0) { code = ERR_PROTOCOL; break; }
      descSet(d, opFlags, req, 0, 0, 0, 0, 0, 0, 0, 0);
      return;
    }
    case OP_HELLO: {
      if (body != 8) { code = ERR_PROTOCOL; break; }
      descSet(d, opFlags, req, 0, 0, 0, 0, 0, 0, <u32>load<u16>(b), <u32>load<u16>(b, 2));
      return;
    }
    case OP_SETTLE: {
      // u32 count (>= 1), count × (u64 lease, u32 kind, u32 arg)
      if (body < 4) { code = ERR_PROTOCOL; break; }
      let count = load<u32>(b);
      if (count == 0) { code = ERR_INVALID_ARGUMENT; break; }
      if (<u64>body != 4 + <u64>count * <u64>SETTLE_ENTRY_BYTES) { code = ERR_PROTOCOL; break; }
      descSet(d, opFlags, req, 0, 0, 0, 0, b + 4, <u32>(body - 4), count, 0);
      return;
    }
    case OP_SETTLED: {
      // u32 count, u8 status[count]
      if (body < 4 || <u64>body != 4 + <u64>load<u32>(b)) { code = ERR_PROTOCOL; break; }
      descSet(d, opFlags, req, 0, 0, 0, 0, b + 4, <u32>(body - 4), load<u32>(b), 0);
      return;
    }
    case OP_STATS_OK: {
      if (body != 12) { code = ERR_PROTOCOL; break; }
      descSet(d, opFlags, req, 0, 0, 0, 0, 0, 0, load<u32>(b), load<u32>(b, 4));
      store<u32>(d, load<u32>(b, 8), DESC_ARG2);
      return;
    }
    case OP_SETTINGS: {
      code = checkSettings(b, bodyEnd);
      if (code != 0) break;
      descSet(d, opFlags, req, 0, 0, 0, 0, b, <u32>body, 0, 0);
      return;
    }
    case OP_CONFIGURE: {
      // name queue, u32 mask, settings
      let qEnd = nameEnd(b, bodyEnd);
      code = nameError(qEnd);
      if (code != 0) break;
      if (!isWellFormedUtf8(b + 1, qEnd - b - 1)) { code = ERR_INVALID_ARGUMENT; break; }
      if (bodyEnd - qEnd < 4) { code = ERR_PROTOCOL; break; }
      code = checkSettings(qEnd + 4, bodyEnd);
      if (code != 0) break;
      descSet(d, opFlags, req, b + 1, <u32>(qEnd - b - 1), 0, 0, qEnd + 4, <u32>(bodyEnd - qEnd - 4), load<u32>(qEnd), 0);
      return;
    }
    case OP_UNSUBSCRIBE:
    case OP_CANCEL:
    case OP_LENGTH_OK: {
      if (body != 4) { code = ERR_PROTOCOL; break; }
      descSet(d, opFlags, req, 0, 0, 0, 0, 0, 0, load<u32>(b), 0);
      return;
    }
    case OP_CREDIT: {
      if (body != 8) { code = ERR_PROTOCOL; break; }
      descSet(d, opFlags, req, 0, 0, 0, 0, 0, 0, load<u32>(b), load<u32>(b, 4));
      return;
    }
    // Bodies that start with `name queue`, `name topic`.
    case OP_PUSH:
    case OP_PUSH_MANY:
    case OP_RETURN:
    case OP_POP:
    case OP_POP_MANY:
    case OP_LENGTH:
    case OP_SUBSCRIBE:
    case OP_PUSH_EX:
    case OP_PUSH_MANY_EX:
    case OP_POP_LEASED:
    case OP_STATS: {
      let qEnd = nameEnd(b, bodyEnd);
      code = nameError(qEnd);
      if (code != 0) break;
      let tEnd = nameEnd(qEnd, bodyEnd);
      code = nameError(tEnd);
      if (code != 0) break;
      let qp = b + 1;
      let ql = <u32>(qEnd - qp);
      let tp = qEnd + 1;
      let tl = <u32>(tEnd - tp);
      // Names are UTF-8 (docs/protocol.md): bad bytes are refused here, the connection stays
      // usable. Both names and the length byte between them are one run: when all of it is
      // ASCII (almost always; a length byte is < 0x80 for names under 128 bytes) both are fine.
      if (!isAscii(qp, <usize>(tEnd - qp)) && (!isWellFormedUtf8(qp, ql) || !isWellFormedUtf8(tp, tl))) { code = ERR_INVALID_ARGUMENT; break; }
      let rest = bodyEnd - tEnd;
      let a0: u32 = 0;
      let a1: u32 = 0;
      if (op == OP_PUSH) {
        if (rest > <usize>maxMessage) { code = ERR_MESSAGE_TOO_LARGE; break; }
        descSet(d, opFlags, req, qp, ql, tp, tl, tEnd, <u32>rest, 0, 0);
        return;
      }
      if (op == OP_PUSH_MANY || op == OP_RETURN) {
        code = checkRecords(tEnd, bodyEnd, maxMessage, op == OP_RETURN ? RECORD_HEADER : PUSH_RECORD_HEADER);
        if (code != 0) break;
        descSet(d, opFlags, req, qp, ql, tp, tl, tEnd + 4, <u32>(rest - 4), load<u32>(tEnd), 0);
        return;
      }
      if (op == OP_PUSH_EX) {
        // u32 delayMs, u8 dedupLen, dedupId, data
        if (rest < 5 || <usize>load<u8>(tEnd, 4) > rest - 5) { code = ERR_PROTOCOL; break; }
        let dl = <usize>load<u8>(tEnd, 4);
        let dataAt = tEnd + 5 + dl;
        if (bodyEnd - dataAt > <usize>maxMessage) { code = ERR_MESSAGE_TOO_LARGE; break; }
        descSet(d, opFlags, req, qp, ql, tp, tl, dataAt, <u32>(bodyEnd - dataAt), load<u32>(tEnd), 0);
        store<u32>(d, dl == 0 ? 0 : <u32>(tEnd + 5), DESC_ARG2);
        store<u32>(d, <u32>dl, DESC_ARG3);
        return;
      }
      if (op == OP_PUSH_MANY_EX) {
        // u32 delayMs, records
        if (rest < 4) { code = ERR_PROTOCOL; break; }
        code = checkRecords(tEnd + 4, bodyEnd, maxMessage, PUSH_RECORD_HEADER);
        if (code != 0) break;
        descSet(d, opFlags, req, qp, ql, tp, tl, tEnd + 8, <u32>(rest - 8), load<u32>(tEnd, 4), load<u32>(tEnd));
        return;
      }
      let a2: u32 = 0;
      if (op == OP_LENGTH || op == OP_STATS) {
        if (rest != 0) { code = ERR_PROTOCOL; break; }
      } else if (op == OP_POP) {
        if (rest != 4) { code = ERR_PROTOCOL; break; }
        a0 = load<u32>(tEnd);
      } else {
        // POP_MANY (max, timeoutMs), POP_LEASED (max, timeoutMs, leaseMs) and SUBSCRIBE
        // (prefetch, options[, leaseMs]): the first must be >= 1.
        let want: usize = op == OP_POP_MANY ? 8 : 12;
        if (rest != want && !(op == OP_SUBSCRIBE && rest == 8)) { code = ERR_PROTOCOL; break; }
        a0 = load<u32>(tEnd);
        a1 = load<u32>(tEnd, 4);
        if (rest == 12) a2 = load<u32>(tEnd, 8);
        if (a0 == 0) { code = ERR_INVALID_ARGUMENT; break; }
      }
      descSet(d, opFlags, req, qp, ql, tp, tl, 0, 0, a0, a1);
      store<u32>(d, a2, DESC_ARG2);
      return;
    }
    // Replies with a variable body.
    case OP_HELLO_OK: {
      // u16 version, u16 reserved, u32 maxMessageBytes, u32 maxFrameBytes, name serverVersion
      if (body < 13) { code = ERR_PROTOCOL; break; }
      let vEnd = nameEnd(b + 12, bodyEnd);
      code = nameError(vEnd);
      if (code != 0) break;
      if (vEnd != bodyEnd) { code = ERR_PROTOCOL; break; }
      descSet(d, opFlags, req, 0, <u32>load<u16>(b), 0, 0, b + 13, <u32>(vEnd - b - 13), load<u32>(b, 4), load<u32>(b, 8));
      return;
    }
    case OP_MESSAGES:
    case OP_DELIVER: {
      code = checkRecords(b, bodyEnd, maxMessage, (flags & FLAG_LEASED) != 0 ? LEASED_RECORD_HEADER : RECORD_HEADER);
      if (code != 0) break;
      descSet(d, opFlags, req, 0, 0, 0, 0, b + 4, <u32>(body - 4), load<u32>(b), 0);
      return;
    }
    case OP_STATS_JSON: {
      descSet(d, opFlags, req, 0, 0, 0, 0, b, <u32>body, 0, 0);
      return;
    }
    case OP_ERROR: {
      // u16 code, u16 textLength, text
      if (body < 4 || <usize>load<u16>(b, 2) != body - 4) { code = ERR_PROTOCOL; break; }
      descSet(d, opFlags, req, 0, 0, 0, 0, b + 4, <u32>(body - 4), <u32>load<u16>(b), 0);
      return;
    }
    default:
      code = ERR_UNKNOWN_OPCODE;
  }
  reject(d, flags, req, code, op);
}

/** Checks a settings block [p, end): 4 × f64, u8 overflow (0/1), u8 durable (0/1/2), u8 dlqLen, dlq bytes. */
function checkSettings(p: usize, end: usize): i32 {
  if (end - p < <usize>SETTINGS_FIXED_BYTES) return ERR_PROTOCOL;
  if (<usize>SETTINGS_FIXED_BYTES + <usize>load<u8>(p, 34) != end - p) return ERR_PROTOCOL;
  if (<u32>load<u8>(p, 32) > 1 || <u32>load<u8>(p, 33) > 2) return ERR_INVALID_ARGUMENT;
  if (!isWellFormedUtf8(p + 35, <usize>load<u8>(p, 34))) return ERR_INVALID_ARGUMENT; // the dead-letter topic
  return 0;
}

// ── Writer ───────────────────────────────────────────────────────────────────────────
//
// ╒══════════ Writer (WRITER_SIZE = 16 bytes) ══════════╕
//  +0   u32 data         buffer (alloc); moves when it grows
//  +4   u32 cap          its capacity
//  +8   u32 length       bytes written      (length <= cap)
//  +12  u32 initialCap   what writerReset shrinks back to
// ╘═════════════════════════════════════════════════════╛
// Any encode call may move `data`: JS re-reads writerData after encoding.

// @ts-ignore: decorator
@inline const W_DATA: usize = 0;
// @ts-ignore: decorator
@inline const W_CAP: usize = 4;
// @ts-ignore: decorator
@inline const W_LENGTH: usize = 8;
// @ts-ignore: decorator
@inline const W_INITIAL_CAP: usize = 12;
// @ts-ignore: decorator
@inline const WRITER_SIZE: usize = 16;
/** writerReset gives back a buffer larger than this. */
// @ts-ignore: decorator
@inline const WRITER_SHRINK_ABOVE: usize = 256 * 1024;
// @ts-ignore: decorator
@inline const WRITER_MIN_CAP: u32 = 64;
/** A writer never grows past this (Wasm32 addresses; alloc's largest block is 1 GiB). */
// @ts-ignore: decorator
@inline const WRITER_MAX_CAP: u64 = 0x3FFFF000;

/** A new writer with `initialCap` bytes, or 0 when out of memory. */
export function writerNew(initialCap: u32): usize {
  let w = alloc(WRITER_SIZE);
  if (w == 0) return 0;
  let cap = max<u32>(initialCap, WRITER_MIN_CAP);
  if (<u64>cap > WRITER_MAX_CAP) cap = <u32>WRITER_MAX_CAP;
  let data = alloc(<usize>cap);
  if (data == 0) {
    free(w);
    return 0;
  }
  store<u32>(w, <u32>data, W_DATA);
  store<u32>(w, cap, W_CAP);
  store<u32>(w, 0, W_LENGTH);
  store<u32>(w, cap, W_INITIAL_CAP);
  return w;
}

export function writerFree(w: usize): void {
  if (w == 0) return;
  free(<usize>load<u32>(w, W_DATA));
  free(w);
}

export function writerData(w: usize): usize {
  return <usize>load<u32>(w, W_DATA);
}

export function writerLength(w: usize): u32 {
  return load<u32>(w, W_LENGTH);
}

export function writerCapacity(w: usize): u32 {
  return load<u32>(w, W_CAP);
}

/** Forgets everything written; a buffer grown past 256 KiB goes back to its first size. */
export function writerReset(w: usize): void {
  store<u32>(w, 0, W_LENGTH);
  let cap = <usize>load<u32>(w, W_CAP);
  let initial = <usize>load<u32>(w, W_INITIAL_CAP);
  if (cap > WRITER_SHRINK_ABOVE && cap > initial << 1) {
    let small = alloc(initial);
    if (small != 0) {
      free(<usize>load<u32>(w, W_DATA));
      store<u32>(w, <u32>small, W_DATA);
      store<u32>(w, <u32>initial, W_CAP);
    }
  }
}

/** Slow path of writerEnsure: grows to at least `length + n` (doubling). */
// @ts-ignore: decorator
@noinline function writerGrow(w: usize, n: u32): usize {
  let length = load<u32>(w, W_LENGTH);
  let want = <u64>length + <u64>n;
  if (want > WRITER_MAX_CAP) return 0;
  let cap = <u64>load<u32>(w, W_CAP);
  let newCap = max<u64>(want, min<u64>(cap << 1, WRITER_MAX_CAP));
  let data = realloc(<usize>load<u32>(w, W_DATA), <usize>newCap, <usize>length);
  if (data == 0) return 0;
  store<u32>(w, <u32>data, W_DATA);
  store<u32>(w, <u32>min<u64>(<u64>allocSize(data), WRITER_MAX_CAP), W_CAP);
  return data + <usize>length;
}

/** Capacity for `n` more bytes; returns the current end (where they go), 0 when out of memory. */
export function writerEnsure(w: usize, n: u32): usize {
  let length = load<u32>(w, W_LENGTH);
  if (<u64>length + <u64>n <= <u64>load<u32>(w, W_CAP)) return <usize>load<u32>(w, W_DATA) + <usize>length;
  return writerGrow(w, n);
}

/** Marks `n` bytes written at the end (after writerEnsure(n)). */
export function writerAdvance(w: usize, n: u32): void {
  let length = <u64>load<u32>(w, W_LENGTH) + <u64>n;
  store<u32>(w, <u32>min<u64>(length, <u64>load<u32>(w, W_CAP)), W_LENGTH);
}

/** writerEnsure + writerAdvance: `n` bytes at the end for the caller to fill; 0 when out of memory. */
export function writerReserve(w: usize, n: u32): usize {
  let p = writerEnsure(w, n);
  if (p != 0) store<u32>(w, load<u32>(w, W_LENGTH) + n, W_LENGTH);
  return p;
}

/** Drops the bytes after `length` (undoes a partly written frame). */
export function writerTruncate(w: usize, length: u32): void {
  if (length < load<u32>(w, W_LENGTH)) store<u32>(w, length, W_LENGTH);
}

/** Writes a frame header (flags 0 unless given). */
// @ts-ignore: decorator
@inline function putHeader(p: usize, body: u32, op: u32, req: u32, flags: u32 = 0): void {
  store<u32>(p, body + LENGTH_OVERHEAD);
  store<u32>(p, PROTOCOL_VERSION | (op << 8) | (flags << 16), 4); // ver, op, flags
  store<u32>(p, req, 8);
}

/** A header-only frame. */
// @ts-ignore: decorator
@inline function encodeEmptyFrame(w: usize, op: u32, req: u32): i32 {
  let p = writerReserve(w, HEADER_BYTES);
  if (p == 0) return 0;
  putHeader(p, 0, op, req);
  return 1;
}

/** A frame whose body is `size` bytes of u32 words (filled by the caller). */
// @ts-ignore: decorator
@inline function encodeFixed(w: usize, op: u32, req: u32, size: u32): usize {
  let p = writerReserve(w, HEADER_BYTES + size);
  if (p == 0) return 0;
  putHeader(p, size, op, req);
  return p + <usize>HEADER_BYTES;
}

// @ts-ignore: decorator
@inline function validName(len: u32): bool {
  return len - 1 < MAX_NAME_BYTES; // 1..255 (0 wraps around)
}

/**
 * Header + `name queue` + `name topic` + `extra` more body bytes. Returns the pointer after
 * the names (where the caller writes the extra bytes), 0 on OOM or an invalid name length.
 */
// @ts-ignore: decorator
@inline function encodeNamed(w: usize, op: u32, req: u32, q: usize, ql: u32, t: usize, tl: u32, extra: u32): usize {
  if (!validName(ql) || !validName(tl)) return 0;
  let names = 2 + ql + tl;
  if (<u64>extra + <u64>names > <u64>0xFFFFFFFF - <u64>(HEADER_BYTES + LENGTH_OVERHEAD)) return 0;
  let body = names + extra;
  let p = writerReserve(w, HEADER_BYTES + body);
  if (p == 0) return 0;
  putHeader(p, body, op, req);
  p += <usize>HEADER_BYTES;
  store<u8>(p, <u8>ql);
  memory.copy(p + 1, q, <usize>ql);
  p += 1 + <usize>ql;
  store<u8>(p, <u8>tl);
  memory.copy(p + 1, t, <usize>tl);
  return p + 1 + <usize>tl;
}

// Replies. Each returns 1 on success, 0 when out of memory (nothing written).

export function encodeOk(w: usize, reqId: u32): i32 {
  return encodeEmptyFrame(w, OP_OK, reqId);
}

export function encodePong(w: usize, reqId: u32): i32 {
  return encodeEmptyFrame(w, OP_PONG, reqId);
}

export function encodeEmpty(w: usize, reqId: u32): i32 {
  return encodeEmptyFrame(w, OP_EMPTY, reqId);
}

export function encodeLengthOk(w: usize, reqId: u32, length: u32): i32 {
  let p = encodeFixed(w, OP_LENGTH_OK, reqId, 4);
  if (p == 0) return 0;
  store<u32>(p, length);
  return 1;
}

/** ERROR: `code` and UTF-8 text (cut at 65535 bytes: the length field is u16). */
export function encodeError(w: usize, reqId: u32, code: u32, textPtr: usize, textLen: u32): i32 {
  let len = min<u32>(textLen, 0xFFFF);
  let p = encodeFixed(w, OP_ERROR, reqId, 4 + len);
  if (p == 0) return 0;
  store<u16>(p, <u16>code);
  store<u16>(p, <u16>len, 2);
  memory.copy(p + 4, textPtr, <usize>len);
  return 1;
}

/** STATS_JSON: writes the header; returns where the caller writes the `len` bytes of JSON (0 on OOM). */
export function encodeStatsJson(w: usize, reqId: u32, len: u32): usize {
  if (len > MAX_FRAME_LIMIT) return 0;
  return encodeFixed(w, OP_STATS_JSON, reqId, len);
}

/** HELLO_OK for this protocol version; `ver` is the server's version string (1..255 bytes, else 0 is returned). */
export function encodeHelloOk(w: usize, reqId: u32, maxMessageBytes: u32, maxFrameBytes: u32, verPtr: usize, verLen: u32): i32 {
  if (!validName(verLen)) return 0;
  let p = encodeFixed(w, OP_HELLO_OK, reqId, 13 + verLen);
  if (p == 0) return 0;
  store<u32>(p, PROTOCOL_VERSION); // u16 version, u16 reserved
  store<u32>(p, maxMessageBytes, 4);
  store<u32>(p, maxFrameBytes, 8);
  store<u8>(p, <u8>verLen, 12);
  memory.copy(p + 13, verPtr, <usize>verLen);
  return 1;
}

// Records frames: begin, records, end.

/**
 * Starts a MESSAGES or DELIVER frame (any op whose body is just `records`; `flags`
 * FLAG_LEASED for leased records): writes the header and a count placeholder. Returns the
 * mark for encodeRecordsEnd (the frame's offset in the writer), or -1 when out of memory.
 */
export function encodeRecordsBegin(w: usize, op: u32, reqId: u32, flags: u32): i32 {
  let mark = load<u32>(w, W_LENGTH);
  let p = writerReserve(w, HEADER_BYTES + 4);
  if (p == 0) return -1;
  putHeader(p, 4, op, reqId, flags);
  store<u32>(p, 0, HEADER_BYTES);
  return <i32>mark;
}

/** Starts a PUSH_MANY frame (header, names, count placeholder). -1 on OOM or an invalid name. */
export function encodePushManyBegin(w: usize, reqId: u32, q: usize, ql: u32, t: usize, tl: u32): i32 {
  let mark = load<u32>(w, W_LENGTH);
  let p = encodeNamed(w, OP_PUSH_MANY, reqId, q, ql, t, tl, 4);
  if (p == 0) return -1;
  store<u32>(p, 0);
  return <i32>mark;
}

/** Starts a RETURN frame (as encodePushManyBegin). -1 on OOM or an invalid name. */
export function encodeReturnBegin(w: usize, reqId: u32, q: usize, ql: u32, t: usize, tl: u32): i32 {
  let mark = load<u32>(w, W_LENGTH);
  let p = encodeNamed(w, OP_RETURN, reqId, q, ql, t, tl, 4);
  if (p == 0) return -1;
  store<u32>(p, 0);
  return <i32>mark;
}

/** Appends one record of `len` bytes; returns where the caller writes them, 0 on OOM. */
export function encodeRecord(w: usize, len: u32): usize {
  if (len > 0xFFFFFFFF - 4) return 0;
  let p = writerReserve(w, 4 + len);
  if (p == 0) return 0;
  store<u32>(p, len);
  return p + 4;
}

/** Finishes the records frame started at `mark`: patches its length and record count. */
export function encodeRecordsEnd(w: usize, mark: u32, count: u32): void {
  let p = <usize>load<u32>(w, W_DATA) + <usize>mark;
  store<u32>(p, load<u32>(w, W_LENGTH) - mark - 4);
  let countAt = p + <usize>HEADER_BYTES;
  let op = <u32>load<u8>(p, 5);
  if (op == OP_PUSH_MANY || op == OP_RETURN || op == OP_PUSH_MANY_EX) {
    countAt += 1 + <usize>load<u8>(countAt);
    countAt += 1 + <usize>load<u8>(countAt);
    if (op == OP_PUSH_MANY_EX) countAt += 4;
  }
  store<u32>(countAt, count);
}

/** Starts a PUSH_MANY_EX frame (header, names, delayMs, count placeholder). -1 on OOM or an invalid name. */
export function encodePushManyExBegin(w: usize, reqId: u32, q: usize, ql: u32, t: usize, tl: u32, delayMs: u32): i32 {
  let mark = load<u32>(w, W_LENGTH);
  let p = encodeNamed(w, OP_PUSH_MANY_EX, reqId, q, ql, t, tl, 8);
  if (p == 0) return -1;
  store<u32>(p, delayMs);
  store<u32>(p, 0, 4);
  return <i32>mark;
}

/** Appends one stored record (a RETURN's): header from (meta, id), `len` bytes for the caller. 0 on OOM. */
export function encodeStoredRecord(w: usize, len: u32, meta: u32, idLo: u32, idHi: u32): usize {
  if (len > 0xFFFFFFFF - 16) return 0;
  let p = writerReserve(w, 16 + len);
  if (p == 0) return 0;
  store<u32>(p, len);
  store<u32>(p, meta, 4);
  store<u32>(p, idLo, 8);
  store<u32>(p, idHi, 12);
  return p + 16;
}

/**
 * PUSH_EX: writes all but the data; returns where the caller writes `dataLen` bytes (0 on
 * OOM / bad name). The dedupId (0..255 bytes, 0 = none) is copied from (d, dl).
 */
export function encodePushEx(w: usize, reqId: u32, q: usize, ql: u32, t: usize, tl: u32, delayMs: u32, d: usize, dl: u32, dataLen: u32): usize {
  if (dl > 255 || <u64>dataLen + 5 + <u64>dl > 0xFFFFFF00) return 0;
  let p = encodeNamed(w, OP_PUSH_EX, reqId, q, ql, t, tl, 5 + dl + dataLen);
  if (p == 0) return 0;
  store<u32>(p, delayMs);
  store<u8>(p, <u8>dl, 4);
  memory.copy(p + 5, d, <usize>dl);
  return p + 5 + <usize>dl;
}

export function encodePopLeased(w: usize, reqId: u32, q: usize, ql: u32, t: usize, tl: u32, max: u32, timeoutMs: u32, leaseMs: u32): i32 {
  let p = encodeNamed(w, OP_POP_LEASED, reqId, q, ql, t, tl, 12);
  if (p == 0) return 0;
  store<u32>(p, max);
  store<u32>(p, timeoutMs, 4);
  store<u32>(p, leaseMs, 8);
  return 1;
}

export function encodeStats(w: usize, reqId: u32, q: usize, ql: u32, t: usize, tl: u32): i32 {
  return encodeNamed(w, OP_STATS, reqId, q, ql, t, tl, 0) != 0 ? 1 : 0;
}

/**
 * SETTLE with room for `count` entries: returns where the caller writes them (16 bytes
 * each: u64 lease, u32 kind, u32 arg), 0 on OOM or count 0.
 */
export function encodeSettle(w: usize, reqId: u32, count: u32): usize {
  if (count == 0 || count > 0x0FFFFFFF) return 0;
  let p = encodeFixed(w, OP_SETTLE, reqId, 4 + count * SETTLE_ENTRY_BYTES);
  if (p == 0) return 0;
  store<u32>(p, count);
  return p + 4;
}

/**
 * CONFIGURE: writes all but the settings block; returns where the caller writes its
 * `settingsLen` bytes (docs/protocol.md), 0 on OOM / bad name.
 */
export function encodeConfigure(w: usize, reqId: u32, q: usize, ql: u32, mask: u32, settingsLen: u32): usize {
  if (!validName(ql) || settingsLen > 1024) return 0;
  let body = 1 + ql + 4 + settingsLen;
  let p = writerReserve(w, HEADER_BYTES + body);
  if (p == 0) return 0;
  putHeader(p, body, OP_CONFIGURE, reqId);
  p += <usize>HEADER_BYTES;
  store<u8>(p, <u8>ql);
  memory.copy(p + 1, q, <usize>ql);
  p += 1 + <usize>ql;
  store<u32>(p, mask);
  return p + 4;
}

// Replies for the at-least-once requests.

/** SETTLED with room for `count` status bytes: returns where they go (0 on OOM). */
export function encodeSettledBegin(w: usize, reqId: u32, count: u32): usize {
  let p = encodeFixed(w, OP_SETTLED, reqId, 4 + count);
  if (p == 0) return 0;
  store<u32>(p, count);
  return p + 4;
}

/** SETTINGS: the settings block of `len` bytes at `src` (queues.ts queueSettingsInto writes it). */
export function encodeSettings(w: usize, reqId: u32, src: usize, len: u32): i32 {
  let p = encodeFixed(w, OP_SETTINGS, reqId, len);
  if (p == 0) return 0;
  memory.copy(p, src, <usize>len);
  return 1;
}

export function encodeStatsOk(w: usize, reqId: u32, src: usize): i32 {
  let p = encodeFixed(w, OP_STATS_OK, reqId, 12);
  if (p == 0) return 0;
  memory.copy(p, src, 12);
  return 1;
}

// Requests. Each returns 1 on success, 0 when out of memory or a name is not 1..255 bytes.

export function encodeHello(w: usize, reqId: u32, minVersion: u32, maxVersion: u32): i32 {
  let p = encodeFixed(w, OP_HELLO, reqId, 8);
  if (p == 0) return 0;
  store<u16>(p, <u16>minVersion);
  store<u16>(p, <u16>maxVersion, 2);
  store<u32>(p, 0, 4);
  return 1;
}

export function encodePing(w: usize, reqId: u32): i32 {
  return encodeEmptyFrame(w, OP_PING, reqId);
}

export function encodeServerStats(w: usize, reqId: u32): i32 {
  return encodeEmptyFrame(w, OP_SERVER_STATS, reqId);
}

export function encodeShutdown(w: usize, reqId: u32): i32 {
  return encodeEmptyFrame(w, OP_SHUTDOWN, reqId);
}

/** PUSH: writes all but the data; returns where the caller writes `dataLen` bytes (0 on OOM / bad name). */
export function encodePush(w: usize, reqId: u32, q: usize, ql: u32, t: usize, tl: u32, dataLen: u32): usize {
  return encodeNamed(w, OP_PUSH, reqId, q, ql, t, tl, dataLen);
}

export function encodePop(w: usize, reqId: u32, q: usize, ql: u32, t: usize, tl: u32, timeoutMs: u32): i32 {
  let p = encodeNamed(w, OP_POP, reqId, q, ql, t, tl, 4);
  if (p == 0) return 0;
  store<u32>(p, timeoutMs);
  return 1;
}

export function encodePopMany(w: usize, reqId: u32, q: usize, ql: u32, t: usize, tl: u32, max: u32, timeoutMs: u32): i32 {
  let p = encodeNamed(w, OP_POP_MANY, reqId, q, ql, t, tl, 8);
  if (p == 0) return 0;
  store<u32>(p, max);
  store<u32>(p, timeoutMs, 4);
  return 1;
}

export function encodeLength(w: usize, reqId: u32, q: usize, ql: u32, t: usize, tl: u32): i32 {
  return encodeNamed(w, OP_LENGTH, reqId, q, ql, t, tl, 0) != 0 ? 1 : 0;
}

export function encodeSubscribe(w: usize, reqId: u32, q: usize, ql: u32, t: usize, tl: u32, prefetch: u32, options: u32, leaseMs: u32): i32 {
  let p = encodeNamed(w, OP_SUBSCRIBE, reqId, q, ql, t, tl, 12);
  if (p == 0) return 0;
  store<u32>(p, prefetch);
  store<u32>(p, options, 4);
  store<u32>(p, leaseMs, 8);
  return 1;
}

export function encodeUnsubscribe(w: usize, reqId: u32, subscriptionId: u32): i32 {
  let p = encodeFixed(w, OP_UNSUBSCRIBE, reqId, 4);
  if (p == 0) return 0;
  store<u32>(p, subscriptionId);
  return 1;
}

export function encodeCredit(w: usize, reqId: u32, subscriptionId: u32, credit: u32): i32 {
  let p = encodeFixed(w, OP_CREDIT, reqId, 8);
  if (p == 0) return 0;
  store<u32>(p, subscriptionId);
  store<u32>(p, credit, 4);
  return 1;
}

export function encodeCancel(w: usize, reqId: u32, targetRequestId: u32): i32 {
  let p = encodeFixed(w, OP_CANCEL, reqId, 4);
  if (p == 0) return 0;
  store<u32>(p, targetRequestId);
  return 1;
}
