// Drivers for test/cli/loadgen.test.ts, loaded by every client thread through a DriverSpec:
// turbomq with a consumer that hands every 10th message over twice (so duplicates must be
// counted exactly, whichever threads see them), and one whose producers cannot connect.

import { turbomqDriver, type Driver } from '../../src/cli/loadgen.ts';

export function duplicatingDriver(url: string): Driver {
  const inner = turbomqDriver(url);
  return {
    name: 'duplicating',
    producer: () => inner.producer(),
    async consumer() {
      const conn = await inner.consumer();
      return {
        async receive(topic, max, timeoutMs) {
          const items = await conn.receive(topic, max, timeoutMs);
          const out: Uint8Array[] = [];
          for (const data of items) {
            out.push(data);
            if (new DataView(data.buffer, data.byteOffset).getUint32(4, true) % 10 === 0) out.push(data);
          }
          return out;
        },
        close: () => conn.close(),
      };
    },
    close: () => inner.close!(),
  };
}

export function brokenDriver(): Driver {
  return {
    name: 'broken',
    async producer() { throw new Error('no broker here'); },
    async consumer() { throw new Error('no broker here'); },
  };
}
