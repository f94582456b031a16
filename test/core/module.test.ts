// The compiled core obeys the rules that make sharing one memory between instances safe,
// in every build that instantiates over a shared memory (shared, and debug for the tests).

import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { newSharedMemory, instantiateSharedCore } from '../../src/core/wasm.ts';
import { CoreThread } from '../../src/core/thread.ts';
import { Op } from '../../src/protocol.ts';

function wasmPath(name: string): string {
  return fileURLToPath(import.meta.resolve(`#wasm/${name}`));
}

/** Section ids present in a Wasm binary (data = 11, data count = 12). */
function sectionIds(bytes: Uint8Array): number[] {
  const ids: number[] = [];
  let p = 8;
  while (p < bytes.length) {
    const id = bytes[p++]!;
    let size = 0, shift = 0, b: number;
    do { b = bytes[p++]!; size |= (b & 0x7f) << shift; shift += 7; } while (b & 0x80);
    ids.push(id);
    p += size;
  }
  return ids;
}

const describe = (m: WebAssembly.Module) => ({
  imports: WebAssembly.Module.imports(m).map((i) => `${i.module}.${i.name}:${i.kind}`),
  exports: WebAssembly.Module.exports(m).map((e) => `${e.name}:${e.kind}`).sort(),
});

const sharedBytes = readFileSync(wasmPath('turbomq.shared.wasm'));
const debugBytes = readFileSync(wasmPath('turbomq.debug.wasm'));
const shared = new WebAssembly.Module(sharedBytes);
const local = new WebAssembly.Module(readFileSync(wasmPath('turbomq.local.wasm')));
const debug = new WebAssembly.Module(debugBytes);

for (const [label, bytes] of [['shared', sharedBytes], ['debug', debugBytes]] as const) {
  t.test(`the ${label} build has no data segments (each instantiation would rewrite them)`, async (t) => {
    const ids = sectionIds(bytes);
    t.notOk(ids.includes(11), 'no data section');
    t.notOk(ids.includes(12), 'no data count section');
  });
}

t.test('the shared build imports a shared memory; the local build an ordinary one', async (t) => {
  t.same(describe(shared).imports, ['env.memory:memory']);
  t.same(describe(local).imports, ['env.memory:memory']);
  t.throws(() => new WebAssembly.Instance(shared, { env: { memory: new WebAssembly.Memory({ initial: 2 }) } }), 'the shared build refuses an unshared memory');
  for (const name of ['attach', 'opPush', 'opPop', 'opSettle', 'decoderNext', 'mailboxTake', 'leaseExpire', 'reapThread']) {
    t.ok(WebAssembly.Module.exports(shared).some((e) => e.name === name), `exports ${name}`);
  }
});

t.test('the debug build imports exactly what the shared build does (no env.abort) and exports the same', async (t) => {
  t.same(describe(debug).imports, describe(shared).imports, 'same imports: a shared memory and nothing else');
  t.same(describe(debug).exports, describe(shared).exports, 'same exports');
  t.same(describe(local).exports, describe(shared).exports, 'the local build too');
  t.throws(() => new WebAssembly.Instance(debug, { env: { memory: new WebAssembly.Memory({ initial: 2 }) } }), 'the debug build refuses an unshared memory');
});

t.test('the debug build asserts its invariants (a broken one traps); the shared build does not check', async (t) => {
  // Freeing a lease owner that still holds a lease breaks leases.ts ownerFree's invariant.
  const brokenInvariant = async (module: WebAssembly.Module) => {
    const th = new CoreThread(await instantiateSharedCore(newSharedMemory(64), module));
    const e = th.exports, v = th.core.view;
    v.write(th.scratch, Buffer.from('qtx'));
    e.opPush(th.scratch, 1, th.scratch + 1, 1, th.scratch + 2, 1);
    const w = e.writerNew(1024);
    const owner = e.ownerNew(1);
    t.equal(e.opPop(w, Op.MESSAGES, 1, th.scratch, 1, th.scratch + 1, 1, 1, 1 << 20, 0, 0, owner, 0, Date.now()), 1, 'one leased message');
    try {
      e.ownerFree(owner);
      return 'no trap';
    } catch (err) {
      return err instanceof WebAssembly.RuntimeError ? err.message : String(err);
    }
  };
  t.equal(await brokenInvariant(debug), 'unreachable', 'debug: traps');
  t.equal(await brokenInvariant(shared), 'no trap', 'shared: invariants compiled out');
});
