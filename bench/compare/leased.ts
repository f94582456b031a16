// turbomq's at-least-once consumers for the consume-and-ack workloads, written against
// issue 10's API contract (leases and acks), which the client does not have yet:
//
//   queue.pop(topic, { ack: true, timeoutMs }) / queue.popMany(topic, max, { ack: true, timeoutMs })
//   queue.subscribe(topic, { ack: true, prefetch })
//   m.ack(): Promise<void>        m.id, m.deliveries
//
// Until it lands, a message popped with ack: true has no ack(): leasesAvailable() says so, the
// benchmarks report "n/a (needs issue 10)", and a driver that meets such a message fails its
// run with NEEDS_LEASES instead of measuring a plain pop.

import { TurboClient } from '../../src/index.ts';
import type { Driver, DriverSpec, ConsumerConnection } from '../../src/cli/loadgen.ts';
import { turbomqDriver } from '../../src/cli/loadgen.ts';
import { Inbox } from './drivers.ts';

export const NEEDS_LEASES = 'n/a (needs issue 10)';

/** What issue 10 adds to a popped message. */
export interface LeasedMessage {
  data: Uint8Array;
  id?: string;
  deliveries?: number;
  ack(): Promise<void>;
}

export interface LeaseOptions { ack: true; timeoutMs?: number; leaseMs?: number }

/** The part of issue 10's Queue these benchmarks use. */
export interface LeasedQueue {
  push(topic: string, data: string | Uint8Array): Promise<void>;
  pushMany(topic: string, items: Iterable<string | Uint8Array>): Promise<void>;
  pop(topic: string, options: LeaseOptions): Promise<LeasedMessage | null>;
  popMany(topic: string, max: number, options: LeaseOptions): Promise<LeasedMessage[]>;
  subscribe(topic: string, options: { ack: true; prefetch?: number; leaseMs?: number }): AsyncIterable<LeasedMessage> & { close(): Promise<void> };
  stats?(topic: string): Promise<{ ready: number; delayed: number; inFlight: number }>;
}

export function leasedQueue(client: TurboClient, name: string): LeasedQueue {
  return client.getQueue(name) as unknown as LeasedQueue;
}

function checkLeased(m: LeasedMessage): void {
  if (typeof m.ack !== 'function') throw new Error(`${NEEDS_LEASES}: a message popped with { ack: true } has no ack()`);
}

/** Pushes one message, pops it with { ack: true } and acks it: true when the broker and client have issue 10's leases. */
export async function leasesAvailable(url: string): Promise<boolean> {
  const client = await TurboClient.connect(url);
  try {
    const queue = leasedQueue(client, 'bench-probe');
    const topic = `probe-${process.pid}-${Date.now()}`;
    await queue.push(topic, 'probe');
    const [m] = await queue.popMany(topic, 1, { ack: true, timeoutMs: 1000 });
    if (m === undefined || typeof m.ack !== 'function') return false;
    await m.ack();
    return true;
  } catch {
    return false;
  } finally {
    await client.close();
  }
}

export interface LeasedDriverOptions {
  /** 'pop': pop / popMany with { ack: true }; 'subscribe': subscribe({ ack: true, prefetch }). */
  mode: 'pop' | 'subscribe';
  /** Unacked messages a subscription may hold. Default 64. */
  prefetch?: number;
}

/**
 * turbomq with leases: producers as turbomqDriver; each consumer takes messages leased and acks
 * every one it takes (acks of one tick travel in one frame, says issue 10). Acks are not awaited
 * before the next pop, as RabbitMQ's and JetStream's acks are not; a failed ack fails the run.
 */
export function turbomqLeasedDriver(url: string, options: LeasedDriverOptions): Driver {
  const plain = turbomqDriver(url);
  const clients = new Set<TurboClient>();
  const prefetch = options.prefetch ?? 64;
  return {
    name: options.mode === 'pop' ? 'turbomq (popMany + ack)' : 'turbomq (subscribe + ack)',
    producer: () => plain.producer(),
    async consumer(): Promise<ConsumerConnection> {
      const client = await TurboClient.connect(url);
      clients.add(client);
      const queue = leasedQueue(client, 'bench');
      let ackFailure: unknown;
      const acks = new Set<Promise<unknown>>();
      const ackAll = (ms: LeasedMessage[]): Uint8Array[] => {
        const out = new Array<Uint8Array>(ms.length);
        const pending = new Array<Promise<void>>(ms.length);
        for (let i = 0; i < ms.length; i++) {
          const m = ms[i]!;
          checkLeased(m);
          pending[i] = m.ack();
          out[i] = m.data;
        }
        const all = Promise.all(pending).then(() => { acks.delete(all); }, (err: unknown) => { acks.delete(all); ackFailure ??= err; });
        acks.add(all);
        return out;
      };
      const settle = async () => {
        await Promise.all(acks);
        if (ackFailure !== undefined) throw ackFailure;
      };
      if (options.mode === 'pop') {
        return {
          async receive(topic, max, timeoutMs) {
            if (ackFailure !== undefined) throw ackFailure;
            if (max === 1) {
              const m = await queue.pop(topic, { ack: true, timeoutMs });
              return m === null ? [] : ackAll([m]);
            }
            return ackAll(await queue.popMany(topic, max, { ack: true, timeoutMs }));
          },
          async close() {
            try { await settle(); } finally { await client.close(); }
          },
        };
      }
      // One subscription per topic this consumer is asked for, opened on first use.
      const inbox = new Inbox<LeasedMessage>();
      const subs = new Map<string, { close(): Promise<void> }>();
      let iterFailure: unknown;
      const subscribe = (topic: string) => {
        const sub = queue.subscribe(topic, { ack: true, prefetch });
        subs.set(topic, sub);
        void (async () => {
          try {
            for await (const m of sub) inbox.push(m);
          } catch (err) {
            iterFailure ??= err;
          }
        })();
      };
      return {
        async receive(topic, max, timeoutMs) {
          if (ackFailure !== undefined) throw ackFailure;
          if (iterFailure !== undefined) throw iterFailure;
          if (!subs.has(topic)) subscribe(topic);
          return ackAll(await inbox.take(max, timeoutMs));
        },
        async close() {
          try {
            await settle();
          } finally {
            await Promise.allSettled([...subs.values()].map((s) => s.close()));
            await client.close();
          }
        },
      };
    },
    async close() {
      await plain.close?.();
      await Promise.allSettled([...clients].map((c) => c.close()));
      clients.clear();
    },
  };
}

export function turbomqLeasedDriverSpec(url: string, options: LeasedDriverOptions): DriverSpec {
  return { module: import.meta.url, exportName: 'turbomqLeasedDriver', args: [url, options] };
}
