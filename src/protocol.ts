// The wire protocol's constants for TypeScript: the single source of truth on this side.
// docs/protocol.md is the contract and assembly/codec.ts implements it; test/protocol.test.ts
// parses the doc's tables and checks they agree with this file. Nothing here does I/O.

/** Protocol version carried in every frame's `ver` byte and negotiated by HELLO. */
export const PROTOCOL_VERSION = 2;

/** length u32, ver u8, op u8, flags u16, requestId u32. */
export const HEADER_BYTES = 12;

/** Opcodes: requests are < 0x80, replies >= 0x80. */
export const Op = Object.freeze({
  // Requests (client -> broker).
  HELLO: 0x01,
  PING: 0x02,
  AUTH: 0x03,
  SERVER_STATS: 0x04,
  SHUTDOWN: 0x05,
  PUSH: 0x10,
  PUSH_MANY: 0x11,
  POP: 0x12,
  POP_MANY: 0x13,
  LENGTH: 0x14,
  SUBSCRIBE: 0x15,
  UNSUBSCRIBE: 0x16,
  CREDIT: 0x17,
  CANCEL: 0x18,
  RETURN: 0x19,
  PUSH_EX: 0x1A,
  PUSH_MANY_EX: 0x1B,
  POP_LEASED: 0x1C,
  SETTLE: 0x1D,
  CONFIGURE: 0x1E,
  STATS: 0x1F,
  // Replies (broker -> client).
  OK: 0x80,
  HELLO_OK: 0x81,
  PONG: 0x82,
  EMPTY: 0x83,
  MESSAGES: 0x84,
  LENGTH_OK: 0x85,
  DELIVER: 0x86,
  SETTLED: 0x87,
  SETTINGS: 0x88,
  STATS_OK: 0x89,
  STATS_JSON: 0x8C,
  ERROR: 0x8F,
} as const);

export type OpName = keyof typeof Op;
export type OpCode = (typeof Op)[OpName];

const opNames = new Map<number, OpName>(Object.entries(Op).map(([name, code]) => [code, name as OpName]));

/** `PUSH` for 0x10; `0x7e` style hex for an opcode this protocol does not know. */
export function opName(op: number): string {
  return opNames.get(op) ?? (op === OP_REJECT ? 'REJECT' : `0x${op.toString(16).padStart(2, '0')}`);
}

/**
 * Not an opcode on the wire: the decoder's descriptor for a well-framed frame it refuses
 * (requestId = the frame's, arg0 = the error code, arg1 = the frame's opcode).
 */
export const OP_REJECT = 0xFD;

/** Frame header flags (send 0 unless a flag applies; ignore unknown bits). */
export const FLAGS = Object.freeze({
  /** MESSAGES/DELIVER: leased records (each carries a u64 lease handle after its id). */
  LEASED: 1 << 0,
} as const);

/** SUBSCRIBE `options` bits. */
export const SUBSCRIBE_EXCLUSIVE = 1 << 0;
/** SUBSCRIBE: deliveries are leased and must be settled (ack: true). */
export const SUBSCRIBE_ACK = 1 << 1;

/** SETTLE entry kinds. */
export const SettleKind = Object.freeze({ ACK: 1, NACK: 2, EXTEND: 3, REJECT: 4 } as const);

/** Bytes per SETTLE entry: u64 lease, u32 kind, u32 arg. */
export const SETTLE_ENTRY_BYTES = 16;

/** Stored record header in MESSAGES/DELIVER/RETURN: u32 len, u32 meta, u64 id. */
export const RECORD_HEADER_BYTES = 16;
/** Leased record header (FLAGS.LEASED): the stored header + u64 lease. */
export const LEASED_RECORD_HEADER_BYTES = 24;
/** `meta`: deliveries in the low 24 bits, flags above. */
export const META_DELIVERIES_MASK = 0x00FFFFFF;
/** `meta` flag: the data starts with u8 reason, u8 topicLength, topic (a dead letter's origin). */
export const META_DEAD_LETTER = 1 << 24;
/** Dead-letter reasons (the prefix's first byte). */
export const DEAD_LETTER_REASONS = Object.freeze({ 1: 'max-deliveries', 2: 'rejected' } as const);

/** CONFIGURE mask bits: which settings the patch sets. */
export const SettingsMask = Object.freeze({
  LEASE_MS: 1, MAX_DELIVERIES: 2, DEAD_LETTER_TOPIC: 4, MAX_LENGTH: 8, OVERFLOW: 16, DEDUP_WINDOW_MS: 32, DURABLE: 64,
} as const);

/** The settings block of CONFIGURE/SETTINGS before the dead-letter name. */
export const SETTINGS_FIXED_BYTES = 35;

/** Queue settings every queue starts with (assembly/queues.ts holds the same). */
export const QUEUE_DEFAULTS = Object.freeze({
  leaseMs: 30_000,
  maxDeliveries: Infinity,
  deadLetterTopic: null,
  maxLength: Infinity,
  overflow: 'reject',
  dedupWindowMs: 120_000,
} as const);

/** dedupId: 1..255 bytes of UTF-8. */
export const MAX_DEDUP_ID_BYTES = 255;

/** Wire error codes by name. */
const ERROR_CODES = {
  ERR_PROTOCOL: 1,
  ERR_INVALID_ARGUMENT: 2,
  ERR_MESSAGE_TOO_LARGE: 3,
  ERR_EXCLUSIVE: 4,
  ERR_ABORTED: 5,
  ERR_CONNECTION_CLOSED: 6,
  ERR_NO_MEMORY: 7,
  ERR_UNSUPPORTED_VERSION: 8,
  ERR_UNKNOWN_OPCODE: 9,
  ERR_NOT_FOUND: 10,
  ERR_LIMIT: 11,
  ERR_QUEUE_FULL: 12,
  ERR_LEASE_EXPIRED: 13,
  ERR_UNAUTHORIZED: 14,
  ERR_FORBIDDEN: 15,
  ERR_STORAGE: 16,
} as const;

/** The stable error code strings users switch on (`err.code`). */
export type ErrorCode = keyof typeof ERROR_CODES;

const errorNames: readonly ErrorCode[] = (() => {
  const names: ErrorCode[] = [];
  for (const [name, code] of Object.entries(ERROR_CODES)) names[code] = name as ErrorCode;
  return names;
})();

/**
 * Error codes: `ErrorCode.ERR_PROTOCOL` is the wire number (1); `ErrorCode.nameOf(1)` is
 * `'ERR_PROTOCOL'` (`'ERR_PROTOCOL'` too for a number no version of the protocol defines,
 * since such a frame is malformed); `ErrorCode.codeOf('ERR_PROTOCOL')` is 1.
 */
export const ErrorCode = Object.freeze({
  ...ERROR_CODES,
  nameOf(code: number): ErrorCode {
    return errorNames[code] ?? 'ERR_PROTOCOL';
  },
  codeOf(name: ErrorCode): number {
    return ERROR_CODES[name];
  },
  isErrorCode(name: unknown): name is ErrorCode {
    return typeof name === 'string' && Object.hasOwn(ERROR_CODES, name);
  },
});

/** Every error code string with its wire number, in wire order. */
export const ERROR_CODE_LIST: readonly (readonly [ErrorCode, number])[] = Object.freeze(
  Object.entries(ERROR_CODES).map(([name, code]) => Object.freeze([name as ErrorCode, code] as const)),
);

// ── Limits ──────────────────────────────────────────────────────────────────────────

/** Default largest message (PUSH data, PUSH_MANY record): 1 MiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;

/** Room for a frame's names and counts around its largest message. */
export const FRAME_OVERHEAD_BYTES = 1024;

/** Smallest default maxFrameBytes, so PUSH_MANY batches stay large with small messages: 8 MiB. */
export const MIN_DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024;

/**
 * Default largest frame body (`length - 8`): `max(maxMessageBytes + 1 KiB, 8 MiB)`. A frame
 * with a larger body is skipped and answered ERR_MESSAGE_TOO_LARGE.
 */
export function defaultMaxFrameBytes(maxMessageBytes: number): number {
  return Math.max(maxMessageBytes + FRAME_OVERHEAD_BYTES, MIN_DEFAULT_MAX_FRAME_BYTES);
}

/** Largest maxFrameBytes the codec honours (larger values are clamped). */
export const MAX_FRAME_BYTES_LIMIT = 0x3FFF0000;

/** Queue and topic names are 1..255 bytes of UTF-8. */
export const MAX_NAME_BYTES = 255;

/** ERROR text is at most this many bytes (u16 length; longer text is cut). */
export const MAX_ERROR_TEXT_BYTES = 0xFFFF;

/** AUTH: the longest user name (a `u8` length) and token, in bytes. */
export const MAX_AUTH_USER_BYTES = 255;
export const MAX_AUTH_TOKEN_BYTES = 4096;

/** POP/POP_MANY `timeoutMs` that waits until a message arrives. */
export const TIMEOUT_INFINITE = 0xFFFFFFFF;

// ── Decoder descriptors (assembly/codec.ts) ───────────────────────────────────────────

/** Bytes per descriptor. */
export const DESC_SIZE = 48;
/** Descriptors one decoderNext call fills at most; a call returning exactly this is repeated. */
export const DESC_CAPACITY = 64;

/** Descriptor field offsets (u32 each). See assembly/codec.ts for the per-op meaning. */
export const DESC_OP = 0;          // op (low byte) | flags << 16
export const DESC_REQUEST_ID = 4;
export const DESC_QUEUE_PTR = 8;
export const DESC_QUEUE_LEN = 12;  // HELLO_OK: the protocol version
export const DESC_TOPIC_PTR = 16;
export const DESC_TOPIC_LEN = 20;
export const DESC_DATA_PTR = 24;
export const DESC_DATA_LEN = 28;
export const DESC_ARG0 = 32;
export const DESC_ARG1 = 36;
export const DESC_ARG2 = 40;
export const DESC_ARG3 = 44;
