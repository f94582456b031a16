// docs/protocol.md is the contract; src/protocol.ts holds the same numbers for TypeScript.
// These tests parse the doc's tables and fail when the two drift apart.
import t from 'tap';
import { readFileSync } from 'node:fs';
import * as protocol from '../src/protocol.ts';
import {
  Op, ErrorCode, ERROR_CODE_LIST, PROTOCOL_VERSION, HEADER_BYTES, MAX_NAME_BYTES, TIMEOUT_INFINITE,
  DEFAULT_MAX_MESSAGE_BYTES, defaultMaxFrameBytes, opName, OP_REJECT, FLAGS, SUBSCRIBE_EXCLUSIVE, SUBSCRIBE_ACK,
  SettleKind, SETTLE_ENTRY_BYTES, RECORD_HEADER_BYTES, LEASED_RECORD_HEADER_BYTES, META_DELIVERIES_MASK,
  META_DEAD_LETTER, DEAD_LETTER_REASONS, SettingsMask, SETTINGS_FIXED_BYTES, QUEUE_DEFAULTS, MAX_DEDUP_ID_BYTES,
  MAX_FRAME_BYTES_LIMIT,
} from '../src/protocol.ts';
import { TurboError, errorFromWire } from '../src/errors.ts';

const doc = readFileSync(new URL('../docs/protocol.md', import.meta.url), 'utf8');

/** The table rows (cells, trimmed, backticks removed) under the `## heading` section. */
function tableRows(heading: string): string[][] {
  const start = doc.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`docs/protocol.md has no "## ${heading}" section`);
  const end = doc.indexOf('\n## ', start + 1);
  const section = doc.slice(start, end < 0 ? undefined : end);
  return section.split('\n')
    .filter((line) => line.startsWith('|') && !/^\|\s*-/.test(line))
    .slice(1) // the header row
    .map((line) => line.split('|').slice(1, -1).map((cell) => cell.trim().replaceAll('`', '')));
}

function opcodeTable(heading: string): [string, number][] {
  return tableRows(heading).map(([code, name]) => [name!, Number(code)]);
}

t.test('the request opcodes in docs/protocol.md match Op', async (t) => {
  const rows = opcodeTable('Requests (client → broker)');
  t.ok(rows.length >= 11, 'the table was found');
  const fromCode = Object.entries(Op).filter(([, code]) => code < 0x80);
  t.strictSame(Object.fromEntries(rows), Object.fromEntries(fromCode));
  for (const [, code] of rows) t.ok(code < 0x80, `request 0x${code.toString(16)} < 0x80`);
});

t.test('the reply opcodes in docs/protocol.md match Op', async (t) => {
  const rows = opcodeTable('Replies (broker → client)');
  t.ok(rows.length >= 8, 'the table was found');
  const fromCode = Object.entries(Op).filter(([, code]) => code >= 0x80);
  t.strictSame(Object.fromEntries(rows), Object.fromEntries(fromCode));
});

t.test('opcodes are unique and OP_REJECT is none of them', async (t) => {
  const codes = Object.values(Op);
  t.equal(new Set(codes).size, codes.length);
  t.notOk(codes.includes(OP_REJECT as never));
  t.ok(Object.isFrozen(Op));
  t.equal(opName(Op.PUSH_MANY), 'PUSH_MANY');
  t.equal(opName(0x7e), '0x7e');
});

t.test('the error codes in docs/protocol.md match ErrorCode', async (t) => {
  const rows = tableRows('Error codes').map(([code, name]) => [name!, Number(code)] as const);
  t.ok(rows.length >= 11, 'the table was found');
  t.strictSame(rows, ERROR_CODE_LIST.map(([name, code]) => [name, code]));
  for (const [name, code] of rows) {
    t.equal(ErrorCode[name as keyof typeof ErrorCode], code, name);
    t.equal(ErrorCode.nameOf(code), name);
    t.equal(ErrorCode.codeOf(name as never), code);
  }
});

t.test('the limits in docs/protocol.md match the constants', async (t) => {
  const limits = new Map(tableRows('Limits').map(([name, value]) => [name!, value!]));
  t.match(limits.get('maxMessageBytes'), new RegExp(`\\(${DEFAULT_MAX_MESSAGE_BYTES.toLocaleString('en-US')}\\)`));
  t.match(limits.get('maxFrameBytes'), /max\(maxMessageBytes \+ 1 KiB, 8 MiB\)/);
  t.equal(defaultMaxFrameBytes(DEFAULT_MAX_MESSAGE_BYTES), 8 * 1024 * 1024);
  t.equal(defaultMaxFrameBytes(64 * 1024 * 1024), 64 * 1024 * 1024 + 1024);
  t.match(limits.get('name length'), new RegExp(`1\\.\\.${MAX_NAME_BYTES} bytes`));
  t.match(doc, /`0xFFFFFFFF` waits until a message arrives/);
  t.equal(TIMEOUT_INFINITE, 0xFFFFFFFF);
});

t.test('the frame header in docs/protocol.md is 12 bytes of the current version (2)', async (t) => {
  t.equal(PROTOCOL_VERSION, 2);
  t.match(doc, new RegExp(`# turbomq wire protocol, version ${PROTOCOL_VERSION}\n`));
  t.match(doc, new RegExp(`\\| \`ver\` \\| protocol version, \`${PROTOCOL_VERSION}\`\\.`));
  t.match(doc, new RegExp(`\`ver\` is \`${PROTOCOL_VERSION}\` and \`length >= 8\``));
  t.match(doc, /│ requestId u32\s+│ body/);
  t.match(doc, /\n 0 {15}4 {7}5 {7}6 {15}8 {30}12\n/);
  t.equal(HEADER_BYTES, 12);
  t.notMatch(doc, /ERR_PROTOCOL[^\n]*version not 1/, 'no leftover of version 1');
  t.match(doc, new RegExp(`0e 00 00 00  0${PROTOCOL_VERSION}  10 .*\nlength=14    v${PROTOCOL_VERSION}  PUSH`), 'the PUSH example carries the version');
});

/** Rows of a table keyed by its first column as a number: [name column, number]. */
function numbered(heading: string, nameColumn = 1): [string, number][] {
  return tableRows(heading).map((row) => [row[nameColumn]!, Number(row[0])]);
}

t.test('the flags in docs/protocol.md match FLAGS (bit numbers)', async (t) => {
  const rows = numbered('Flags');
  t.ok(rows.length >= 1, 'the table was found');
  t.strictSame(Object.fromEntries(rows.map(([name, bit]) => [name, 1 << bit])), { ...FLAGS });
});

t.test('the record layouts in docs/protocol.md match the header sizes and meta bits', async (t) => {
  t.match(doc, /a push record is `4 \+ len` bytes, a stored record\s+`16 \+ len`, a leased record `24 \+ len`/);
  t.equal(RECORD_HEADER_BYTES, 16);
  t.equal(LEASED_RECORD_HEADER_BYTES, 24);
  // The drawn boxes: offsets of the stored and leased headers.
  t.match(doc, /stored record \(MESSAGES, DELIVER, RETURN\)\n 0 {15}4 {15}8 {31}16\n/);
  t.match(doc, /leased record \(MESSAGES, DELIVER with flag LEASED\)\n 0 {15}4 {15}8 {31}16 {30}24\n/);
  t.match(doc, /│ len {6}u32  │ meta {5}u32  │ id {24}u64 │ lease {21}u64 │ data/);
  const meta = new Map(tableRows('Records').map(([bits, name]) => [name!, bits!]));
  t.equal(meta.get('deliveries'), '0..23');
  t.equal(META_DELIVERIES_MASK, 2 ** 24 - 1);
  t.equal(meta.get('DEAD_LETTER'), String(Math.log2(META_DEAD_LETTER)));
  t.equal(meta.get('reserved'), '25..31');
});

t.test('the dead-letter reasons in docs/protocol.md match DEAD_LETTER_REASONS', async (t) => {
  const rows = numbered('Dead-letter reasons');
  t.ok(rows.length >= 2, 'the table was found');
  t.strictSame(Object.fromEntries(rows.map(([name, code]) => [code, name])), { ...DEAD_LETTER_REASONS });
});

t.test('the SUBSCRIBE options in docs/protocol.md match SUBSCRIBE_EXCLUSIVE and SUBSCRIBE_ACK', async (t) => {
  const rows = numbered('Subscriptions');
  t.strictSame(Object.fromEntries(rows.map(([name, bit]) => [name, 1 << bit])), { EXCLUSIVE: SUBSCRIBE_EXCLUSIVE, ACK: SUBSCRIBE_ACK });
});

t.test('the SETTLE kinds in docs/protocol.md match SettleKind', async (t) => {
  const rows = numbered('Leases');
  t.ok(rows.length >= 4, 'the table was found');
  t.strictSame(Object.fromEntries(rows), { ...SettleKind });
  t.match(doc, new RegExp(`\`u32 arg\` \\(${SETTLE_ENTRY_BYTES} bytes\\)`));
  t.match(doc, new RegExp(`\`4 \\+ ${SETTLE_ENTRY_BYTES} × count\` bytes`));
});

t.test('the queue settings in docs/protocol.md match SettingsMask, QUEUE_DEFAULTS and the block size', async (t) => {
  const rows = tableRows('Queue settings');
  t.ok(rows.length >= 7, 'the table was found');
  const snake = (camel: string) => camel.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
  t.strictSame(Object.fromEntries(rows.map(([mask, setting]) => [snake(setting!), Number(mask)])), { ...SettingsMask });
  const parseDefault = (text: string): unknown => (text === 'none' ? null : text === 'Infinity' ? Infinity : /^[\d,]+$/.test(text) ? Number(text.replaceAll(',', '')) : text);
  const defaults = Object.fromEntries(rows.filter(([, setting]) => Object.hasOwn(QUEUE_DEFAULTS, setting!)).map(([, setting, value]) => [setting!, parseDefault(value!)]));
  t.strictSame(defaults, { ...QUEUE_DEFAULTS });
  t.equal(SETTINGS_FIXED_BYTES, 35);
  t.match(doc, new RegExp(`The block is \`${SETTINGS_FIXED_BYTES} \\+ dlqLen\` bytes`));
  t.match(doc, /\n 0 {11}8 {15}16 {10}24 {14}32 {9}33 {8}34 {7}35\n/, 'the drawn block: 4 × f64, then 3 × u8');
});

t.test('the dedupId limit in docs/protocol.md matches MAX_DEDUP_ID_BYTES', async (t) => {
  const limits = new Map(tableRows('Limits').map(([name, value]) => [name!, value!]));
  t.match(limits.get('dedupId length'), new RegExp(`^0\\.\\.${MAX_DEDUP_ID_BYTES} bytes`));
});

/**
 * The `@inline const NAME: type = value;` numbers of an assembly/ file. Only plain
 * arithmetic on literals is evaluated (the others are left out).
 */
function coreConstants(file: string): Map<string, number> {
  const source = readFileSync(new URL(`../assembly/${file}`, import.meta.url), 'utf8');
  const out = new Map<string, number>();
  for (const [, name, expr] of source.matchAll(/@inline (?:export )?const (\w+): \w+ = ([^;]+);/g)) {
    const plain = expr!.replace(/<\w+>/g, '');
    if (!/^[\dxA-Fa-f\s+\-*<>()]+$/.test(plain)) continue;
    out.set(name!, Number(new Function(`return (${plain});`)()));
  }
  return out;
}

t.test('the core (assembly/) holds the same numbers as src/protocol.ts', async (t) => {
  const codec = coreConstants('codec.ts');
  for (const [name, code] of Object.entries(Op)) t.equal(codec.get(`OP_${name}`), code, `codec.ts OP_${name}`);
  t.equal(codec.get('OP_REJECT'), OP_REJECT);
  for (const name of ['PROTOCOL_VERSION', 'HEADER_BYTES', 'MAX_NAME_BYTES', 'SETTLE_ENTRY_BYTES', 'SETTINGS_FIXED_BYTES', 'DESC_SIZE', 'DESC_CAPACITY'] as const) {
    t.equal(codec.get(name), protocol[name], `codec.ts ${name}`);
  }
  t.equal(codec.get('MAX_FRAME_LIMIT'), MAX_FRAME_BYTES_LIMIT);
  for (const [name, value] of Object.entries(protocol).filter(([n]) => n.startsWith('DESC_') && n !== 'DESC_SIZE' && n !== 'DESC_CAPACITY')) {
    t.equal(codec.get(name === 'DESC_REQUEST_ID' ? 'DESC_REQ' : name), value, `codec.ts ${name}`);
  }
  for (const [name, code] of codec) if (name.startsWith('ERR_')) t.equal(code, ErrorCode[name as ErrorCode], `codec.ts ${name}`);
  const status = coreConstants('status.ts');
  t.ok(status.size >= 7, 'status.ts was read');
  for (const [name, value] of status) {
    if (name === 'S_OK') t.equal(value, 0);
    else t.equal(-value, ErrorCode[`ERR_${name.slice(2)}` as ErrorCode], `status.ts ${name} is the negated ERR_${name.slice(2)}`);
  }
  const record = coreConstants('record.ts');
  t.equal(record.get('RECORD_HEADER'), RECORD_HEADER_BYTES);
  t.equal(record.get('LEASED_RECORD_HEADER'), LEASED_RECORD_HEADER_BYTES);
  t.equal(record.get('PUSH_RECORD_HEADER'), 4);
  t.equal(record.get('FLAG_LEASED'), FLAGS.LEASED);
  t.equal(record.get('META_DELIVERIES'), META_DELIVERIES_MASK);
  t.equal(record.get('META_DEAD_LETTER'), META_DEAD_LETTER);
  t.equal(DEAD_LETTER_REASONS[record.get('REASON_MAX_DELIVERIES') as 1], 'max-deliveries');
  t.equal(DEAD_LETTER_REASONS[record.get('REASON_REJECTED') as 2], 'rejected');
  const leases = coreConstants('leases.ts');
  for (const [name, kind] of Object.entries(SettleKind)) t.equal(leases.get(`SETTLE_${name}`), kind, `leases.ts SETTLE_${name}`);
  const queues = coreConstants('queues.ts');
  const maskNames: Record<string, string> = { DEAD_LETTER_TOPIC: 'SET_DEAD_LETTER', DEDUP_WINDOW_MS: 'SET_DEDUP_WINDOW' };
  for (const [name, bit] of Object.entries(SettingsMask)) t.equal(queues.get(maskNames[name] ?? `SET_${name}`), bit, `queues.ts mask ${name}`);
  t.equal(queues.get('DEFAULT_LEASE_MS'), QUEUE_DEFAULTS.leaseMs);
  t.equal(queues.get('DEFAULT_DEDUP_WINDOW_MS'), QUEUE_DEFAULTS.dedupWindowMs);
});

t.test('TurboError carries a stable code; errorFromWire maps wire codes', async (t) => {
  const err = new TurboError('ERR_EXCLUSIVE', 'taken', { cause: 'x' });
  t.ok(err instanceof Error);
  t.equal(err.name, 'TurboError');
  t.equal(err.code, 'ERR_EXCLUSIVE');
  t.equal(err.cause, 'x');
  t.equal(err.wireCode, 4);
  t.match(String(err), /^TurboError: taken/);
  const wire = errorFromWire(ErrorCode.ERR_NOT_FOUND, 'no such subscription');
  t.equal(wire.code, 'ERR_NOT_FOUND');
  t.equal(wire.message, 'no such subscription');
  t.equal(errorFromWire(999, '').code, 'ERR_PROTOCOL', 'an unknown code is a protocol error');
  t.equal(errorFromWire(ErrorCode.ERR_LIMIT, '').message, 'ERR_LIMIT');
});

t.test('the AUTH example in docs/protocol.md is what the client sends', async (t) => {
  const { encodeAuthFrame, decodeAuthBody } = await import('../src/core/raw-frames.ts');
  const example = /\n(12 00 00 00 [0-9a-f ]+)\n/.exec(doc);
  t.ok(example, 'the example is in the doc');
  const bytes = Buffer.from(example![1]!.replace(/\s+/g, ''), 'hex');
  t.same([...bytes], [...encodeAuthFrame(2, 'web', 's3cret')]);
  const body = decodeAuthBody(bytes.subarray(12));
  t.equal(body?.user, 'web');
  t.equal(Buffer.from(body!.token).toString(), 's3cret');
  t.equal(decodeAuthBody(Buffer.from([5, 0x61])), undefined, 'a user name past the end');
  t.equal(decodeAuthBody(Buffer.from([1, 0xff])), undefined, 'a user name that is not UTF-8');
  t.equal(decodeAuthBody(new Uint8Array(0)), undefined, 'no length byte');
  t.throws(() => encodeAuthFrame(1, undefined, 'x'.repeat(4097)), { code: 'ERR_INVALID_ARGUMENT' });
});
