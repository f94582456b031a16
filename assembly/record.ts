// The message record: one layout shared by the FIFO (fifo.ts), hand-off blocks
// (waiters.ts), delayed messages (delays.ts), leases (leases.ts) and the MESSAGES/DELIVER
// replies (codec.ts), so a popped run of records goes from a topic into a reply with one
// memory.copy.
//
// ╒══════════════ stored record (RECORD_HEADER = 16 bytes + data) ══════════════╕
//  +0   u32 len         bytes of data (after the header)
//  +4   u32 meta        deliveries (low 24 bits) | flags << 24
//  +8   u64 id          assigned at push from the topic's counter; kept on redelivery
//  +16  data            len bytes
// ╘══════════════════════════════════════════════════════════════════════════════╛
// `deliveries` counts deliveries so far: 0 in the FIFO for a message never delivered; a
// delivery copies the record with deliveries + 1, which is what the consumer sees.
// Flag META_DEAD_LETTER: the data starts with `u8 reason, u8 topicLen, topic bytes` (the
// topic it was dead-lettered from) and `len` counts that prefix too.
//
// On the wire, requests carry the short push record (PUSH_MANY, PUSH_MANY_EX):
//   [u32 len][data]                                   PUSH_RECORD_HEADER = 4
// replies carry stored records, and leased deliveries (frame flag LEASES) one more field:
//   [u32 len][u32 meta][u64 id][u64 lease][data]      LEASED_RECORD_HEADER = 24

// @ts-ignore: decorator
@inline export const RECORD_HEADER: usize = 16;
// @ts-ignore: decorator
@inline export const R_LEN: usize = 0;
// @ts-ignore: decorator
@inline export const R_META: usize = 4;
// @ts-ignore: decorator
@inline export const R_ID: usize = 8;
// @ts-ignore: decorator
@inline export const PUSH_RECORD_HEADER: usize = 4;
// @ts-ignore: decorator
@inline export const LEASED_RECORD_HEADER: usize = 24;
// @ts-ignore: decorator
@inline export const LR_LEASE: usize = 16;

/** Frame flag on MESSAGES/DELIVER: the records are leased records. */
// @ts-ignore: decorator
@inline export const FLAG_LEASED: u32 = 1;

// @ts-ignore: decorator
@inline export const META_DELIVERIES: u32 = 0x00FFFFFF;
// @ts-ignore: decorator
@inline export const META_DEAD_LETTER: u32 = 1 << 24;

/** Dead-letter reasons (the prefix's first byte). */
// @ts-ignore: decorator
@inline export const REASON_MAX_DELIVERIES: u32 = 1;
// @ts-ignore: decorator
@inline export const REASON_REJECTED: u32 = 2;

/** Bytes of the stored record at `rec`, header included. */
// @ts-ignore: decorator
@inline export function recordSize(rec: usize): usize {
  return RECORD_HEADER + <usize>load<u32>(rec, R_LEN);
}

// @ts-ignore: decorator
@inline export function deliveriesOf(meta: u32): u32 {
  return meta & META_DELIVERIES;
}

/** `meta` after one more delivery (the count saturates instead of wrapping into the flags). */
// @ts-ignore: decorator
@inline export function delivered(meta: u32): u32 {
  return (meta & META_DELIVERIES) == META_DELIVERIES ? meta : meta + 1;
}

/** Writes a stored record header at `at`. */
// @ts-ignore: decorator
@inline export function putRecordHeader(at: usize, len: usize, meta: u32, id: u64): void {
  store<u32>(at, <u32>len, R_LEN);
  store<u32>(at, meta, R_META);
  store<u64>(at, id, R_ID);
}

/**
 * Adds one delivery to each of the `n` stored records at `p` (a run just copied into a
 * reply): the consumer sees the delivery it is receiving.
 */
export function markDelivered(p: usize, n: u32): void {
  for (let i: u32 = 0; i < n; i++) {
    store<u32>(p, delivered(load<u32>(p, R_META)), R_META);
    p += recordSize(p);
  }
}
