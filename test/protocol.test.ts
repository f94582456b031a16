// docs/protocol.md is the contract; src/protocol.ts holds the same numbers for TypeScript.
// These tests parse the doc's tables and fail when the two drift apart.
import t from 'tap';
import { readFileSync } from 'node:fs';
import {
  Op, ErrorCode, ERROR_CODE_LIST, PROTOCOL_VERSION, HEADER_BYTES, MAX_NAME_BYTES, TIMEOUT_INFINITE,
  DEFAULT_MAX_MESSAGE_BYTES, defaultMaxFrameBytes, opName, OP_REJECT,
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

t.test('the frame header in docs/protocol.md is 12 bytes of version 1', async (t) => {
  t.match(doc, /# turbomq wire protocol, version 1\n/);
  t.equal(PROTOCOL_VERSION, 1);
  t.match(doc, /│ requestId u32\s+│ body/);
  t.match(doc, /\n 0 {15}4 {7}5 {7}6 {15}8 {30}12\n/);
  t.equal(HEADER_BYTES, 12);
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
