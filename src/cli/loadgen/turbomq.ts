// The load generator's driver for turbomq: TurboClient's push / pushMany, pop / popMany, one
// client (connection) per producer and per consumer.

import { TurboClient } from '../../index.ts';
import type { Driver, DriverSpec } from './types.ts';

export function turbomqDriver(url: string, queueName = 'bench', token?: string): Driver {
  const clients = new Set<TurboClient>();
  const connect = async (): Promise<TurboClient> => {
    const client = await TurboClient.connect(url, token === undefined ? {} : { token });
    clients.add(client);
    return client;
  };
  return {
    name: 'turbomq',
    async producer() {
      const client = await connect();
      const queue = client.getQueue(queueName);
      return {
        send: (topic, items) => items.length === 1 ? queue.push(topic, items[0]!) : queue.pushMany(topic, items),
        close: () => client.close(),
      };
    },
    async consumer() {
      const client = await connect();
      const queue = client.getQueue(queueName);
      return {
        async receive(topic, max, timeoutMs) {
          if (max === 1) {
            const m = await queue.pop(topic, timeoutMs);
            return m === null ? [] : [m.data];
          }
          const ms = await queue.popMany(topic, max, timeoutMs);
          const out = new Array<Uint8Array>(ms.length);
          for (let i = 0; i < ms.length; i++) out[i] = ms[i]!.data;
          return out;
        },
        close: () => client.close(),
      };
    },
    async close() {
      await Promise.all([...clients].map((c) => c.close()));
      clients.clear();
    },
  };
}

/** turbomqDriver for every client thread. */
export function turbomqDriverSpec(url: string, queueName = 'bench', token?: string): DriverSpec {
  return { module: import.meta.url, exportName: 'turbomqDriver', args: token === undefined ? [url, queueName] : [url, queueName, token] };
}
