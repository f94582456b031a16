// The compiled core obeys the rules that make sharing one memory between instances safe.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

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

t.test('the shared build has no data segments (each instantiation would rewrite them)', async (t) => {
  const ids = sectionIds(readFileSync(wasmPath('turbomq.shared.wasm')));
  t.notOk(ids.includes(11), 'no data section');
  t.notOk(ids.includes(12), 'no data count section');
});

t.test('the shared build imports a shared memory; the local build an ordinary one', async (t) => {
  const shared = new WebAssembly.Module(readFileSync(wasmPath('turbomq.shared.wasm')));
  const local = new WebAssembly.Module(readFileSync(wasmPath('turbomq.local.wasm')));
  t.same(WebAssembly.Module.imports(shared).map((i) => `${i.module}.${i.name}:${i.kind}`), ['env.memory:memory']);
  t.same(WebAssembly.Module.imports(local).map((i) => `${i.module}.${i.name}:${i.kind}`), ['env.memory:memory']);
  t.throws(() => new WebAssembly.Instance(shared, { env: { memory: new WebAssembly.Memory({ initial: 2 }) } }), 'the shared build refuses an unshared memory');
  for (const name of ['attach', 'opPush', 'opPop', 'decoderNext', 'mailboxTake']) {
    t.ok(WebAssembly.Module.exports(shared).some((e) => e.name === name), `exports ${name}`);
  }
});
